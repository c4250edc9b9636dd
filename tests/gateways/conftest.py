"""Gateway tests run without Django: the clients and the sandbox are plain Python."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import time_machine

from gateways.sandbox import CREDENTIALS, OPTIONS, start

ANCHOR = date(2026, 11, 1)


@pytest.fixture(autouse=True)
def clock():
    """The sandboxes here are anchored on ANCHOR, so the clock is pinned to it too (ticking): the
    sandbox's own clock decides its late payers' payments (tests may travel further inside)."""
    with time_machine.travel(datetime(ANCHOR.year, ANCHOR.month, ANCHOR.day, 6, 0, tzinfo=timezone.utc), tick=True):
        yield


@pytest.fixture
def sandbox_factory():
    """Start sandboxes on free ports: `sandbox_factory(providers=("faspay",), size=50)`."""
    servers = []

    def make(**config):
        config.setdefault("anchor", ANCHOR)
        server = start(**config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def credential(provider: str, server) -> dict:
    """The kwargs for `gateways.get_client(provider, **...)` against a running sandbox."""
    return {"base_url": server.base_url(provider), "secrets": dict(CREDENTIALS[provider]),
            "options": dict(OPTIONS.get(provider, {}))}
