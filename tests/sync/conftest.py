"""A gateway sandbox for the sync tests, and credentials pointing at it.

The sandbox's dates are pinned (its anchor), so the clock is pinned too: every test here runs at
`NOW`, the anchor's morning (time-machine, ticking), unless it asks for the real clock with the
`live_sandbox` fixture (a sandbox anchored on the real date, neither side pinned)."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import time_machine

from arbook.models import GatewayCredential
from arbook.services.credentials import credential_client
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.factories import MerchantFactory

POLLED = ("faspay", "xendit", "munio", "farpay")
SIZE = 250
ANCHOR = date(2026, 11, 1)
#: The instant the sync tests run at: the sandbox's anchor day (Jakarta 10:00, Copenhagen 04:00).
NOW = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def clock(request):
    """Pin the clock to `NOW` (ticking) for tests on the pinned sandbox; `clock.move_to(...)`
    travels on. Tests on `live_sandbox` keep the real clock."""
    if "live_sandbox" in request.fixturenames:
        yield None
        return
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture(scope="session")
def sandbox():
    server = start(size=SIZE, anchor=ANCHOR)
    yield server
    server.stop()


@pytest.fixture
def live_sandbox():
    """A sandbox anchored on the real date, for tests that run with the real clock."""
    server = start(size=SIZE)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox(sandbox):
    sandbox.sandbox.reset()
    sandbox.sandbox.sizes.clear()
    sandbox.sandbox.legacy = True
    yield
    sandbox.sandbox.reset()


@pytest.fixture
def make_credential(db, sandbox, request):
    """`make_credential(provider)`: a credential on the pinned sandbox (on `live_sandbox` when the
    test uses that one)."""
    if "live_sandbox" in request.fixturenames:
        sandbox = request.getfixturevalue("live_sandbox")

    def make(provider: str, merchant=None, server=None, **extra) -> GatewayCredential:
        secrets = dict(CREDENTIALS[provider])
        if provider == "munio":
            secrets.pop("access_token")  # exercise the token flow
        fields = {"merchant": merchant or MerchantFactory(), "provider": provider, "label": "sandbox",
                  "base_url": (server or sandbox).base_url(provider), "secrets": secrets,
                  "options": dict(OPTIONS.get(provider, {})), **extra}
        return GatewayCredential.objects.create(**fields)

    return make


def fast_client(credential, **kwargs):
    """A client with short timeouts and backoff, so fault tests stay quick."""
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", (1, 1))
    return credential_client(credential=credential, **kwargs)
