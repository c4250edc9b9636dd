"""Reading and validating upload files (no database): every bad input gets its message."""
from __future__ import annotations

import codecs
import io
import zipfile
from datetime import date
from decimal import Decimal

import pytest

from arbook.services.espay_files import (
    COLUMN_NAMES,
    EXAMPLE_DOC_NO,
    MAX_ROWS,
    UploadError,
    parse_upload,
    template_csv,
    template_xlsx,
)

from .helpers import csv_bytes, row, rows, xlsx_bytes


def problems(parsed):
    return [(p.row, p.column, p.message) for p in parsed.problems]


def test_a_good_csv_becomes_lines_with_decimal_amounts():
    parsed = parse_upload(content=csv_bytes(rows(3)), file_name="batch.csv")
    assert parsed.problems == [] and parsed.kind == "csv" and parsed.row_count == 3
    first = parsed.lines[0]
    assert (first.row_number, first.doc_no, first.billing_date) == (2, "INV-00001", "05")
    assert first.amount == Decimal("150000") and isinstance(first.amount, Decimal)
    assert first.number_of_installment == 1 and first.balance_payment_amount is None


def test_column_names_match_case_and_space_insensitively_in_any_order():
    header = ["Billing Date", " DOC NO ", "Member_Code", "member name", "AMOUNT", "Total-Amount",
              "Number Of Installment", "installment amount", "Notes"]
    data = [{"Billing Date": "7", " DOC NO ": "A-1", "Member_Code": "M1", "member name": "Budi", "AMOUNT": "5000",
             "Total-Amount": "5000", "Number Of Installment": "1", "installment amount": "5000", "Notes": "x"}]
    content = xlsx_bytes(data, header)
    parsed = parse_upload(content=content, file_name="x.xlsx")
    assert parsed.problems == []
    line = parsed.lines[0]
    assert (line.doc_no, line.member_code, line.member_name, line.billing_date) == ("A-1", "M1", "Budi", "07")
    assert parsed.notes == ["Column “Notes” is not an Espay field and was ignored."]


def test_indonesian_column_names_are_accepted():
    header = ["doc_no", "member_code", "amount", "total_amount", "jumlah_cicilan", "amount_cicilan", "tanggal_penagihan"]
    content = ("\r\n".join([",".join(header), "D-1,M1,1000,1000,1,1000,05"])).encode()
    parsed = parse_upload(content=content, file_name="x.csv")
    assert parsed.problems == [] and parsed.lines[0].number_of_installment == 1


@pytest.mark.parametrize("encoding,bom", [("utf-8", False), ("utf-8", True), ("cp1252", False), ("latin-1", False)])
def test_excel_encodings(encoding, bom):
    data = [row("E-1", member_name="Société Générale — Überweisung" if encoding != "latin-1" else "Société Müller")]
    parsed = parse_upload(content=csv_bytes(data, encoding=encoding, bom=bom), file_name="x.csv")
    assert parsed.problems == []
    assert parsed.lines[0].member_name == data[0]["member_name"]
    assert parsed.encoding == {"utf-8": "UTF-8 (BOM)" if bom else "UTF-8", "cp1252": "Windows-1252",
                               "latin-1": "Windows-1252"}[encoding]


def test_bytes_undefined_in_cp1252_fall_back_to_latin1():
    content = csv_bytes([row("E-2")]).replace(b"Customer M-001", b"X\x81Y")
    parsed = parse_upload(content=content, file_name="x.csv")
    assert parsed.encoding == "Latin-1" and parsed.lines[0].member_name == "X\x81Y"


def test_utf16_unicode_text_from_excel_with_tabs():
    text = csv_bytes([row("U-1", member_name="Ñandú")], delimiter="\t").decode()
    parsed = parse_upload(content=codecs.BOM_UTF16_LE + text.encode("utf-16-le"), file_name="x.txt")
    assert parsed.problems == [] and parsed.lines[0].member_name == "Ñandú" and parsed.delimiter == "tab"


