"""A gateway sandbox for the sync tests, and credentials pointing at it."""
from __future__ import annotations

from datetime import date

import pytest

from arbook.models import GatewayCredential
from arbook.services.credentials import credential_client
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.factories import MerchantFactory

POLLED = ("faspay", "xendit", "munio", "farpay")
SIZE = 250


@pytest.fixture(scope="session")
def sandbox():
    server = start(size=SIZE, anchor=date(2026, 11, 1))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox):
    sandbox.sandbox.reset()
    sandbox.sandbox.sizes.clear()
    yield
    sandbox.sandbox.reset()


@pytest.fixture
def make_credential(db, sandbox):
    def make(provider: str, merchant=None, **extra) -> GatewayCredential:
        secrets = dict(CREDENTIALS[provider])
        if provider == "munio":
            secrets.pop("access_token")  # exercise the token flow
        fields = {"merchant": merchant or MerchantFactory(), "provider": provider, "label": "sandbox",
                  "base_url": sandbox.base_url(provider), "secrets": secrets,
                  "options": dict(OPTIONS.get(provider, {})), **extra}
        return GatewayCredential.objects.create(**fields)

    return make


def fast_client(credential, **kwargs):
    """A client with short timeouts and backoff, so fault tests stay quick."""
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", (1, 1))
    return credential_client(credential=credential, **kwargs)
