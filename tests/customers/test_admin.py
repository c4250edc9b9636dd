"""Customers in the Django admin: listed with their identities, read-only (staff merge and split
them on the customer pages, where the decision is recorded)."""
from __future__ import annotations

import pytest

from arbook.models import Customer, CustomerIdentity
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def test_customers_are_listed_searchable_and_read_only(admin_client):
    merchant = MerchantFactory()
    c = Customer.objects.create(merchant=merchant, name="PT Maju", providers="faspay,xendit", invoice_count=3)
    CustomerIdentity.objects.create(merchant=merchant, customer=c, kind="email", value="ap@maju.id", shown="AP@maju.id")
    listing = admin_client.get("/admin/arbook/customer/", {"q": "ap@maju.id"})
    assert listing.status_code == 200 and "PT Maju" in listing.content.decode()
    page = admin_client.get(f"/admin/arbook/customer/{c.pk}/change/")
    assert page.status_code == 200 and "AP@maju.id" in page.content.decode()
    assert admin_client.post(f"/admin/arbook/customer/{c.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/arbook/invoice/").status_code == 200


def test_an_invoice_shows_its_events_read_only(admin_client):
    from tests.factories import InvoiceEventFactory, InvoiceFactory

    invoice = InvoiceFactory()
    InvoiceEventFactory(invoice=invoice, status_before="open", status_after="paid", note="paid at the gateway")
    page = admin_client.get(f"/admin/arbook/invoice/{invoice.pk}/change/").content.decode()
    assert "paid at the gateway" in page and 'name="events-0-note"' not in page  # shown, not editable
