"""Headless Chromium: a collector takes a customer from the worklist, records a promise, the
customer pays through the sandbox (its payment notification, delivered over HTTP to the live
receiver), and the customer's page shows the promise kept.

The sandbox is anchored on the real date and the test's dates are relative to now: neither side
is pinned, so nothing here depends on the calendar day."""
from __future__ import annotations

import datetime as dt

import pytest
import requests
from django.utils import timezone

from arbook.models import Customer, GatewayCredential, Invoice, Promise
from arbook.selectors.worklist import worklist
from arbook.services.collections import merchant_today
from arbook.services.sync import invoices_sync
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.browser import sign_in
from tests.browser.test_csp import watch_violations
from tests.factories import MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sandbox():
    server = start(size=60)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def eager(settings, monkeypatch):
    """The notification's apply task runs inline when the receiver enqueues it."""
    from arbook.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)


def test_worklist_promise_paid_through_the_sandbox_is_kept(live_server, page, sandbox):
    user = UserFactory(username="collector")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    credential = GatewayCredential.objects.create(
        merchant=merchant, provider="xendit", label="sandbox", base_url=sandbox.base_url("xendit"),
        secrets=dict(CREDENTIALS["xendit"]), options=dict(OPTIONS.get("xendit", {})))
    assert invoices_sync(credential=credential, full=True).status == "succeeded"
    Customer.objects.filter(merchant=merchant).update(collector=user)
    top = worklist(user=user, merchants=[merchant]).items[0]
    invoice = (Invoice.objects.filter(customer=top.customer, currency=top.currency, status="open",
                                      outstanding__gt=0).order_by("due_at").first())
    assert invoice is not None
    violations = watch_violations(page)

    sign_in(page, f"{live_server.url}/worklist/", "collector")
    assert page.get_by_role("heading", name="Worklist").is_visible()
    row = page.get_by_test_id("work-item").first
    assert top.customer.name in row.inner_text() and "Call" in row.get_by_test_id("next-step").inner_text()
    row.get_by_test_id("add-promise").click()
    by = merchant_today(merchant, timezone.now()) + dt.timedelta(days=3)
    row.get_by_label(f"Amount ({top.currency})").fill(str(invoice.outstanding))
    row.get_by_label("By").fill(by.isoformat())
    row.get_by_role("button", name="Record promise").click()
    page.wait_for_url("**/worklist/")
    assert "Promise recorded" in page.locator(".messages").inner_text()
    promise = Promise.objects.get()
    assert (promise.customer_id, promise.state, promise.promised_for) == (top.customer.pk, "open", by)
    # Waiting on its promise now: the customer is listed last, with its promise.
    last = page.get_by_test_id("work-item").last
    assert top.customer.name in last.inner_text() and "Wait for" in last.inner_text()

    answer = requests.post(sandbox.url + "/_sandbox/notify", json={
        "provider": "xendit", "external_id": invoice.external_id,
        "url": f"{live_server.url}/hooks/xendit/{credential.hook_token}/"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["deliveries"][0]["status"] == 200, answer.text

    page.get_by_role("link", name=top.customer.name).last.click()
    page.wait_for_url(f"**/customers/{top.customer.pk}/")
    promise_row = page.get_by_test_id("promise").first
    assert promise_row.get_by_test_id("promise-state").inner_text() == "Kept"
    promise.refresh_from_db()
    assert (promise.state, promise.paid) == ("kept", invoice.outstanding)
    assert not violations
