"""Headless Chromium under the Content-Security-Policy: the pages and the admin work, and the
browser reports no violation (a blocked inline script or style would be one)."""
from __future__ import annotations

import pytest

from tests.factories import PASSWORD, CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_violations(page) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    # The DOM event also catches what the console may not print (e.g. a blocked style attribute).
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));")
    return seen


def test_pages_and_admin_run_under_the_policy_without_violations(live_server, page):
    admin = UserFactory(username="boss", is_staff=True, is_superuser=True)
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(admin)
    credential = CredentialFactory(merchant=merchant, provider="xendit")
    invoice = InvoiceFactory(credential=credential, number="INV-CSP-1")
    violations = watch_violations(page)

    response = page.goto(f"{live_server.url}/accounts/login/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    for path in ("/", "/invoices/", f"/invoices/{invoice.pk}/", "/aging/", "/syncs/", "/espay/batches/new/"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    # The invoice list fetches its totals with a script from static/: it ran.
    page.goto(f"{live_server.url}/invoices/")
    page.wait_for_selector("[data-loaded='1']", state="attached")

    for path in ("/admin/", "/admin/arbook/gatewaycredential/", f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                 "/admin/arbook/invoice/", "/admin/auth/user/add/"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    # Admin JavaScript works (the theme toggle and the action bar are scripts from static/).
    page.goto(f"{live_server.url}/admin/arbook/gatewaycredential/")
    page.locator("#action-toggle").check()
    assert page.locator("#changelist-form .action-counter").inner_text().startswith("1 of 1")
    assert violations == []