def test_semicolon_separated_csv_as_excel_writes_in_many_locales():
    parsed = parse_upload(content=csv_bytes(rows(2), delimiter=";", encoding="cp1252"), file_name="x.csv")
    assert parsed.problems == [] and parsed.delimiter == ";" and len(parsed.lines) == 2


@pytest.mark.parametrize("column,value,message", [
    ("doc_no", "", "is mandatory but empty"),
    ("member_code", "", "is mandatory but empty"),
    ("amount", "", "is mandatory but empty"),
    ("total_amount", "", "is mandatory but empty"),
    ("number_of_installment", "", "is mandatory but empty"),
    ("installment_amount", "", "is mandatory but empty"),
    ("billing_date", "", "is mandatory but empty"),
    ("amount", "abc", "is not a number"),
    ("amount", "0", "must be more than 0"),
    ("total_amount", "-5000", "must be more than 0"),
    ("installment_amount", "1500.50", "must be whole rupiah (IDR has no decimals)"),
    ("amount", "150.000", "is ambiguous (thousands separator or decimals?); write the plain number (e.g. 150000)"),
    ("amount", "1,500,000", "has thousands separators; write the plain number (e.g. 150000)"),
    ("amount", "1500,5", "uses a decimal comma; write the plain number with a dot for decimals"),
    ("amount", "Rp 5000", "has a currency sign; write the plain number (e.g. 150000)"),
    ("amount", "1" * 16, "is too large (at most 15 digits)"),
    ("number_of_installment", "1.5", "must be a whole number"),
    ("number_of_installment", "0", "must be more than 0"),
    ("number_of_installment", "1000", "is too large (at most 999, 3 digits)"),
    ("billing_date", "32", "must be a day of the month, 01-31"),
    ("billing_date", "0", "must be a day of the month, 01-31"),
    ("billing_date", "5th", "must be a day of the month, 01-31"),
    ("doc_no", "D" * 51, "is 51 characters long; at most 50"),
    ("member_code", "M" * 51, "is 51 characters long; at most 50"),
    ("member_name", "N" * 101, "is 101 characters long; at most 100"),
    ("description", "x" * 256, "is 256 characters long; at most 255"),
    ("member_name", "two\nlines", "contains a line break or control character"),
    ("doc_no", EXAMPLE_DOC_NO, "is the template's example row; delete it"),
])
def test_every_bad_value_is_reported_by_row_and_column(column, value, message):
    data = rows(2)
    data[1][column] = value
    parsed = parse_upload(content=csv_bytes(data), file_name="x.csv")
    assert problems(parsed) == [(3, column, message)]
    assert [line.row_number for line in parsed.lines] == [2]  # the bad row is not a line


def test_all_problems_of_a_file_are_listed_at_once_and_duplicates_name_the_first_row():
    data = rows(5)
    data[1]["amount"] = "x"
    data[1]["billing_date"] = "99"
    data[3]["doc_no"] = data[0]["doc_no"]
    parsed = parse_upload(content=csv_bytes(data), file_name="x.csv")
    assert problems(parsed) == [
        (3, "amount", "is not a number"),
        (3, "billing_date", "must be a day of the month, 01-31"),
        (5, "doc_no", "appears twice in the file (also on row 2)"),
    ]
    assert parsed.problem_count == 3


def test_xlsx_cells_numbers_dates_and_blank_rows_keep_sheet_row_numbers():
    header = list(COLUMN_NAMES)
    data = [
        ["X-1", "0012", "A", 150000, 150000.0, 1, 150000, None, "d", 5],
        [None] * 10,  # a blank row: skipped, but counted in the row numbers
        ["X-2", 12345, "B", 0.1, 1, 1.0, 1, None, None, "31"],
        ["X-3", "M", "C", 1000, 1000, 1, 1000, None, None, date(2026, 11, 5)],
    ]
    parsed = parse_upload(content=xlsx_bytes(data, header), file_name="x.xlsx")
    assert problems(parsed) == [
        (4, "amount", "must be whole rupiah (IDR has no decimals)"),
        (5, "billing_date", "is a date; enter only the day of the month (01-31)"),
    ]
    first = parsed.lines[0]
    assert (first.member_code, first.billing_date, first.total_amount) == ("0012", "05", Decimal(150000))


