"""Each provider's notification, delivered over HTTP by the sandbox to the live receiver."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from arbook.models import Invoice, InvoiceEvent, Notification
from gateways import espay as espay_gw

from .conftest import PROVIDERS, hook_path, notify

pytestmark = pytest.mark.django_db(transaction=True)


def check_success_reply(credential, delivery: dict) -> None:
    """The body each provider expects back from a merchant that accepted its notification."""
    assert delivery["status"] == 200, delivery
    body = json.loads(delivery["body"])
    if credential.provider == "espay":
        assert body["error_code"] == "0000" and body["order_id"] and body["reconcile_id"]
        expected = espay_gw.paymentreport_reply_signature(credential.secrets["signature_key"], body["rq_uuid"],
                                                          body["rs_datetime"], "0000")
        assert body["signature"] == expected
    elif credential.provider == "faspay":
        assert body["response_code"] == "00"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_valid_notification_marks_the_invoice_paid_with_an_event_that_names_it(
        provider, subject, sandbox, live_server, signed_in):
    credential, invoice = subject(provider)
    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice)

    check_success_reply(credential, answer)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.outstanding == 0 and invoice.paid_at is not None
    notification = Notification.objects.get()
    assert (notification.verification, notification.outcome, notification.invoice_id) == ("valid", "applied", invoice.pk)
    assert notification.body and notification.event_id and notification.event_at
    event = InvoiceEvent.objects.get(invoice=invoice, source="notification")
    assert (event.notification_id, event.status_before, event.status_after) == (notification.pk, "open", "paid")
    # The invoice page says where the change came from.
    page = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert f"Notification #{notification.pk}" in page


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_duplicate_delivery_changes_nothing(provider, subject, sandbox, live_server):
    credential, invoice = subject(provider)
    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice, duplicate=True)

    assert [d["status"] for d in answer["deliveries"]] == [200, 200]
    first, second = Notification.objects.order_by("pk")
    assert (first.outcome, second.outcome) == ("applied", "duplicate")
    assert first.event_key == second.event_key and second.verification == "valid"
    assert InvoiceEvent.objects.filter(invoice=invoice, source="notification").count() == 1
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.outstanding == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_older_notification_never_overwrites_a_newer_state(provider, subject, sandbox, live_server):
    credential, invoice = subject(provider)
    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice, out_of_order=True)

    assert [d["status"] for d in answer["deliveries"]] == [200, 200]
    newer, older = Notification.objects.order_by("pk")
    if provider != "faspay":  # Faspay's payment_date is unsigned: a confirmed state is as of its confirmation
        assert older.event_at is None or older.event_at < newer.event_at
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.outstanding == 0
    events = list(InvoiceEvent.objects.filter(invoice=invoice, source="notification").order_by("pk"))
    if provider == "espay":
        # Espay's payment reports are confirmed with its Check Payment Status: the first one
        # applied brings the order's whole state (both instalments paid), the older one is stale.
        assert (newer.outcome, older.outcome) == ("applied", "stale")
        assert [(e.status_after, e.outstanding_after) for e in events] == [("paid", Decimal(0))]
        assert invoice.paid_at is not None and invoice.paid_amount == Decimal(150000)
    elif provider == "faspay":
        # The older UNPAID callback is checked with Faspay's inquiry, which says PAID: it changes
        # nothing, and since it contradicts the provider it is left for review.
        assert (newer.outcome, older.outcome) == ("applied", "needs_review")
        assert [e.status_after for e in events] == ["paid"]
    else:
        assert (newer.outcome, older.outcome) == ("applied", "stale")
        assert [e.status_after for e in events] == ["paid"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_signature_is_refused_kept_and_not_applied(provider, subject, sandbox, live_server):
    credential, invoice = subject(provider)
    before = Invoice.objects.values().get(pk=invoice.pk)
    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice, bad_signature=True)

    assert answer["status"] == 401
    if provider == "espay":
        body = json.loads(answer["body"])
        assert body["error_code"] == "0101" and body["signature"] == ""
    notification = Notification.objects.get()
    assert (notification.verification, notification.outcome) == ("bad_signature", "rejected")
    assert notification.body and notification.parsed is None and notification.invoice is None
    assert Invoice.objects.values().get(pk=invoice.pk) == before
    assert not InvoiceEvent.objects.filter(source="notification").exists()
