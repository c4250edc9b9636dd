"""Hostile notifications: what a forged or replayed delivery can no longer do to the money.

Each probe of the hostile-input review is a test here: a replay with a fresh unsigned id, a
negative amount under a valid signature, a rewritten unsigned status, malformed bodies that once
answered 200 or 503. The signature covers only some fields (docs/gateways.md); the others are
taken from the provider's own API before anything is applied.
"""
from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest

from arbook.models import Invoice, InvoiceEvent, Notification, SyncRun
from tests.notifications.conftest import hook_path

pytestmark = pytest.mark.django_db


def post(client, path, headers, body):
    content_type = headers.pop("Content-Type", "application/json")
    return client.post(path, data=body, content_type=content_type, headers=headers)


def espay_form(sandbox, invoice, **changes) -> tuple[dict[str, str], bytes]:
    headers, body = sandbox.sandbox.providers["espay"].notification(invoice.external_id, **changes)
    return headers, body


def reform(body: bytes, **fields) -> bytes:
    """The same form with some fields changed (the signature kept as it was)."""
    form = dict(parse_qsl(body.decode()))
    form.update(fields)
    return urlencode(form).encode()


def test_an_espay_replay_with_a_fresh_rq_uuid_is_the_same_event(subject, sandbox, client,
                                                                 django_capture_on_commit_callbacks):
    credential, invoice = subject("espay")
    prov = sandbox.sandbox.providers["espay"]
    prov.mutate(invoice.external_id, {"status": "partially_paid", "outstanding": "75000"})  # one instalment
    headers, body = espay_form(sandbox, invoice, amount=Decimal(75000))
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hook_path(credential), dict(headers), body).status_code == 200
        replay = reform(body, rq_uuid="00000000-0000-4000-8000-000000000001")  # same rq_datetime, order_id, signature
        assert post(client, hook_path(credential), dict(headers), replay).status_code == 200

    first, second = Notification.objects.order_by("pk")
    assert (first.outcome, second.outcome) == ("applied", "duplicate")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding, invoice.paid_amount) == ("partially_paid", 75000, 75000)
    assert InvoiceEvent.objects.filter(invoice=invoice).exclude(source="upload").count() == 1


def test_an_espay_amount_is_taken_from_espay_not_from_the_notification(subject, sandbox, client,
                                                                       django_capture_on_commit_callbacks):
    credential, invoice = subject("espay")
    sandbox.sandbox.providers["espay"].mutate(invoice.external_id, {"status": "partially_paid", "outstanding": "100000"})
    headers, body = espay_form(sandbox, invoice)  # claims the whole 150,000; Espay has 50,000
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hook_path(credential), dict(headers), body).status_code == 200
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding, invoice.paid_amount) == ("partially_paid", 100000, 50000)
    assert "confirmed by Espay Check Payment Status" in InvoiceEvent.objects.get(source="notification").note


def test_an_espay_payment_espay_does_not_know_is_left_for_review(subject, sandbox, client,
                                                                 django_capture_on_commit_callbacks):
    credential, invoice = subject("espay")  # nothing paid at the sandbox
    headers, body = espay_form(sandbox, invoice)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hook_path(credential), dict(headers), body).status_code == 200
    notification = Notification.objects.get()
    assert notification.outcome == "needs_review" and "no payment" in notification.outcome_reason
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding) == ("open", 150000)


@pytest.mark.parametrize("amount", ["-500000.00", "0", "0.00"])
def test_an_espay_amount_that_is_not_positive_is_malformed(amount, subject, sandbox, client):
    credential, invoice = subject("espay")
    sandbox.sandbox.providers["espay"].mutate(invoice.external_id, {"status": "paid"})
    headers, body = espay_form(sandbox, invoice)
    response = post(client, hook_path(credential), dict(headers), reform(body, amount=amount))
    assert response.status_code == 400 and json.loads(response.content)["error_code"] == "0001"
    notification = Notification.objects.get()
    assert (notification.verification, notification.outcome) == ("malformed", "rejected")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("open", 0)


