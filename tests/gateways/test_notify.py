"""The providers' notification protocols, in the gateway layer (plain Python, no Django): each
module's `parse_notification` turns a delivery the sandbox builds into a `RemoteNotification`,
or refuses it with the reason the receiver answers."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from gateways import espay, farpay, faspay, xendit
from gateways.notify import BAD_SIGNATURE, MALFORMED, NOT_CONFIGURED, NotificationRefused
from gateways.sandbox import CREDENTIALS, OPTIONS, Sandbox

MODULES = {"espay": espay, "xendit": xendit, "faspay": faspay, "farpay": farpay}


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(size=40, providers=tuple(MODULES))
    box.providers["espay"].listed["SGWARBOOK"] = {}  # Espay invoices come from uploads: add one by hand
    box.providers["espay"].listed["SGWARBOOK"]["DOC-1"] = {
        "doc_no": "DOC-1", "comm_code": "SGWARBOOK", "amount": 150000, "outstanding": 150000, "paid_amount": 0,
        "status": "open", "paid_at": None, "member_code": "M1", "list_va": {"014": {"bank_code": "014", "va_number": "1"}}}
    return box


def a_delivery(sandbox, provider):
    prov = sandbox.providers[provider]
    if provider == "espay":
        return prov.notification("DOC-1")
    target = next(t for t in prov.truth() if t["status"] == "open" and (provider != "farpay" or t["number"]))
    return prov.notification(target["external_id"], event=prov.DEFAULT_EVENT)


def parse(provider, headers, body, secrets=None):
    headers = {k.lower(): v for k, v in headers.items()}
    return MODULES[provider].parse_notification(
        headers=headers, content_type=headers.get("content-type", "application/json"), body=body,
        secrets=CREDENTIALS[provider] if secrets is None else secrets, options=OPTIONS.get(provider, {}),
        now=datetime.now(timezone.utc))


@pytest.mark.parametrize("provider", MODULES)
def test_a_genuine_delivery_parses(provider, sandbox):
    remote = parse(provider, *a_delivery(sandbox, provider))
    assert remote.external_id and remote.event_key.startswith(f"{provider}:") and remote.status
    # Espay and Faspay sign only some fields: their claims are to be confirmed with the provider.
    assert remote.confirm == (provider in ("espay", "faspay"))
    assert remote.vouched == (provider in ("xendit", "farpay"))


@pytest.mark.parametrize("provider", MODULES)
def test_a_wrong_secret_is_a_bad_signature_and_a_missing_one_is_not_configured(provider, sandbox):
    headers, body = a_delivery(sandbox, provider)
    wrong = {k: v + "-x" for k, v in CREDENTIALS[provider].items()}
    with pytest.raises(NotificationRefused) as refused:
        parse(provider, headers, body, secrets=wrong)
    assert refused.value.verification == BAD_SIGNATURE
    with pytest.raises(NotificationRefused) as refused:
        parse(provider, headers, body, secrets={})
    assert refused.value.verification in (NOT_CONFIGURED, BAD_SIGNATURE)  # FarPay checks its headers first


def test_the_signed_identity_ignores_unsigned_fields(sandbox):
    headers, body = a_delivery(sandbox, "espay")
    replay = body.replace(b"rq_uuid=", b"rq_uuid=fresh")
    assert parse("espay", headers, body).event_key == parse("espay", headers, replay).event_key


@pytest.mark.parametrize("body", [b"[" * 30_000, b'{"id": 5, "status": {"a": 1}}', b"null"])
def test_malformed_xendit_bodies(body):
    with pytest.raises(NotificationRefused) as refused:
        parse("xendit", {"x-callback-token": CREDENTIALS["xendit"]["callback_token"]}, body)
    assert refused.value.verification == MALFORMED


def test_farpay_outside_its_replay_window_is_refused(sandbox):
    headers, body = a_delivery(sandbox, "farpay")
    stamp = str(int(time.time()) - 3600)
    headers = {**headers, "webhook-timestamp": stamp,
               "webhook-signature": farpay.sign_webhook(CREDENTIALS["farpay"]["webhook_secret"],
                                                        headers["webhook-id"], stamp, body)}
    with pytest.raises(NotificationRefused, match="5-minute"):
        parse("farpay", headers, body)
    assert json.loads(body)["Payment"]