def test_non_idr_credentials_allow_two_decimals():
    data = [row("C-1", amount="10.25")]
    assert parse_upload(content=csv_bytes(data), file_name="x.csv", currency="USD").lines[0].amount == Decimal("10.25")


@pytest.mark.parametrize("content,name,message", [
    (b"", "x.csv", "The file is empty."),
    (b"a" * (5 * 1024 * 1024 + 1), "x.csv", "the limit is 5 MB"),
    (b"doc_no\nA", "x.pdf", "Upload a .csv or .xlsx file"),
    (b"\xd0\xcf\x11\xe0" + b"\0" * 100, "x.xls", "Old Excel workbooks (.xls/.xlsb) cannot be read"),
    (b"\xd0\xcf\x11\xe0" + b"\0" * 100, "renamed.csv", "old Excel workbook (.xls)"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "photo.csv", "The file is a PNG image, not a spreadsheet"),
    (b"%PDF-1.7 ...", "invoice.csv", "The file is a PDF document"),
    (bytes(range(256)) * 20, "random.csv", "The file is binary, not a CSV text file"),
    (b"PK\x03\x04" + b"garbage" * 50, "broken.xlsx", "is damaged and cannot be opened"),
    (b"\n\n  \n", "x.csv", "The file has no rows"),
    (b"doc_no,member_code,amount,total_amount,number_of_installment,installment_amount,billing_date\r\n",
     "x.csv", "The file has a header row but no invoice rows."),
    (b"invoice,customer\r\nA,B\r\n", "x.csv",
     "missing: doc_no, member_code, amount, total_amount, number_of_installment, installment_amount, billing_date"),
    (b"doc_no,Doc No,member_code\r\n", "x.csv", "Two columns are both “doc_no”"),
])
def test_files_that_cannot_be_read_get_a_message(content, name, message):
    with pytest.raises(UploadError) as caught:
        parse_upload(content=content, file_name=name)
    assert message in str(caught.value)


def test_a_zip_that_is_not_a_workbook_and_a_truncated_workbook():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UploadError, match="zip archive, not an Excel workbook"):
        parse_upload(content=buffer.getvalue(), file_name="x.xlsx")
    good = xlsx_bytes(rows(50))
    with pytest.raises(UploadError, match="damaged"):
        parse_upload(content=good[: len(good) // 2], file_name="x.xlsx")
    damaged = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item, b"<not xml" if item.filename.startswith("xl/worksheets/") else data)
    with pytest.raises(UploadError, match="damaged"):
        parse_upload(content=damaged.getvalue(), file_name="x.xlsx")


def test_row_limit():
    content = csv_bytes(rows(MAX_ROWS + 1))
    with pytest.raises(UploadError, match="more than 10,000 rows"):
        parse_upload(content=content, file_name="x.csv")
    assert parse_upload(content=csv_bytes(rows(MAX_ROWS)), file_name="x.csv").row_count == MAX_ROWS


def test_templates_have_the_documented_columns_and_an_example_row():
    for content, name in ((template_csv(), "t.csv"), (template_xlsx(), "t.xlsx")):
        parsed = parse_upload(content=content, file_name=name)
        assert problems(parsed) == [(2, "doc_no", "is the template's example row; delete it")]
    assert template_csv().startswith(codecs.BOM_UTF8)
    assert template_csv().decode("utf-8-sig").splitlines()[0] == (
        "doc_no,member_code,member_name,amount,total_amount,number_of_installment,installment_amount,"
        "balance_payment_amount,description,billing_date")
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(template_xlsx()))
    sheet = book["invoices"]
    assert [c.value for c in sheet[1]] == list(COLUMN_NAMES)
    assert sheet["A2"].value == EXAMPLE_DOC_NO and sheet["A3"].number_format == "@"
    assert book["columns"]["A2"].value == "doc_no"
