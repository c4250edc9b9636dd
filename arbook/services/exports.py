"""Streamed CSV and XLSX downloads with spreadsheet formula injection neutralized.

Generic on purpose: the invoice list and the aging report both call `stream_csv` /
`stream_xlsx` (or `export_response`) with a header and an iterable of row sequences. Rows are
consumed lazily while the response is sent, so a million-row export holds one chunk of rows in
memory; callers pass a lazy iterable (`QuerySet.values_list(...).iterator(chunk_size=...)`).

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

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

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


def _safe_filename(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", filename).strip("-.") or "export"
    return name[:120]


def _response(chunks: Iterator[bytes], *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=_safe_filename(filename))
    # Receivables are private: never kept by a shared cache; tell proxies not to buffer the stream.
    response["Cache-Control"] = "private, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


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


def stream_csv(rows: Iterable[Sequence[Any]], header: Sequence[str], filename: str) -> StreamingHttpResponse:
    """A streamed CSV download of `rows` (consumed lazily, constant memory)."""
    return stream_csv_bytes(csv_chunks(rows, header), filename)


def stream_csv_bytes(chunks: Iterable[bytes], filename: str) -> StreamingHttpResponse:
    """A streamed CSV download of ready-made bytes (`csv_chunks` or `copy_csv_chunks`)."""
    if not filename.lower().endswith(".csv"):
        filename += ".csv"
    return _response(iter(chunks), content_type=CSV_TYPE, filename=filename)


# -- PostgreSQL fast path: the database writes the CSV ------------------------------------------

#: What `safe_cell` looks for, as a regular expression for the database.
FORMULA_REGEX = r"^[-=+@\t\r\n]"
COPY_CHUNK_BYTES = 256 * 1024


def safe_text_sql(path: str):
    """An ORM expression: the text column `path`, neutralized like `safe_cell` and empty as NULL.

    For `copy_csv_chunks`, where PostgreSQL formats the rows: the same rule as `safe_cell`, so
    both CSV paths write the same file.
    """
    from django.db.models import CharField, F, Q, Value, When, Case
    from django.db.models.functions import Concat, NullIf

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
    from django.db import connections

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


def stream_xlsx(rows: Iterable[Sequence[Any]], header: Sequence[str], filename: str, *,
                sheet_title: str = "Export") -> StreamingHttpResponse:
    """A streamed XLSX download of `rows` (openpyxl write-only: constant memory)."""
    if not filename.lower().endswith(".xlsx"):
        filename += ".xlsx"
    return _response(xlsx_chunks(rows, header, sheet_title=sheet_title), content_type=XLSX_TYPE, filename=filename)


def export_response(fmt: str, rows: Iterable[Sequence[Any]], header: Sequence[str], filename_stem: str, *,
                    sheet_title: str = "Export") -> StreamingHttpResponse:
    """`fmt` is "csv" or "xlsx" (check against EXPORT_FORMATS first; anything else is a ValueError)."""
    if fmt == "csv":
        return stream_csv(rows, header, f"{filename_stem}.csv")
    if fmt == "xlsx":
        return stream_xlsx(rows, header, f"{filename_stem}.xlsx", sheet_title=sheet_title)
    raise ValueError(f"unknown export format {fmt!r}")
