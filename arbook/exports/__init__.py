"""CSV and XLSX files as streams of bytes, with spreadsheet formula injection neutralized.

Generic on purpose: the invoice list, the aging report, the Espay batch pages and the Espay
template write their files here from a header and an iterable of row sequences. Nothing here
speaks HTTP: a view wraps the bytes in a download (`arbook.views.downloads`). Rows are consumed
lazily while the bytes are sent, so a million-row export holds one chunk of rows in memory;
callers pass a lazy iterable (`QuerySet.values_list(...).iterator(chunk_size=...)`).

Floor: a utility like `arbook.params` (the standard library, Django's database cursor, openpyxl),
so a service (the Espay template) and the pages' exports (`arbook.exports.invoices`,
`arbook.exports.aging`) can both use it.

Values: `str` (neutralized by `safe_cell`), `int`, `Decimal` (written exactly: a number cell in
XLSX, plain ``1234.50`` in CSV — never a float, never a thousands separator), `date`, `datetime`
(write them in the zone the reader expects: an aware datetime is written as its own wall-clock
time, so convert to the merchant's zone first), `bool` and None (an empty cell).

Formula injection (OWASP "CSV injection"): a text cell that begins with ``= + - @``, a tab,
a carriage return or a line feed is prefixed with an apostrophe, so a customer named
``=HYPERLINK(...)`` is shown as text and never evaluated. The same rule in both formats; in XLSX
text cells are additionally typed as strings, so nothing we write is ever a formula.
"""
from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import Case, CharField, F, Q, Value, When
from django.db.models.functions import Concat, NullIf

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
#: Rows buffered before a chunk is handed to the server (CSV): big enough to be cheap per row.
CSV_ROWS_PER_CHUNK = 1000
#: What a worksheet holds (Excel's limit is 1,048,576 rows including the header); more rows
#: continue on a next sheet rather than being cut off.
XLSX_ROWS_PER_SHEET = 1_048_575
XLSX_READ_CHUNK = 256 * 1024
EXPORT_FORMATS = ("csv", "xlsx")

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def safe_cell(value: Any) -> Any:
    """Neutralize a text value a spreadsheet would run as a formula; other types pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return safe_cell(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return safe_cell(str(value))


def csv_chunks(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> Iterator[bytes]:
    """UTF-8 CSV with a BOM (so Excel reads non-ASCII names right), yielded in chunks of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # as PostgreSQL's COPY writes it (copy_csv_chunks)
    buffer.write("\ufeff")
    writer.writerow([_csv_value(h) for h in header])
    n = 0
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
        n += 1
        if n >= CSV_ROWS_PER_CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            n = 0
    yield buffer.getvalue().encode("utf-8")


# -- PostgreSQL fast path: the database writes the CSV ------------------------------------------

#: What `safe_cell` looks for, as a regular expression for the database.
FORMULA_REGEX = r"^[-=+@\t\r\n]"
COPY_CHUNK_BYTES = 256 * 1024


def safe_text_sql(path: str):
    """An ORM expression: the text column `path`, neutralized like `safe_cell` and empty as NULL.

    For `copy_csv_chunks`, where PostgreSQL formats the rows: the same rule as `safe_cell`, so
    both CSV paths write the same file.
    """
    return Case(When(Q(**{f"{path}__regex": FORMULA_REGEX}), then=Concat(Value("'"), F(path),
                                                                          output_field=CharField())),
                default=NullIf(F(path), Value("")), output_field=CharField())


def copy_csv_chunks(querysets: Iterable[Any], header: Sequence[str]) -> Iterator[bytes]:
    """CSV written by PostgreSQL itself (`COPY (query) TO STDOUT`), for million-row exports.

    Each of `querysets` is a `values_list(...)` whose columns are already final (text neutralized
    with `safe_text_sql`, dates formatted in SQL); they are copied one after the other under one
    header. The bytes stream from the server in chunks: Python never builds a row object, which
    is what makes ~1M rows in seconds possible. PostgreSQL only (check `connection.vendor`).
    """
    first = True
    for queryset in querysets:
        sql, params = queryset.query.sql_with_params()
        if first:
            yield next(csv_chunks((), header))  # BOM and header, as the Python path writes them
            first = False
        with connections[queryset.db].cursor() as cursor:
            buffer = bytearray()
            with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                for data in copy:
                    buffer += data
                    if len(buffer) >= COPY_CHUNK_BYTES:
                        yield bytes(buffer)
                        buffer.clear()
            if buffer:
                yield bytes(buffer)
    if first:
        yield next(csv_chunks((), header))


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, str):
        return safe_cell(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones: the wall-clock time stays
    if isinstance(value, (int, Decimal, date, datetime)) or value is None:
        return value
    if isinstance(value, float):
        return value
    return safe_cell(str(value))


def xlsx_chunks(rows: Iterable[Sequence[Any]], header: Sequence[str], *, sheet_title: str = "Export") -> Iterator[bytes]:
    """An XLSX file built with openpyxl's write-only mode, then read back in chunks.

    Write-only mode spools each sheet's rows to a temporary file as they are appended, and the
    workbook is zipped into another temporary file: memory stays flat whatever the row count.
    The bytes start flowing once the workbook is complete (the zip needs every sheet).
    """
    # openpyxl is loaded on the first XLSX export only: it costs ~100 ms at import, and most
    # requests (and every CSV) never need it.
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    title = re.sub(r"[\[\]:*?/\\]", "-", sheet_title)[:25] or "Export"

    def new_sheet(index: int):
        sheet = workbook.create_sheet(title if index == 1 else f"{title} ({index})")
        cells = []
        for h in header:
            cell = WriteOnlyCell(sheet, value=safe_cell(str(h)))
            cell.font = bold
            cells.append(cell)
        sheet.append(cells)
        return sheet

    sheets = 1
    sheet = new_sheet(sheets)
    in_sheet = 0
    for row in rows:
        if in_sheet >= XLSX_ROWS_PER_SHEET:
            sheets += 1
            sheet = new_sheet(sheets)
            in_sheet = 0
        sheet.append([_xlsx_value(v) for v in row])
        in_sheet += 1
    with tempfile.TemporaryFile(suffix=".xlsx") as out:
        workbook.save(out)
        out.seek(0)
        while chunk := out.read(XLSX_READ_CHUNK):
            yield chunk


def file_chunks(fmt: str, rows: Iterable[Sequence[Any]], header: Sequence[str], *,
                sheet_title: str = "Export") -> Iterator[bytes]:
    """The bytes of `rows` as `fmt`, "csv" or "xlsx" (check EXPORT_FORMATS first: else ValueError)."""
    if fmt == "csv":
        return csv_chunks(rows, header)
    if fmt == "xlsx":
        return xlsx_chunks(rows, header, sheet_title=sheet_title)
    raise ValueError(f"unknown export format {fmt!r}")


#: A document made elsewhere (the statement PDF, `arbook.exports.statements`) is sent the same way.
PDF_TYPE = "application/pdf"
CONTENT_TYPES = {"csv": CSV_TYPE, "xlsx": XLSX_TYPE, "pdf": PDF_TYPE}
