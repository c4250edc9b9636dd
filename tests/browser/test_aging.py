"""Headless Chromium: sign in, open aging, click a cell, land on the list whose total equals the cell."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.browser import sign_in
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_aging_cell_leads_to_the_matching_list(live_server, page):
    from django.utils import timezone

    user = UserFactory(username="accountant")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    cred = CredentialFactory(merchant=merchant)
    now = timezone.now()
    for days, amount in ((12, "250000"), (20, "125000"), (45, "999000")):
        InvoiceFactory(credential=cred, status="open", outstanding=Decimal(amount), due_at=now - dt.timedelta(days=days))
    InvoiceFactory(credential=cred, status="open", outstanding=Decimal("777000"), due_at=now + dt.timedelta(days=3))
    other = CredentialFactory(merchant=MerchantFactory(name="Beta"))
    InvoiceFactory(credential=other, status="open", outstanding=Decimal("5000"), due_at=now - dt.timedelta(days=15))

    sign_in(page, f"{live_server.url}/aging/", "accountant")
    assert page.get_by_role("heading", name="Aging").is_visible()

    cell = page.locator('section[data-currency="IDR"] tr[data-row="open"] td[data-bucket="1-30"] a')
    assert cell.inner_text() == "Rp 375.000"
    cell.click()
    page.wait_for_url("**/invoices/?*")
    totals = page.get_by_test_id("totals").locator('[data-currency="IDR"]')  # fetched by the list's script
    totals.wait_for()
    assert "Rp 375.000" in totals.inner_text()
    assert "2 invoices" in totals.inner_text().lower()
    assert page.locator("table tbody tr").count() == 2
