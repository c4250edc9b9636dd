"""Headless Chromium: sign in, filter the invoice list, open an invoice, download an export."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.browser import sign_in
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_find_an_overdue_invoice_of_a_customer_and_export(live_server, page, tmp_path):
    user = UserFactory(username="accountant")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    now = timezone.now()
    InvoiceFactory(credential=cred, number="INV-LATE-1", customer_name="PT Sinar Jaya", status="open",
                   outstanding=Decimal("1234567"), due_at=now - timedelta(days=12),
                   raw={"status": "PENDING", "id": "x-late"})
    InvoiceFactory(credential=cred, number="INV-ONTIME", customer_name="PT Sinar Jaya", status="open",
                   due_at=now + timedelta(days=5))
    InvoiceFactory(credential=cred, number="INV-OTHER", customer_name="CV Lain", status="open",
                   due_at=now - timedelta(days=3))

    sign_in(page, f"{live_server.url}/invoices/", "accountant")
    assert page.get_by_role("heading", name="Invoices").is_visible()

    # Filter with the keyboard: search box, overdue checkbox, Enter submits.
    page.get_by_label("Search", exact=True).fill("sinar")
    page.get_by_label("Overdue only").check()
    page.get_by_label("Search", exact=True).press("Enter")
    page.wait_for_url("**/invoices/?*q=sinar*")
    assert "overdue=1" in page.url  # the filtered view is a bookmarkable URL
    table = page.locator("table.invoice-table tbody")
    assert table.locator("tr").count() == 1
    assert page.get_by_role("link", name="INV-LATE-1").is_visible()
    page.wait_for_selector("[data-testid=totals][data-loaded]")  # fetched after the rows (invoices.js)
    assert page.locator("[data-testid=totals]").inner_text().count("Rp 1.234.567") == 1

    # Download the filtered set.
    with page.expect_download() as info:
        page.locator("[data-testid=export-csv]").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    content = path.read_text(encoding="utf-8-sig")
    assert "INV-LATE-1" in content and "INV-ONTIME" not in content and "INV-OTHER" not in content

    # Open the invoice.
    page.get_by_role("link", name="INV-LATE-1").click()
    page.wait_for_url("**/invoices/*/")
    assert page.get_by_role("heading", name="Invoice INV-LATE-1").is_visible()
    assert page.get_by_text("Rp 1.234.567").first.is_visible()
    page.get_by_text("Raw payload").click()
    assert "x-late" in page.locator("pre.raw").inner_text()
