"""Fixtures shared by the suite: factories, signed-in clients, headless Chromium settings."""
from __future__ import annotations

import os

import pytest

from tests.factories import CredentialFactory, MerchantFactory, UserFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Playwright drives Debian's Chromium: its own browser download cannot work here."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def merchant(db, user):
    m = MerchantFactory()
    m.members.add(user)
    return m


@pytest.fixture
def credential(db, merchant):
    return CredentialFactory(merchant=merchant)


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def superuser(db):
    return UserFactory(is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture(autouse=True)
def _aging_rollup_exact(request):
    """After every test that wrote invoices on PostgreSQL, the aging rollup its triggers kept
    equals a recount: the whole suite (syncs, uploads, notifications, merges, deletes) is the
    proof that no write path leaves it wrong."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    if not (marker or {"db", "transactional_db"} & set(request.fixturenames)):
        yield
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    from django.db import connection

    from tests.rollup_check import rollup_installed, rollup_mismatch

    if connection.needs_rollback:
        return  # the test left its transaction broken on purpose: nothing can be read in it
    if rollup_installed():
        mismatch = rollup_mismatch()
        assert not mismatch, f"aging rollup differs from a recount: {sorted(mismatch.items())[:5]}"


def pytest_collection_modifyitems(config, items):
    """Browser tests need the ORM from Playwright's sync page: allow it in tests only."""
    if any(item.get_closest_marker("browser") for item in items):
        os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
