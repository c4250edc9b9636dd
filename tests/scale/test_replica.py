"""The read replica, against a real PostgreSQL streaming replica (`make test` starts one with
pg_basebackup and exports ARBOOK_TEST_REPLICA_URL): report pages read from it, everything else
from the primary; a user who just changed something reads the primary; the overview says how far
behind the replica is; an unreachable or too-late replica is skipped.

The replica alias is added for these tests only: the rest of the suite writes in transactions
that a second connection could not see. These tests commit (transactional_db) and wait for the
replica to replay the primary's WAL, or pause its replay to show a lagging replica.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import time

import environ
import pytest
import time_machine
from django.db import DatabaseError, connection, connections, router
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arbook import dbrouting
from arbook.models import Invoice
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

REPLICA_URL = os.environ.get("ARBOOK_TEST_REPLICA_URL", "")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", dbrouting.REPLICA]),
    pytest.mark.skipif(not REPLICA_URL or connection.vendor != "postgresql",
                       reason="needs PostgreSQL and the streaming replica `make test` starts"),
]
NOW = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.timezone.utc)


def _add_replica(url: str) -> None:
    config = environ.Env.db_url_config(url)
    config["NAME"] = connections["default"].settings_dict["NAME"]  # the test database, replicated
    config["TEST"] = {"MIRROR": "default"}
    connections.settings[dbrouting.REPLICA] = connections.configure_settings(
        {"default": connections.settings["default"], dbrouting.REPLICA: config})[dbrouting.REPLICA]
    dbrouting.forget()


def _drop_replica() -> None:
    if dbrouting.REPLICA in connections.settings:
        connections[dbrouting.REPLICA].close()
        del connections[dbrouting.REPLICA]
        del connections.settings[dbrouting.REPLICA]
    dbrouting.forget()


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup):
    """The alias exists before each test's database setup checks `databases` (a test mirror of
    "default", so it is never flushed: the primary's flush reaches it by replication)."""
    _add_replica(REPLICA_URL)
    yield
    _drop_replica()


@pytest.fixture
def replica():
    try:
        yield connections[dbrouting.REPLICA]
    finally:
        if connections.settings[dbrouting.REPLICA]["PORT"] != environ.Env.db_url_config(REPLICA_URL)["PORT"]:
            _drop_replica()
            _add_replica(REPLICA_URL)
        with connections[dbrouting.REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")
        dbrouting.forget()


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=True):
        yield


def primary_lsn() -> str:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        return cursor.fetchone()[0]


