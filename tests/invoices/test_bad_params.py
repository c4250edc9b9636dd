"""Bad query-string values render the page with a message: never a 500, never a silent surprise."""
from __future__ import annotations

import pytest

from tests.factories import InvoiceFactory

from .conftest import notices, numbers

pytestmark = pytest.mark.django_db


@pytest.fixture
def some(credential):
    return [InvoiceFactory(credential=credential, number=f"N-{i}") for i in range(3)]


@pytest.mark.parametrize("params,expected", [
    ({"due_from": "2024-13-45"}, "Due from: Enter a valid date"),
    ({"paid_to": "yesterday"}, "Paid to: Enter a valid date"),
    ({"status": "bogus"}, "Status: Select a valid choice"),
    ({"provider": "paypal"}, "Gateway: Select a valid choice"),
    ({"merchant": "abc"}, "Merchant: Select a valid choice"),
    ({"currency": "RUPIAH"}, "Currency: "),
    ({"outstanding_min": "lots"}, "Outstanding from: Enter a number"),
    ({"sort": "password"}, "Cannot sort by"),
    ({"size": "100000"}, "Page size must be one of"),
    ({"after": "not-a-cursor"}, "page link does not fit"),
    ({"before": "eyJ4Ijp9"}, "page link does not fit"),
    ({"as_of": "31/12/2024", "row": "open"}, "Aging as of: Enter a valid date"),
    ({"row": "everything"}, "aging selection was not applied"),
    ({"basis": "paid", "row": "open"}, "Aging basis: Select a valid choice"),
    ({"tz": "Mars/Olympus", "row": "open"}, "Unknown time zone"),
    ({"_export": "pdf"}, "Export as csv or xlsx"),
])
def test_bad_value_renders_the_page_with_a_message(signed_in, some, params, expected):
    response = signed_in.get("/invoices/", params)
    assert response.status_code == 200
    assert any(expected in n for n in notices(response)), notices(response)
    assert expected.split(":")[0].encode() in response.content
    # The malformed filter is left out; the others still apply.
    assert len(numbers(response)) == 3


def test_the_valid_filters_still_apply_beside_a_bad_one(signed_in, credential):
    InvoiceFactory(credential=credential, number="KEEP", status="failed")
    InvoiceFactory(credential=credential, number="DROP", status="open")
    response = signed_in.get("/invoices/", {"status": "failed", "due_from": "not-a-date"})
    assert numbers(response) == ["KEEP"]


def test_no_export_while_a_filter_is_malformed(signed_in, some):
    response = signed_in.get("/invoices/", {"_export": "csv", "due_from": "2024-02-30"})
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")
    assert any("Nothing was exported" in n for n in notices(response))


def test_the_detail_of_a_non_number_is_404(signed_in):
    assert signed_in.get("/invoices/abc/").status_code == 404


def test_post_is_not_allowed(signed_in):
    assert signed_in.post("/invoices/").status_code == 405


# -- values in range for a form field, out of range for the code behind it (issue 14) -------------

DATE_RANGE = "Enter a date between 1900-01-01 and 2999-12-31."
DATE_FILTERS = ["due_from", "due_to", "issued_from", "issued_to", "paid_from", "paid_to"]


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1899-12-31", "3000-01-01"])
@pytest.mark.parametrize("name", DATE_FILTERS)
def test_a_date_out_of_range_is_left_out_with_a_message(signed_in, some, name, value):
    response = signed_in.get("/invoices/", {name: value})
    assert response.status_code == 200
    assert any(DATE_RANGE in n and "This filter was not applied." in n for n in notices(response)), notices(response)
    assert len(numbers(response)) == 3


@pytest.mark.parametrize("value", ["1900-01-01", "2999-12-31"])
@pytest.mark.parametrize("name", DATE_FILTERS)
def test_the_edges_of_the_date_range_apply(signed_in, some, name, value):
    response = signed_in.get("/invoices/", {name: value, "_export": "csv"})
    assert response.status_code == 200
    b"".join(response.streaming_content)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("name", ["due_to", "issued_to", "paid_to", "due_from"])
def test_an_export_with_a_date_out_of_range_is_a_400_with_the_message(signed_in, some, name, fmt):
    response = signed_in.get("/invoices/", {name: "9999-12-31", "_export": fmt})
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")
    assert any("Nothing was exported" in n for n in notices(response))
    assert DATE_RANGE.encode() in response.content


@pytest.mark.parametrize("name", ["due_to", "issued_to", "paid_to", "due_from"])
def test_the_totals_of_a_date_out_of_range_leave_it_out(signed_in, some, name):
    response = signed_in.get("/invoices/", {name: "9999-12-31", "_totals": "1"})
    assert response.status_code == 200
    assert sum(t.count for t in response.context["totals"]) == 3