def test_a_rewritten_faspay_status_cannot_reopen_a_paid_bill(subject, sandbox, client,
                                                              django_capture_on_commit_callbacks):
    credential, invoice = subject("faspay")
    prov = sandbox.sandbox.providers["faspay"]
    prov.mutate(invoice.external_id, {"status": "paid"})
    headers, body = prov.notification(invoice.external_id, event="PAID")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hook_path(credential), dict(headers), body).status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.paid_at is not None

    stored = json.loads(body)
    rewritten = {**stored, "billing_status": "UNPAID", "payment_date": "2099-01-01 00:00:00"}  # old signature
    other_payment = {**rewritten, "payment_id": "1"}
    with django_capture_on_commit_callbacks(execute=True):
        for forged in (rewritten, other_payment):
            assert post(client, hook_path(credential), {}, json.dumps(forged).encode()).status_code == 200
    _, same_payment, new_payment = Notification.objects.order_by("pk")
    assert same_payment.outcome == "duplicate"  # the signed identity (number + payment id) was applied
    assert new_payment.outcome == "needs_review"  # Faspay's inquiry says PAID
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.outstanding == 0 and invoice.paid_at.year < 2099
    assert not InvoiceEvent.objects.filter(invoice=invoice, status_after="open").exists()


@pytest.mark.parametrize("body", [
    {"id": 5, "status": {"a": 1}},
    {"id": "inv-1", "status": "PAID"},  # no amount
    {"id": "inv-1", "status": "PAID", "amount": "150000"},  # a number as text
    {"id": "inv-1", "status": "PAID", "amount": True},
    {"id": "inv-1", "status": "WHATEVER", "amount": 150000},
    {"id": "inv-1", "status": "PAID", "amount": 150000, "updated": {"$date": 1}},
    {"id": "inv-1", "status": "PAID", "amount": -1},
    {"id": ["inv-1"], "status": "PAID", "amount": 150000},
])
def test_a_xendit_body_not_of_xendits_shape_is_400_and_nothing_is_enqueued(body, subject, client, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    credential, _ = subject("xendit")
    queued = []
    monkeypatch.setattr("arbook.services.notifications._enqueue", lambda pk: queued.append(pk) or True)
    headers = {"x-callback-token": credential.secrets["callback_token"]}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, hook_path(credential), headers, json.dumps(body).encode())
    assert response.status_code == 400
    assert Notification.objects.get().verification == "malformed"
    assert queued == [] and not SyncRun.objects.exists()


@pytest.mark.parametrize("provider", ["xendit", "faspay", "farpay", "espay"])
def test_a_deeply_nested_body_is_400_not_503(provider, subject, client):
    credential, _ = subject(provider)
    headers = {"x-callback-token": credential.secrets.get("callback_token", "")} if provider == "xendit" else {}
    if provider == "farpay":
        from gateways.farpay import sign_webhook
        import time as time_module
        stamp = str(int(time_module.time()))
        body = b"[" * 30_000
        headers = {"webhook-id": "msg_1", "webhook-timestamp": stamp,
                   "webhook-signature": sign_webhook(credential.secrets["webhook_secret"], "msg_1", stamp, body)}
    response = post(client, hook_path(credential), headers, b"[" * 30_000)
    assert response.status_code == 400
    assert Notification.objects.get().verification == "malformed"


def test_a_faspay_field_that_is_not_a_plain_value_is_malformed(subject, sandbox, client):
    credential, invoice = subject("faspay")
    _, body = sandbox.sandbox.providers["faspay"].notification(invoice.external_id, event="PAID")
    forged = {**json.loads(body), "payment_amount": {"$gt": 0}}
    assert post(client, hook_path(credential), {}, json.dumps(forged).encode()).status_code == 400
    assert Invoice.objects.get(pk=invoice.pk).status == "open"


def test_the_overview_tells_staff_what_needs_review(subject, sandbox, client, user, django_capture_on_commit_callbacks):
    credential, invoice = subject("espay")
    headers, body = espay_form(sandbox, invoice)  # Espay has no payment for it
    with django_capture_on_commit_callbacks(execute=True):
        post(client, hook_path(credential), dict(headers), body)
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'data-testid="notifications-to-review"' in page and "1 payment notification needs review" in page
