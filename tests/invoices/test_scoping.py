"""A user of merchant A never sees merchant B's invoices: not in the list, totals, exports or detail."""
from __future__ import annotations

import io
from decimal import Decimal

import openpyxl
import pytest

from tests.factories import InvoiceFactory

from .conftest import notices, numbers, totals

pytestmark = pytest.mark.django_db


@pytest.fixture
def both(credential, credential_b):
    mine = InvoiceFactory(credential=credential, number="A-1", customer_name="Shared Name", outstanding=Decimal("100"))
    theirs = InvoiceFactory(credential=credential_b, number="B-1", customer_name="Shared Name",
                            outstanding=Decimal("999"), currency="DKK")
    return mine, theirs


def test_detail_of_another_merchants_invoice_is_404(signed_in, both):
    mine, theirs = both
    assert signed_in.get(f"/invoices/{mine.pk}/").status_code == 200
    assert signed_in.get(f"/invoices/{theirs.pk}/").status_code == 404
    assert signed_in.get("/invoices/999999/").status_code == 404


def test_list_and_totals_hold_only_own_merchants(signed_in, both):
    response = signed_in.get("/invoices/", {"q": "Shared"})
    assert numbers(response) == ["A-1"]
    fragment = signed_in.get("/invoices/", {"q": "Shared", "_totals": "1"})
    assert list(totals(fragment)) == ["IDR"] and totals(fragment)["IDR"].outstanding == Decimal("100")
    assert b"B-1" not in response.content and b"Other Merchant B" not in response.content


def test_filtering_by_another_merchant_shows_none_of_its_data(signed_in, both, merchant_b, credential_b):
    for params in ({"merchant": merchant_b.pk}, {"credential": credential_b.pk}):
        response = signed_in.get("/invoices/", params)
        assert response.status_code == 200
        assert "B-1" not in numbers(response)
        assert "DKK" not in totals(signed_in.get("/invoices/", {**params, "_totals": "1"}))
        assert any("not one of the available choices" in n for n in notices(response))


def test_exports_hold_only_own_merchants(signed_in, both):
    csv_text = b"".join(signed_in.get("/invoices/?_export=csv").streaming_content).decode("utf-8-sig")
    assert "A-1" in csv_text and "B-1" not in csv_text and "Other Merchant B" not in csv_text
    data = b"".join(signed_in.get("/invoices/?_export=xlsx").streaming_content)
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).active
    values = [v for row in sheet.iter_rows(values_only=True) for v in row]
    assert "A-1" in values and "B-1" not in values


def test_superuser_sees_every_merchant(admin_client_, both):
    assert sorted(numbers(admin_client_.get("/invoices/"))) == ["A-1", "B-1"]


def test_a_user_without_merchants_sees_an_empty_state(client, both):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get("/invoices/")
    assert response.status_code == 200 and numbers(response) == []
    assert b"not a member of any merchant" in response.content
