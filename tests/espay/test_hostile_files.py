"""Hostile uploads are refused quickly: an XLSX is measured before openpyxl parses it.

The reported file: a 4.6 MB XLSX of 100 rows x 16,384 columns without a `<dimension>` held a web
worker for ~40 s (openpyxl parsed 1.6 million cells and padded every row to 16,384 values).
The files here are written as raw sheet XML, so building them takes milliseconds.
"""
from __future__ import annotations

import io
import re
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl.utils import get_column_letter

from arbook.models import EspayBatch
from arbook.services.espay_files import (
    COLUMN_NAMES,
    MAX_COLUMNS,
    MAX_SHEET_ROWS,
    UploadError,
    parse_upload,
)
from tests.espay.helpers import csv_bytes, rows, xlsx_bytes

QUICK = 2.0  # seconds; loose on purpose (a shared 2-core machine), the refusals take milliseconds
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SHARED_STRINGS_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def sheet_xml(rows_xml: str, *, dimension: str | None = None) -> bytes:
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return f'<worksheet xmlns="{MAIN}">{dim}<sheetData>{rows_xml}</sheetData></worksheet>'.encode()


def header_row_xml(width: int = len(COLUMN_NAMES)) -> str:
    names = list(COLUMN_NAMES) + [f"extra{i}" for i in range(width - len(COLUMN_NAMES))]
    cells = "".join(f'<c r="{get_column_letter(i + 1)}1" t="inlineStr"><is><t>{n}</t></is></c>'
                    for i, n in enumerate(names))
    return f'<row r="1">{cells}</row>'


def workbook(sheet: bytes, *, shared_strings: bytes | None = None) -> bytes:
    """A real workbook (openpyxl's parts) whose first sheet is `sheet`."""
    base = xlsx_bytes(rows(1))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "xl/worksheets/sheet1.xml":
                data = sheet
            elif shared_strings and name == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", f'<Relationship Id="rIdS" Type="{SHARED_STRINGS_TYPE}" '
                                                         f'Target="sharedStrings.xml"/></Relationships>'.encode())
            elif shared_strings and name == "[Content_Types].xml":
                data = data.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                                                 b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                                                 b"</Types>")
            target.writestr(name, data)
        if shared_strings:
            target.writestr("xl/sharedStrings.xml", shared_strings)
    return out.getvalue()


def the_reported_file() -> bytes:
    """100 rows of 16,384 filled cells, no <dimension> (as openpyxl's write-only mode writes)."""
    letters = [get_column_letter(i + 1) for i in range(16_384)]
    body = [header_row_xml(16_384)]
    for r in range(2, 101):
        body.append(f'<row r="{r}">' + "".join(f'<c r="{col}{r}"><v>7</v></c>' for col in letters) + "</row>")
    return workbook(sheet_xml("".join(body)))


def refused(content: bytes, name: str = "batch.xlsx") -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        parse_upload(content=content, file_name=name)
    return str(caught.value), time.monotonic() - started


def test_the_reported_16384_column_file_is_refused_in_well_under_two_seconds():
    content = the_reported_file()
    assert 4 * 1024 * 1024 < len(content) < 5 * 1024 * 1024  # under the 5 MB upload limit, like the report
    message, seconds = refused(content)
    assert seconds < QUICK, seconds
    assert "cells beyond column AX (e.g. AY1)" in message and f"at most {MAX_COLUMNS} columns" in message


def test_a_declared_width_or_height_beyond_the_limits_is_refused_before_any_cell_is_read():
    wide = workbook(sheet_xml(header_row_xml(), dimension="A1:XFD3"))
    message, seconds = refused(wide)
    assert "16,384 columns wide (to column XFD)" in message and seconds < QUICK
    tall = workbook(sheet_xml(header_row_xml(), dimension="A1:J1048576"))
    message, seconds = refused(tall)
    assert "1,048,576 rows tall" in message and "Delete the empty rows below your data" in message
    assert seconds < QUICK


