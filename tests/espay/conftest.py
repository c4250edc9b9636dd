"""Espay batch tests run against the gateway sandbox (one per module, reset per test)."""
from __future__ import annotations

import pytest
import requests

from arbook.models import GatewayCredential
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.factories import MerchantFactory, UserFactory


@pytest.fixture(scope="module")
def sandbox_server():
    server = start(providers=("espay",))
    yield server
    server.stop()


@pytest.fixture
def espay_server(sandbox_server):
    requests.post(sandbox_server.url + "/_sandbox/reset", timeout=5).raise_for_status()
    return sandbox_server


@pytest.fixture(autouse=True)
def fast_espay(settings):
    """No waiting between tries of a chunk; short timeouts (the hang tests shorten them further)."""
    settings.ESPAY_RETRY_DELAYS = (0, 0)
    settings.ESPAY_TIMEOUT = (2, 10)


def make_credential(merchant, server, **overrides) -> GatewayCredential:
    values = {"merchant": merchant, "provider": "espay", "label": "sandbox", "base_url": server.base_url("espay"),
              "secrets": {"signature_key": CREDENTIALS["espay"]["signature_key"]}, "options": dict(OPTIONS["espay"])}
    values.update(overrides)
    return GatewayCredential.objects.create(**values)


@pytest.fixture
def espay_credential(db, merchant, espay_server):
    return make_credential(merchant, espay_server)


@pytest.fixture
def stranger(db, espay_server):
    """A user of another merchant (with an Espay account of its own)."""
    user = UserFactory()
    other = MerchantFactory(name="Other Merchant")
    other.members.add(user)
    make_credential(other, espay_server, label="other")
    return user


@pytest.fixture
def eager(monkeypatch):
    """Celery runs the send task inline when it is enqueued (the real worker is tested elsewhere)."""
    from arbook.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)


def espay_calls(server) -> list[dict]:
    return list(server.sandbox.providers["espay"].calls)


def fault(server, **body) -> None:
    requests.post(server.url + "/_sandbox/faults", json={"provider": "espay", **body}, timeout=5).raise_for_status()


def sandbox_truth(server) -> list[dict]:
    return list(server.sandbox.providers["espay"].truth())
