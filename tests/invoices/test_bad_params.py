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
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert any("Nothing was exported" in n for n in notices(response))


def test_the_detail_of_a_non_number_is_404(signed_in):
    assert signed_in.get("/invoices/abc/").status_code == 404


def test_post_is_not_allowed(signed_in):
    assert signed_in.post("/invoices/").status_code == 405
