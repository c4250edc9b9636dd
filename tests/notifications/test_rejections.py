"""Refused deliveries: unknown URL, malformed body, oversize body, no secret to verify with.

Each is answered with the status the provider treats as a failure, stored raw with its
verification result, logged without secrets, and never applied."""
from __future__ import annotations

import json
import logging

import pytest

from arbook.models import Invoice, InvoiceEvent, Notification
from arbook.models.notifications import BODY_MAX
from gateways.farpay import sign_webhook
from gateways.sandbox import CREDENTIALS

from .conftest import PROVIDERS, hook_path

pytestmark = pytest.mark.django_db


def valid_message(sandbox, credential, invoice) -> tuple[dict[str, str], bytes]:
    """The provider's notification for the invoice, as the sandbox builds it (state untouched)."""
    prov = sandbox.sandbox.providers[credential.provider]
    return prov.notification(invoice.external_id, event=prov.DEFAULT_EVENT)


def post(client, path: str, headers: dict[str, str], body: bytes):
    content_type = headers.pop("Content-Type", "application/json")
    return client.post(path, data=body, content_type=content_type, headers=headers)


def assert_failure_body(provider: str, response) -> None:
    body = json.loads(response.content)
    if provider == "espay":
        assert body["error_code"] != "0000" and body["signature"] == ""
    elif provider == "faspay":
        assert body["response_code"] == "01"
    else:
        assert body["received"] is False


def assert_kept_not_applied(invoice, verification: str) -> Notification:
    notification = Notification.objects.get()
    assert (notification.verification, notification.outcome) == (verification, "rejected")
    assert notification.parsed is None and notification.invoice is None and notification.verification_reason
    assert notification.body_size > 0
    fresh = Invoice.objects.get(pk=invoice.pk)
    assert (fresh.status, fresh.outstanding) == ("open", invoice.outstanding)
    assert not InvoiceEvent.objects.filter(source="notification").exists()
    return notification


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unknown_token_answers_404(provider, subject, sandbox, client):
    credential, invoice = subject(provider)
    headers, body = valid_message(sandbox, credential, invoice)

    response = post(client, f"/hooks/{provider}/not-a-token/", headers, body)

    assert response.status_code == 404
    assert_failure_body(provider, response)
    notification = assert_kept_not_applied(invoice, "unknown_token")
    assert notification.credential is None and notification.body


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_malformed_body_answers_400(provider, subject, client):
    credential, invoice = subject(provider)
    body = b'{"order_id": '  # cut short
    headers = {"Content-Type": "application/json"}
    if provider == "xendit":
        headers["x-callback-token"] = CREDENTIALS["xendit"]["callback_token"]
    if provider == "farpay":  # correctly signed, so the body is what is wrong
        import time

        stamp = str(int(time.time()))
        headers.update({"webhook-id": "msg_1", "webhook-timestamp": stamp,
                        "webhook-signature": sign_webhook(CREDENTIALS["farpay"]["webhook_secret"], "msg_1", stamp, body)})

    response = post(client, hook_path(credential), headers, body)

    assert response.status_code == 400
    assert_failure_body(provider, response)
    notification = assert_kept_not_applied(invoice, "malformed")
    assert notification.body == body.decode() and notification.credential == credential


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_over_64_kb_answers_413_and_only_the_limit_is_kept(provider, subject, client):
    credential, invoice = subject(provider)
    body = b'{"padding": "' + b"x" * BODY_MAX + b'"}'

    response = post(client, hook_path(credential), {"Content-Type": "application/json"}, body)

    assert response.status_code == 413
    assert_failure_body(provider, response)
    notification = assert_kept_not_applied(invoice, "oversize")
    assert notification.body_truncated and notification.body_size == len(body)
    assert len(notification.body.encode()) <= BODY_MAX


def test_munio_has_no_receiver(client, db):
    response = client.post("/hooks/munio/whatever/", data=b"{}", content_type="application/json")

    assert response.status_code == 404
    assert Notification.objects.get().verification == "unsupported"


def test_a_credential_without_the_secret_answers_503_so_the_provider_retries(subject, sandbox, client):
    credential, invoice = subject("xendit")
    credential.secrets = {k: v for k, v in CREDENTIALS["xendit"].items() if k != "callback_token"}
    credential.save()
    headers, body = valid_message(sandbox, credential, invoice)

    response = post(client, hook_path(credential), headers, body)

    assert response.status_code == 503
    assert_kept_not_applied(invoice, "not_configured")


def test_secrets_are_neither_stored_nor_logged(subject, sandbox, client, caplog):
    credential, invoice = subject("xendit")
    headers, body = valid_message(sandbox, credential, invoice)
    headers["x-callback-token"] = "a-forged-token-value"
    token = CREDENTIALS["xendit"]["callback_token"]

    with caplog.at_level(logging.INFO):
        response = post(client, hook_path(credential), headers, body)

    assert response.status_code == 401
    notification = Notification.objects.get()
    assert notification.headers["x-callback-token"] == "***"
    stored = json.dumps(notification.headers) + notification.body + notification.verification_reason
    assert token not in stored and "a-forged-token-value" not in stored
    assert credential.hook_token not in caplog.text and "a-forged-token-value" not in caplog.text
    assert f"notification rejected id={notification.pk}" in caplog.text


def test_espay_password_field_is_masked_in_the_stored_body(subject, sandbox, client, django_capture_on_commit_callbacks):
    credential, invoice = subject("espay")
    prov = sandbox.sandbox.providers["espay"]
    prov.mutate(invoice.external_id, {"status": "paid"})  # what Espay's Check Payment Status confirms
    headers, body = prov.notification(invoice.external_id)
    body += b"&password=espay-shared-password"

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, hook_path(credential), headers, body)

    assert response.status_code == 200 and json.loads(response.content)["error_code"] == "0000"
    notification = Notification.objects.get()
    assert "espay-shared-password" not in notification.body and "password=%2A%2A%2A" in notification.body
    assert notification.outcome == "applied"


def test_a_bug_while_reading_keeps_the_delivery_and_asks_for_a_retry(subject, sandbox, client, monkeypatch):
    credential, invoice = subject("faspay")
    headers, body = valid_message(sandbox, credential, invoice)

    def broken(self, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("arbook.services.notifications.FaspayReceiver.verify", broken)
    response = post(client, hook_path(credential), headers, body)

    assert response.status_code == 503 and json.loads(response.content)["response_code"] == "01"
    assert assert_kept_not_applied(invoice, "malformed").body == body.decode()


def test_applying_twice_changes_the_invoice_once(subject, sandbox, client, django_capture_on_commit_callbacks):
    from arbook.services.invoice_write import notification_apply

    credential, invoice = subject("faspay")
    sandbox.sandbox.providers["faspay"].mutate(invoice.external_id, {"status": "paid"})  # what Faspay confirms
    headers, body = valid_message(sandbox, credential, invoice)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hook_path(credential), headers, body).status_code == 200

    notification = Notification.objects.get()
    assert notification_apply(notification=notification).outcome == "applied"  # a redelivered task
    assert InvoiceEvent.objects.filter(source="notification").count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
