"""Headless Chromium: from the customer list to a customer, then download its statement PDF."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from arbook.models import Customer, CustomerIdentity
from arbook.services.customers import customers_refresh
from tests.browser import sign_in
from tests.browser.test_csp import watch_violations
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_customer_list_to_statement_pdf(live_server, page, tmp_path):
    user = UserFactory(username="collector")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    now = timezone.now()  # dates relative to now: nothing here depends on the calendar day
    customer = Customer.objects.create(merchant=merchant, name="PT Sinar Jaya")
    CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value="ap@sinar.id",
                                    shown="AP@sinar.id")
    for cred in (CredentialFactory(merchant=merchant, provider="xendit"), CredentialFactory(merchant=merchant)):
        InvoiceFactory(credential=cred, customer=customer, customer_name="PT Sinar Jaya", status="open",
                       outstanding=Decimal("1234567"), due_at=now - dt.timedelta(days=12),
                       issued_at=now - dt.timedelta(days=40))
    other = Customer.objects.create(merchant=merchant, name="CV Lain")
    InvoiceFactory(credential=CredentialFactory(merchant=merchant, provider="munio"), customer=other,
                   customer_name="CV Lain", status="paid", outstanding=Decimal(0), paid_at=now - dt.timedelta(days=2))
    customers_refresh(customer_ids=[customer.pk, other.pk])
    violations = watch_violations(page)

    sign_in(page, f"{live_server.url}/customers/", "collector")
    assert page.get_by_role("heading", name="Customers").is_visible()
    rows = page.locator("table.customer-table tbody tr")
    assert rows.count() == 2
    assert "Rp 2.469.134" in rows.first.inner_text() and "12 days" in rows.first.inner_text()

    page.get_by_label("Has overdue invoices").check()
    page.get_by_label("Search", exact=True).fill("sinar")
    page.get_by_label("Search", exact=True).press("Enter")
    page.wait_for_url("**/customers/?*q=sinar*")
    assert rows.count() == 1

    page.get_by_role("link", name="PT Sinar Jaya").click()
    page.wait_for_url(f"**/customers/{customer.pk}/")
    assert page.get_by_role("heading", name="PT Sinar Jaya", exact=True).is_visible()
    assert page.get_by_test_id("identities").get_by_text("AP@sinar.id").is_visible()
    assert page.locator("[data-testid=invoices] table tbody tr").count() == 2

    with page.expect_download() as info:
        page.get_by_test_id("statement-download").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert info.value.suggested_filename.endswith(".pdf")
    assert path.read_bytes().startswith(b"%PDF")
    page.goto(f"{live_server.url}/customers/suggestions/")
    page.wait_for_load_state("networkidle")
    assert violations == []  # the pages run under the Content-Security-Policy
