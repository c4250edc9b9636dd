"""Old debt: owed invoices are mirrored whatever their age, and one that leaves the settled window
while owed and is paid afterwards ends paid (looked up by itself), while paid history that ages
out of the window is neither re-read nor flagged missing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from arbook.models import Invoice, InvoiceEvent, SyncRun
from arbook.services.sync import invoices_sync
from gateways import status as st
from tests.sync.conftest import NOW, POLLED
from tests.sync.test_sync import assert_mirrors, truth_of

pytestmark = pytest.mark.django_db


def legacy_truth(sandbox, provider):
    """The sandbox's old-debt invoices (due 60, 30 and ~24 months before its anchor), by id."""
    due_before = sandbox.sandbox.anchor - timedelta(days=720)
    return {x: t for x, t in truth_of(sandbox, provider).items()
            if t.get("due_at") and _day(t["due_at"]) < due_before}


def _day(value):
    return value.date() if hasattr(value, "date") else value


@pytest.mark.parametrize("provider", POLLED)
def test_owed_invoices_due_years_ago_are_mirrored(provider, sandbox, make_credential):
    credential = make_credential(provider)
    old = legacy_truth(sandbox, provider)
    assert len(old) == 6 and all(t["status"] in st.UNSETTLED for t in old.values())
    run = invoices_sync(credential=credential)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    stored = {i.external_id: i for i in Invoice.objects.filter(credential=credential, external_id__in=old)}
    assert set(stored) == set(old)
    for external_id, expected in old.items():
        assert stored[external_id].status == expected["status"], external_id
        assert stored[external_id].due_at.date() <= (NOW - timedelta(days=720)).date()
    assert {i.due_at.year for i in stored.values()} >= {2021, 2024}  # 60 and 30 months before the anchor
    assert_mirrors(sandbox, credential)


@pytest.mark.parametrize("provider", POLLED)
def test_an_invoice_paid_after_leaving_the_window_ends_paid(provider, sandbox, make_credential, clock):
    credential = make_credential(provider)
    assert invoices_sync(credential=credential).status == SyncRun.Status.SUCCEEDED
    late = {x: t for x, t in legacy_truth(sandbox, provider).items()}
    late_ids = {x for x, t in late.items() if _day(t["due_at"]) > sandbox.sandbox.anchor - timedelta(days=800)}
    assert len(late_ids) == 2
    assert set(Invoice.objects.filter(external_id__in=late_ids).values_list("status", flat=True)) <= set(st.RECEIVABLE)

    # Two months on, the late payers have paid (by the sandbox's clock) and their due dates lie
    # before every window's start; the seeded paid history due in the first weeks has aged out too.
    clock.move_to(NOW + timedelta(days=60))
    run = invoices_sync(credential=credential, full=True)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    paid = Invoice.objects.filter(credential=credential, external_id__in=late_ids)
    assert sorted(paid.values_list("status", flat=True)) == ["paid", "paid"]
    assert all(i.outstanding == 0 for i in paid)
    events = InvoiceEvent.objects.filter(invoice__in=paid, sync_run=run)
    assert sorted(e.status_after for e in events) == ["paid", "paid"]
    # Munio reads everything, so they come with the read; the windowed providers look them up.
    assert run.lookups == (0 if provider == "munio" else 2)
    assert run.missing == 0  # paid history outside the window is not "missing"
    assert not Invoice.objects.filter(credential=credential, missing_since__isnull=False).exists()
    assert_mirrors(sandbox, credential)

    again = invoices_sync(credential=credential, full=True)  # settled now: not looked up again
    assert (again.lookups, again.updated, again.missing) == (0, 0, 0)


def test_an_owed_invoice_the_provider_no_longer_knows_is_looked_up_then_flagged(sandbox, make_credential):
    from tests.factories import InvoiceFactory

    credential = make_credential("farpay")
    invoices_sync(credential=credential)
    ghost = InvoiceFactory(credential=credential, merchant=credential.merchant, external_id="7999999",
                           status="open", due_at=NOW - timedelta(days=2000))
    run = invoices_sync(credential=credential, full=True)
    assert (run.lookups, run.missing) == (1, 1)
    ghost.refresh_from_db()
    assert ghost.missing_since == run.started_at and ghost.status == "open"
