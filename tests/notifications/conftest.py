"""Notification tests: a gateway sandbox in-process, credentials pointing at it, eager Celery."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from arbook.models import GatewayCredential, Invoice
from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.espay.helpers import csv_bytes, row
from tests.factories import InvoiceFactory

PROVIDERS = ("espay", "xendit", "faspay", "farpay")


@pytest.fixture(scope="session")
def sandbox():
    server = start(size=80)  # anchored today, so the sandbox's change stamps are "now"
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox):
    sandbox.sandbox.reset()
    yield
    sandbox.sandbox.reset()


@pytest.fixture(autouse=True)
def eager(settings, monkeypatch):
    """The apply (and any sync it asks for) runs inline when enqueued."""
    from arbook.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.ESPAY_RETRY_DELAYS = (0,)
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)


def make_credential(merchant, sandbox, provider: str) -> GatewayCredential:
    return GatewayCredential.objects.create(
        merchant=merchant, provider=provider, label="sandbox", base_url=sandbox.base_url(provider),
        secrets=dict(CREDENTIALS[provider]), options=dict(OPTIONS.get(provider, {})))


def hook_path(credential: GatewayCredential) -> str:
    return f"/hooks/{credential.provider}/{credential.hook_token}/"


def espay_invoice(credential, user, doc_no: str = "DOC-0001", amount: str = "150000") -> Invoice:
    """An Espay invoice made the real way: an uploaded batch, confirmed and sent to the sandbox."""
    batch = espay_batch_create(credential=credential, user=user, file_name="batch.csv",
                               content=csv_bytes([row(doc_no, amount=amount)]))
    assert espay_batch_confirm(batch=batch, user=user).ok
    espay_batch_send(batch=batch)
    return Invoice.objects.get(credential=credential, external_id=doc_no)


def synced_invoice(credential, sandbox) -> Invoice:
    """An open invoice of the sandbox's population, stored as a sync would have stored it."""
    prov = sandbox.sandbox.providers[credential.provider]
    for truth in prov.truth():
        if truth["status"] != "open" or Decimal(truth["amount"]) <= 0:
            continue
        if credential.provider == "farpay" and not truth["number"]:
            continue  # FarPay's webhook names the invoice by its number
        if credential.provider == "farpay" and Decimal(truth["outstanding"]) != Decimal(truth["amount"]):
            continue
        return InvoiceFactory(
            credential=credential, external_id=truth["external_id"], number=truth["number"],
            currency=truth["currency"], amount=Decimal(truth["amount"]), outstanding=Decimal(truth["outstanding"]),
            paid_amount=Decimal(0), status="open", provider_status=truth["provider_status"],
            provider_updated_at=truth.get("provider_updated_at"), paid_at=None,
            issued_at=truth.get("issued_at"), due_at=truth.get("due_at"), customer_ref=truth.get("customer_ref") or "")
    raise AssertionError("no open invoice in the sandbox population")


@pytest.fixture
def subject(db, merchant, user, sandbox):
    """(credential, invoice) for a provider: `subject("xendit")`."""
    def make(provider: str):
        credential = make_credential(merchant, sandbox, provider)
        if provider == "espay":
            return credential, espay_invoice(credential, user)
        return credential, synced_invoice(credential, sandbox)

    return make


def notify(sandbox, url: str, credential, invoice, **flags) -> dict:
    """Ask the sandbox to play the provider's notification to `url`."""
    answer = requests.post(sandbox.url + "/_sandbox/notify", json={
        "provider": credential.provider, "external_id": invoice.external_id, "url": url, **flags}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()
