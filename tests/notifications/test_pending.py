"""A notification for an invoice arbook has not synced yet waits, asks for a sync, and is applied
when a sync brings the invoice."""
from __future__ import annotations

import pytest

from arbook.models import Invoice, InvoiceEvent, Notification, SyncRun
from arbook.services.sync import invoices_sync

from .conftest import hook_path, make_credential

pytestmark = pytest.mark.django_db


def unsynced_xendit_callback(sandbox):
    """A PAID callback for a sandbox invoice whose list entry still says PENDING (with the same
    `updated`): the sync then brings the invoice open and the waiting callback pays it."""
    prov = sandbox.sandbox.providers["xendit"]
    truth = next(t for t in prov.truth() if t["status"] == "open")
    headers, body = prov.callback(truth["external_id"], event="PAID")
    return truth, headers, body


def post(client, credential, headers, body):
    return client.post(hook_path(credential), data=body, content_type=headers.pop("Content-Type"), headers=headers)


def test_it_is_kept_and_applied_by_the_sync_that_brings_the_invoice(merchant, sandbox, client, monkeypatch,
                                                                    django_capture_on_commit_callbacks):
    requested = []
    monkeypatch.setattr("arbook.services.invoice_write.sync_enqueue", lambda **kw: requested.append(kw) or True)
    credential = make_credential(merchant, sandbox, "xendit")
    truth, headers, body = unsynced_xendit_callback(sandbox)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, credential, headers, body)

    assert response.status_code == 200  # accepted: the provider must not retry for our lag
    notification = Notification.objects.get()
    assert (notification.outcome, notification.external_id) == ("pending", truth["external_id"])
    assert [(r["credential"], r["trigger"]) for r in requested] == [(credential, SyncRun.Trigger.NOTIFICATION)]
    assert not Invoice.objects.exists()

    run = invoices_sync(credential=credential, full=True)

    assert run.status == "succeeded"
    invoice = Invoice.objects.get(external_id=truth["external_id"])
    assert (invoice.status, invoice.outstanding, invoice.provider_status) == ("paid", 0, "PAID")
    notification.refresh_from_db()
    assert (notification.outcome, notification.invoice) == ("applied", invoice)
    event = InvoiceEvent.objects.get(invoice=invoice)
    assert (event.source, event.notification, event.status_before, event.status_after) == (
        "notification", notification, "open", "paid")


def test_with_a_worker_the_requested_sync_applies_it_at_once(merchant, sandbox, client,
                                                            django_capture_on_commit_callbacks):
    credential = make_credential(merchant, sandbox, "xendit")
    truth, headers, body = unsynced_xendit_callback(sandbox)

    with django_capture_on_commit_callbacks(execute=True):
        post(client, credential, headers, body)

    run = SyncRun.objects.get()
    assert (run.trigger, run.status) == ("notification", "succeeded")
    assert Invoice.objects.get(external_id=truth["external_id"]).status == "paid"
    assert Notification.objects.get().outcome == "applied"