def wait_for(replica, lsn: str, *, column: str = "pg_last_wal_replay_lsn()", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with replica.cursor() as cursor:
            cursor.execute(f"SELECT pg_wal_lsn_diff({column}, %s::pg_lsn) >= 0", [lsn])
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not reach {lsn} ({column}) in {timeout} s")


def pause(replica) -> None:
    with replica.cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
        for _ in range(200):
            cursor.execute("SELECT pg_get_wal_replay_pause_state()")
            if cursor.fetchone()[0] == "paused":
                return
            time.sleep(0.05)
    raise AssertionError("the replica did not pause its replay")


def caught_up(replica) -> None:
    wait_for(replica, primary_lsn())
    dbrouting.forget()


@pytest.fixture
def book(replica):
    """Two staff of one merchant with a few invoices, replayed on the replica."""
    merchant = MerchantFactory(name="Replica Co")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    merchant.members.add(alice, bob)
    credential = CredentialFactory(merchant=merchant)
    invoices = [InvoiceFactory(credential=credential, number=f"OLD-{i}") for i in range(3)]
    caught_up(replica)
    return {"merchant": merchant, "alice": alice, "bob": bob, "credential": credential, "invoices": invoices}


def signed_in_as(user):
    c = Client()
    c.force_login(user)
    return c


def lists(client, number: str) -> bool:
    """Does the invoice list, searched for `number`, show that invoice (as a cell, not in the links)?"""
    response = client.get(reverse("invoice_list"), {"q": number})
    assert response.status_code == 200
    return re.search(rf">\s*{re.escape(number)}\s*<".encode(), response.content) is not None


def test_the_replica_is_a_real_standby_that_refuses_writes(replica):
    with replica.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone()[0] is True
        with pytest.raises(DatabaseError, match="read-only"):
            cursor.execute("CREATE TABLE nope (id int)")
    assert dbrouting.replica_status(fresh=True).usable


def test_report_pages_and_exports_read_from_the_replica_and_nothing_else_does(book, client):
    client.force_login(book["alice"])
    customer = book["invoices"][0].customer
    pages = [reverse("overview"), reverse("invoice_list"), reverse("aging"), reverse("customer_list"),
             reverse("customer_detail", args=[customer.pk]), reverse("invoice_detail", args=[book["invoices"][0].pk])]
    for url in pages:
        with CaptureQueriesContext(connections["default"]) as on_primary, \
                CaptureQueriesContext(connections[dbrouting.REPLICA]) as on_replica:
            response = client.get(url)
        assert response.status_code == 200, url
        assert any('"arbook_' in q["sql"] for q in on_replica.captured_queries), url
        assert [q["sql"] for q in on_primary.captured_queries if 'FROM "arbook_' in q["sql"]] == [], url

    # A streamed export keeps reading the replica while the server pulls its chunks: the XLSX
    # through the ORM's server-side cursor, the CSV through COPY (raw psycopg, not captured here,
    # so the lagging-replica test below shows where it reads).
    for fmt in ("xlsx", "csv"):
        with CaptureQueriesContext(connections["default"]) as on_primary, \
                CaptureQueriesContext(connections[dbrouting.REPLICA]) as on_replica:
            response = client.get(reverse("invoice_list"), {"_export": fmt})
            body = b"".join(response.streaming_content)
        assert response.status_code == 200 and len(body) > 100
        if fmt == "csv":
            assert all(f"OLD-{i}".encode() in body for i in range(3))
        else:
            assert any('FROM "arbook_invoice"' in q["sql"] for q in on_replica.captured_queries)
        assert [q["sql"] for q in on_primary.captured_queries if 'FROM "arbook_' in q["sql"]] == []

    # Not a report page: the sync list, the worklist and anything that writes read the primary.
    with CaptureQueriesContext(connections[dbrouting.REPLICA]) as on_replica:
        assert client.get(reverse("sync_list")).status_code == 200
        assert client.get(reverse("worklist")).status_code == 200
    assert on_replica.captured_queries == []
    assert router.db_for_write(Invoice) == "default"
    with dbrouting.reading_reports():
        assert router.db_for_read(Invoice) == dbrouting.REPLICA
        assert router.db_for_write(Invoice) == "default"


def test_a_lagging_replica_shows_its_lag_and_whoever_just_changed_something_reads_the_primary(book):
    alice, bob = signed_in_as(book["alice"]), signed_in_as(book["bob"])
    replica = connections[dbrouting.REPLICA]
    pause(replica)
    InvoiceFactory(credential=book["credential"], number="NEW-1")
    wait_for(replica, primary_lsn(), column="pg_last_wal_receive_lsn()")  # received, not replayed
    time.sleep(1.1)
    dbrouting.forget()

    # Bob changed nothing: his reports come from the replica, which has not replayed NEW-1 yet.
    assert not lists(bob, "NEW-1")
    overview = bob.get(reverse("overview")).content.decode()
    assert 'data-reads-replica="1"' in overview and "behind the primary" in overview
    export = bob.get(reverse("invoice_list"), {"_export": "csv"})
    assert b"OLD-0" in b"".join(export.streaming_content)
    export = bob.get(reverse("invoice_list"), {"_export": "csv"})
    assert b"NEW-1" not in b"".join(export.streaming_content)
    status = dbrouting.replica_status(fresh=True)
    assert status.usable and status.lag_seconds >= 1

    # Alice writes a note (a POST): from now on, for the sticky window, she reads the primary.
    customer = book["invoices"][0].customer
    posted = alice.post(reverse("note_create", args=[customer.pk]), {"text": "Called, will pay Friday"})
    assert posted.status_code == 302 and dbrouting.STICKY_COOKIE in posted.cookies
    assert lists(alice, "NEW-1")
    assert b"NEW-1" in b"".join(alice.get(reverse("invoice_list"), {"_export": "csv"}).streaming_content)
    assert 'data-reads-replica="0"' in alice.get(reverse("overview")).content.decode()
    assert not lists(bob, "NEW-1")

    # When the window is over, she is back on the replica.
    with time_machine.travel(NOW + dt.timedelta(seconds=dbrouting.sticky_seconds() + 5), tick=True):
        assert not lists(alice, "NEW-1")

    # A garbled cookie is no error, just no window.
    bob.cookies[dbrouting.STICKY_COOKIE] = "yesterday"
    assert bob.get(reverse("invoice_list")).status_code == 200

    # Replay resumes: everyone sees NEW-1.
    with replica.cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_resume()")
    caught_up(replica)
    assert lists(bob, "NEW-1")


def test_a_replica_too_far_behind_is_skipped(book, client, settings):
    client.force_login(book["bob"])
    replica = connections[dbrouting.REPLICA]
    pause(replica)
    InvoiceFactory(credential=book["credential"], number="NEW-2")
    wait_for(replica, primary_lsn(), column="pg_last_wal_receive_lsn()")
    time.sleep(1.1)
    settings.DATABASE_REPLICA_MAX_LAG = 0.5
    dbrouting.forget()
    assert lists(client, "NEW-2")
    page = client.get(reverse("overview")).content.decode()
    assert 'data-usable="0"' in page and "too far behind" in page


def test_an_unreachable_replica_is_skipped_and_said_so(book, client):
    client.force_login(book["bob"])
    _drop_replica()
    closed = REPLICA_URL.rsplit(":", 1)[0] + ":1/arbook"  # nothing listens on port 1
    _add_replica(closed)
    response = client.get(reverse("invoice_list"))
    assert response.status_code == 200 and b"OLD-0" in response.content
    page = client.get(reverse("overview")).content.decode()
    assert 'data-usable="0"' in page and "unreachable" in page
