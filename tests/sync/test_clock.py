"""The mirror does not depend on the hour, the day or the zone the clock is in.

Each polled provider's mirror test (a first full sync equals the sandbox, then an incremental
read and a full reconciliation write nothing) runs at the instants where calendars disagree:
Jakarta's date ahead of UTC's (after 17:00 UTC), Jakarta's new year, Copenhagen's DST change and
a leap day, each against a sandbox anchored on that instant's date; and once with the real clock
against a sandbox anchored on the real date, so neither side is pinned.
"""
from __future__ import annotations

from datetime import datetime

import pytest
import time_machine

from arbook.models import Invoice, InvoiceEvent, SyncRun
from arbook.services.sync import invoices_sync
from gateways.sandbox import start
from tests.sync.conftest import POLLED, SIZE
from tests.sync.test_sync import assert_mirrors, truth_of

SWEEP = ("2026-12-01T16:59:00+00:00", "2026-12-01T17:01:00+00:00", "2026-12-01T23:59:00+00:00",
         "2026-12-31T17:30:00+00:00", "2027-03-28T00:30:00+00:00", "2027-03-28T01:30:00+00:00",
         "2028-02-29T12:00:00+00:00")

pytestmark = pytest.mark.django_db


def mirror_and_resync(server, credential):
    """The mirror test itself: exact first sync, then two resyncs that change nothing."""
    first = invoices_sync(credential=credential)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert first.full and first.created == len(truth_of(server, credential.provider)) and first.updated == 0
    assert_mirrors(server, credential)
    for full in (False, True):
        again = invoices_sync(credential=credential, full=full)
        assert again.status == SyncRun.Status.SUCCEEDED, again.error
        assert (again.created, again.updated, again.missing, again.lookups) == (0, 0, 0, 0)
        assert again.unchanged == again.fetched
    assert not InvoiceEvent.objects.filter(invoice__credential=credential).exists()
    assert Invoice.objects.filter(credential=credential, missing_since__isnull=False).count() == 0


@pytest.fixture(scope="module")
def sweep_sandboxes():
    """One sandbox per swept instant, anchored on its UTC date (started once for the module)."""
    servers = {when: start(size=SIZE, anchor=datetime.fromisoformat(when).date()) for when in SWEEP}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("provider", POLLED)
@pytest.mark.parametrize("when", SWEEP)
def test_the_mirror_holds_at_every_hour_and_zone(when, provider, sweep_sandboxes, make_credential):
    server = sweep_sandboxes[when]
    server.sandbox.reset()
    with time_machine.travel(datetime.fromisoformat(when), tick=True):
        mirror_and_resync(server, make_credential(provider, server=server))


@pytest.mark.parametrize("provider", POLLED)
def test_the_mirror_holds_with_the_real_clock(provider, live_sandbox, make_credential):
    """Nothing pinned: the real clock, a sandbox anchored on the real date."""
    mirror_and_resync(live_sandbox, make_credential(provider))