def test_a_row_number_far_below_the_data_is_refused_without_reading_a_million_empty_rows():
    data = ('<row r="2"><c r="A2" t="inlineStr"><is><t>INV-1</t></is></c></row>'
            '<row r="1000000"><c r="A1000000" t="inlineStr"><is><t>x</t></is></c></row>')
    message, seconds = refused(workbook(sheet_xml(header_row_xml() + data)))
    assert f"more than {MAX_SHEET_ROWS:,} rows" in message and seconds < QUICK


def test_a_million_shared_strings_in_a_small_file_are_refused():
    strings = (f'<sst xmlns="{MAIN}" count="1000000" uniqueCount="1000000">'.encode()
               + b"".join(b"<si><t>%d</t></si>" % i for i in range(1_000_000)) + b"</sst>")
    content = workbook(sheet_xml(header_row_xml()), shared_strings=strings)
    assert len(content) < 5 * 1024 * 1024
    message, seconds = refused(content)
    assert "text table holds more than 100,000 entries" in message and seconds < QUICK


def test_a_narrow_but_endless_sheet_without_dimension_is_refused_by_its_markup():
    body = "".join(f'<row r="{r}">' + "".join(f'<c r="{get_column_letter(c)}{r}"><v>1</v></c>' for c in range(1, 11))
                   + "</row>" for r in range(2, 60_000))
    message, seconds = refused(workbook(sheet_xml(header_row_xml() + body)))
    assert "far more cells than 10,000 rows" in message and seconds < QUICK


def test_fifty_columns_are_read_and_the_fifty_first_is_refused():
    header = list(COLUMN_NAMES) + [f"note{i}" for i in range(MAX_COLUMNS - len(COLUMN_NAMES))]
    parsed = parse_upload(content=xlsx_bytes(rows(3), header=header), file_name="x.xlsx")
    assert parsed.row_count == 3 and len(parsed.lines) == 3
    message, _ = refused(xlsx_bytes(rows(3), header=header + ["one too many"]))
    assert "cells beyond column AX (e.g. AY1)" in message
    # The same bounds hold for CSV: a value past column AX is refused, empty trailing fields are not.
    csv_ok = csv_bytes(rows(2)).replace(b"\r\n", b"," * 100 + b"\r\n")
    assert parse_upload(content=csv_ok, file_name="x.csv").row_count == 2
    message, _ = refused(csv_bytes(rows(2)).replace(b"\r\n", b"," * 100 + b"x\r\n", 1), name="x.csv")
    assert "Row 1 has 110 columns" in message and f"at most {MAX_COLUMNS} columns" in message


def test_hostile_csvs_are_refused_quickly():
    wide = (",".join(["doc_no"] + ["x"] * 16_383) + "\r\n").encode() * 150
    message, seconds = refused(wide, name="x.csv")
    assert "16,384 columns" in message and seconds < QUICK
    blank_lines = csv_bytes(rows(1)) + b"\n" * (4 * 1024 * 1024)
    message, seconds = refused(blank_lines, name="x.csv")
    assert f"more than {MAX_SHEET_ROWS:,} rows" in message and seconds < QUICK


@pytest.mark.django_db
def test_the_upload_page_refuses_the_reported_file_quickly_and_says_why(signed_in, espay_credential):
    content = the_reported_file()
    started = time.monotonic()
    response = signed_in.post(reverse("espay_batch_new"), {"credential": espay_credential.pk,
                                                           "file": SimpleUploadedFile("wide.xlsx", content)})
    seconds = time.monotonic() - started
    assert response.status_code == 200 and seconds < QUICK, seconds
    page = response.content.decode()
    assert "cells beyond column AX (e.g. AY1)" in page, re.findall(r'data-testid="upload-error">([^<]*)<', page)
    assert not EspayBatch.objects.exists()