@pytest.mark.parametrize("params", [
    {"as_of": "0001-01-31", "bucket": "91-", "row": "receivable", "basis": "due"},
    {"as_of": "0001-01-31", "bucket": "1-30", "row": "open", "basis": "issued"},
    {"as_of": "9999-12-31", "bucket": "current", "row": "open"},
])
def test_an_aging_drilldown_as_of_out_of_range(signed_in, some, params):
    for extra in ({}, {"_totals": "1"}):
        response = signed_in.get("/invoices/", {**params, **extra})
        assert response.status_code == 200
    response = signed_in.get("/invoices/", params)
    assert any(n.startswith("Aging as of: " + DATE_RANGE) for n in notices(response)), notices(response)
    assert response.context["listing"].drilldown is None and len(numbers(response)) == 3


@pytest.mark.parametrize("bucket", ["99999-", "1-99999", "36502-", "1-36501"])
def test_an_aging_bucket_beyond_a_century_is_refused(signed_in, some, bucket):
    response = signed_in.get("/invoices/", {"as_of": "1900-01-01", "bucket": bucket, "row": "open"})
    assert response.status_code == 200
    assert any("aging selection was not applied" in n and "36500" in n for n in notices(response)), notices(response)


def test_the_oldest_as_of_with_the_widest_bucket_works(signed_in, some):
    response = signed_in.get("/invoices/", {"as_of": "1900-01-01", "bucket": "36501-", "row": "all"})
    assert response.status_code == 200 and not notices(response)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", "1e999999", "-1e30", "1e-999999", "0.001",
                                   "1" * 40])
@pytest.mark.parametrize("name", ["outstanding_min", "outstanding_max"])
def test_an_amount_out_of_range_is_left_out(signed_in, some, name, value):
    response = signed_in.get("/invoices/", {name: value})
    assert response.status_code == 200
    assert any("This filter was not applied." in n for n in notices(response)), notices(response)
    assert len(numbers(response)) == 3
    export = signed_in.get("/invoices/", {name: value, "_export": "csv"})
    assert export.status_code == 400


@pytest.mark.parametrize("size", ["²", "٢٥", "25.0", "-25", "1" * 5000, "25\x00"])
def test_a_page_size_that_is_no_size(signed_in, some, size):
    response = signed_in.get("/invoices/", {"size": size})
    assert response.status_code == 200
    assert any("Page size must be one of" in n for n in notices(response))


def _token(*items) -> str:
    import base64
    import json

    raw = json.dumps(list(items), separators=(",", ":"))  # json.dumps writes NaN / Infinity as such
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


TAMPERED = [
    ("amount", ["amount", "v", "NaN", 1]),
    ("amount", ["amount", "v", "Infinity", 1]),
    ("amount", ["amount", "v", "-Infinity", 1]),
    ("amount", ["amount", "v", "sNaN", 1]),
    ("amount", ["amount", "v", "1e999999", 1]),
    ("amount", ["amount", "v", "1e-999999", 1]),
    ("amount", ["amount", "v", "1" * 30, 1]),
    ("amount", ["amount", "v", float("nan"), 1]),
    ("-issued_at", ["-issued_at", "v", "0001-01-01T00:00:00+05:00", 1]),
    ("-issued_at", ["-issued_at", "v", "9999-12-31T23:59:59-05:00", 1]),
    ("-issued_at", ["-issued_at", "v", "9999-12-31T23:59:59.999999-23:59", 1]),
    ("-issued_at", ["-issued_at", "v", float("inf"), 1]),
    ("-issued_at", ["-issued_at", "v", "2025-01-01T00:00:00+00:00", 2 ** 70]),
    ("-issued_at", ["-issued_at", "v", "2025-01-01T00:00:00+00:00", -(2 ** 70)]),
    ("-issued_at", ["-issued_at", "v", "2025-01-01T00:00:00+00:00", float("nan")]),
    ("-issued_at", ["-issued_at", "v", "2025-01-01T00:00:00+00:00", True]),
    ("due_at", ["due_at", "n", None, 2 ** 63]),
    ("number", ["number", "v", "N-1\x00", 1]),
    ("number", ["number", "v", "x" * 10_000, 1]),
]


@pytest.mark.parametrize("direction", ["after", "before"])
@pytest.mark.parametrize("sort,items", TAMPERED)
def test_a_tampered_cursor_shows_the_first_page(signed_in, some, sort, items, direction):
    response = signed_in.get("/invoices/", {"sort": sort, direction: _token(*items)})
    assert response.status_code == 200
    assert any("page link does not fit" in n for n in notices(response)), notices(response)
    assert len(numbers(response)) == 3
