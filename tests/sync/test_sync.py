"""The sync engine against the gateway sandbox: exact mirror, no-change resync, changes, faults,
resume, missing invoices, locks, the schedule and the command."""
from __future__ import annotations

import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from arbook.models import GatewayCredential, Invoice, InvoiceEvent, SyncRun, SyncSeen
from arbook.services.customers import LINK_STATEMENTS
from arbook.services.sync import CredentialLock, invoices_sync
from arbook.services.sync_schedule import SYNC_TASK, sync_claim, sync_enqueue_due
from gateways import TransientError
from gateways.sandbox import OPTIONS
from tests.sync.conftest import POLLED, fast_client

pytestmark = pytest.mark.django_db

FIELDS = ("status", "provider_status", "currency", "amount", "outstanding")


def truth_of(sandbox, provider):
    """The sandbox's own view of its population, in normalized terms."""
    return {t["external_id"]: t for t in sandbox.sandbox.providers[provider].truth()}


def stored(credential):
    return {i.external_id: i for i in Invoice.objects.filter(credential=credential)}


def assert_mirrors(sandbox, credential):
    truth = truth_of(sandbox, credential.provider)
    db = stored(credential)
    assert set(db) == set(truth)
    for external_id, expected in truth.items():
        invoice = db[external_id]
        for name in FIELDS:
            if name not in expected or (name == "amount" and credential.provider == "faspay"):
                continue  # Faspay's list has no amount: arbook keeps it unknown
            value = expected[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = Decimal(str(value))
            assert getattr(invoice, name) == value, (external_id, name)


@pytest.mark.parametrize("provider", POLLED)
def test_first_sync_mirrors_the_sandbox_and_a_resync_writes_nothing(provider, sandbox, make_credential):
    credential = make_credential(provider)
    first = invoices_sync(credential=credential)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert first.full and first.created == len(truth_of(sandbox, provider)) and first.updated == 0
    assert_mirrors(sandbox, credential)
    synced_at = dict(Invoice.objects.filter(credential=credential).values_list("external_id", "last_synced_at"))

    for full in (False, True):  # an incremental read, then a full reconciliation
        again = invoices_sync(credential=credential, full=full)
        assert again.status == SyncRun.Status.SUCCEEDED, again.error
        assert (again.created, again.updated, again.missing) == (0, 0, 0)
        assert again.unchanged == again.fetched  # an incremental read may find nothing to read at all
        if full:
            assert again.fetched == len(truth_of(sandbox, provider))
    assert not InvoiceEvent.objects.exists()
    assert dict(Invoice.objects.filter(credential=credential).values_list("external_id", "last_synced_at")) == synced_at


def pick(sandbox, provider, status):
    return next(t for t in truth_of(sandbox, provider).values()
                if t["status"] == status and t.get("due_at"))


@pytest.mark.parametrize("provider", POLLED)
def test_a_change_at_the_sandbox_is_picked_up_with_one_event(provider, sandbox, make_credential):
    credential = make_credential(provider)
    invoices_sync(credential=credential)
    target = pick(sandbox, provider, "open")
    sandbox.sandbox.providers[provider].mutate(target["external_id"], {"status": "paid", "outstanding": "0"})

    run = invoices_sync(credential=credential, full=True)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.updated == 1 and run.created == 0
    invoice = Invoice.objects.get(credential=credential, external_id=target["external_id"])
    assert invoice.status == "paid" and invoice.outstanding == 0
    event = InvoiceEvent.objects.get()
    assert (event.invoice, event.sync_run, event.status_before, event.status_after) == (invoice, run, "open", "paid")
    assert event.outstanding_after == 0 and event.outstanding_before > 0
    assert_mirrors(sandbox, credential)


def test_a_lagging_list_read_does_not_undo_a_newer_state(sandbox, make_credential):
    credential = make_credential("xendit")
    invoices_sync(credential=credential)
    invoice = Invoice.objects.filter(credential=credential, status="open").first()
    later = invoice.provider_updated_at + timezone.timedelta(hours=1)
    # As if a payment notification stamped one hour after the provider's list snapshot was applied:
    Invoice.objects.filter(pk=invoice.pk).update(status="paid", outstanding=0, provider_updated_at=later)
    run = invoices_sync(credential=credential, full=True)
    assert run.updated == 0 and run.unchanged == run.fetched
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding, invoice.provider_updated_at) == ("paid", 0, later)


def test_incremental_read_picks_up_a_payment(sandbox, make_credential):
    credential = make_credential("xendit")
    invoices_sync(credential=credential)
    target = pick(sandbox, "xendit", "open")
    sandbox.sandbox.providers["xendit"].mutate(target["external_id"], {"status": "paid"})
    run = invoices_sync(credential=credential)
    assert not run.full and run.updated == 1 and run.fetched < len(truth_of(sandbox, "xendit"))
    assert Invoice.objects.get(external_id=target["external_id"]).status == "paid"


@pytest.mark.parametrize("kind", ["429", "503"])
def test_rate_limits_and_server_errors_are_retried_within_the_run(kind, sandbox, make_credential):
    credential = make_credential("xendit")
    sandbox.sandbox.add_fault("xendit", __import__("gateways.sandbox", fromlist=["Fault"]).Fault(
        kind=kind, after=1, times=2, retry_after=0))
    run = invoices_sync(credential=credential, client=fast_client(credential, max_retries=3))
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert_mirrors(sandbox, credential)


@pytest.mark.parametrize("kind,error_kind", [("hang", "transient"), ("malformed", "bad_response"),
                                             ("truncated", "bad_response"), ("503", "transient")])
def test_a_fault_mid_run_fails_cleanly_and_a_rerun_converges(kind, error_kind, sandbox, make_credential):
    from gateways.sandbox import Fault

    # Page after page, so "the first page committed" is one page (the sliced read: its own test below).
    credential = make_credential("xendit", options={**OPTIONS["xendit"], "read_concurrency": 1})
    sandbox.sandbox.add_fault("xendit", Fault(kind=kind, after=1, times=5, seconds=2))
    run = invoices_sync(credential=credential, client=fast_client(credential, timeout=(1, 0.5)))
    assert run.status == SyncRun.Status.FAILED and run.error_kind == error_kind
    assert run.pages == 1 and Invoice.objects.filter(credential=credential).count() == run.created == 100
    assert "xendit" in run.error and "sandbox-appgregator-key" not in run.error
    credential.refresh_from_db()
    assert credential.sync_state["pending"]["resume"] and not credential.needs_attention

    sandbox.sandbox.clear_faults()
    # A change to an invoice already committed, made while the run was failing, is not lost.
    changed = Invoice.objects.filter(credential=credential, status="open").first()
    sandbox.sandbox.providers["xendit"].mutate(changed.external_id, {"status": "paid"})
    rerun = invoices_sync(credential=credential)
    assert rerun.status == SyncRun.Status.SUCCEEDED and rerun.full  # the interrupted full pass resumes
    assert rerun.pages == 3  # only the pages after the committed one (two, and the old-debt pass's one)
    again = invoices_sync(credential=credential, full=True)
    assert again.updated == 1  # the full reconciliation catches the change made behind the cursor
    assert_mirrors(sandbox, credential)
    assert Invoice.objects.filter(credential=credential).count() == len(truth_of(sandbox, "xendit"))


@pytest.mark.parametrize("kind,error_kind", [("malformed", "bad_response"), ("503", "transient")])
def test_a_fault_in_one_slice_fails_the_sliced_run_and_the_rerun_continues_every_slice(kind, error_kind, sandbox,
                                                                                     make_credential):
    """Xendit's full read runs in date slices (8 at once by default); a slice that fails ends the
    run after the pages before it, and the rerun continues each slice from its own cursor."""
    from gateways.sandbox import Fault

    credential = make_credential("xendit")
    sandbox.sandbox.add_fault("xendit", Fault(kind=kind, after=12, times=60))  # more than the retries of 8 readers
    run = invoices_sync(credential=credential, client=fast_client(credential, timeout=(1, 0.5)))
    assert run.status == SyncRun.Status.FAILED and run.error_kind == error_kind
    assert Invoice.objects.filter(credential=credential).count() == run.created
    credential.refresh_from_db()
    marker = credential.sync_state["pending"]["resume"]
    assert marker is None or "\"s\":" in marker  # one cursor per slice
    sandbox.sandbox.clear_faults()
    rerun = invoices_sync(credential=credential)
    assert rerun.status == SyncRun.Status.SUCCEEDED and rerun.full, rerun.error
    assert rerun.created == len(truth_of(sandbox, "xendit")) - run.created  # nothing read twice, nothing lost
    assert rerun.missing == 0
    assert_mirrors(sandbox, credential)


class DyingClient:
    """Wraps a real client and raises after `k` pages, like a worker killed between pages."""

    def __init__(self, client, k):
        self.client, self.k = client, k
        self.stop_when_unchanged = client.stop_when_unchanged

    def iter_pages(self, **kwargs):
        for number, page in enumerate(self.client.iter_pages(**kwargs), start=1):
            yield page
            if number == self.k:
                raise SystemExit("killed")


@pytest.mark.parametrize("provider,k", [("faspay", 3), ("munio", 1), ("farpay", 4), ("xendit", 2)])
def test_a_run_killed_between_pages_resumes_without_loss(provider, k, sandbox, make_credential):
    credential = make_credential(provider)
    with pytest.raises(SystemExit):
        invoices_sync(credential=credential, client=DyingClient(fast_client(credential), k))
    killed = SyncRun.objects.get()
    assert killed.pages == k  # every page before the kill is committed
    assert Invoice.objects.filter(credential=credential).count() == killed.created > 0
    # A run killed hard stays "running" in the table; the lock is released by the finally clause
    # here, and by its TTL when the process really dies.
    rerun = invoices_sync(credential=credential)
    assert rerun.status == SyncRun.Status.SUCCEEDED, rerun.error
    assert rerun.created == len(truth_of(sandbox, provider)) - killed.created
    assert rerun.missing == 0
    assert_mirrors(sandbox, credential)
    assert not SyncSeen.objects.exists()


def test_an_invoice_that_disappears_is_flagged_not_deleted(sandbox, make_credential):
    from tests.factories import InvoiceFactory

    credential = make_credential("xendit")
    invoices_sync(credential=credential)
    # An invoice arbook saw earlier that the provider no longer returns:
    ghost = InvoiceFactory(credential=credential, external_id="gone-at-the-provider")
    back = Invoice.objects.filter(credential=credential).first()
    Invoice.objects.filter(pk=back.pk).update(missing_since=timezone.now())

    incremental = invoices_sync(credential=credential)
    assert incremental.missing == 0  # only a full read can tell what disappeared
    run = invoices_sync(credential=credential, full=True)
    assert run.missing == 1
    ghost.refresh_from_db()  # still there, flagged
    assert ghost.missing_since == run.started_at and ghost.missing_since_run == run
    assert run.updated == 1  # the one seen again is un-flagged
    assert not Invoice.objects.filter(pk=back.pk, missing_since__isnull=False).exists()
    assert invoices_sync(credential=credential, full=True).missing == 0  # flagged once, not again


def test_an_auth_failure_needs_attention_until_the_credential_changes(sandbox, make_credential):
    credential = make_credential("farpay")
    credential.secrets = {"api_key": "wrong-key-1234"}
    credential.save()
    run = invoices_sync(credential=credential)
    assert run.status == SyncRun.Status.FAILED and run.error_kind == "auth"
    assert "wrong-key-1234" not in run.error
    credential.refresh_from_db()
    assert credential.needs_attention and credential.last_error == run.error
    assert sync_enqueue_due() == []  # no automatic retries
    credential.secrets = {"api_key": "sandbox-farpay-api-key"}
    credential.save()
    assert not credential.needs_attention
    assert invoices_sync(credential=credential).status == SyncRun.Status.SUCCEEDED


def test_a_held_lock_makes_a_second_sync_skip(make_credential):
    credential = make_credential("xendit")
    lock = CredentialLock(credential.pk)
    assert lock.acquire()
    try:
        run = invoices_sync(credential=credential)
        assert run.status == SyncRun.Status.SKIPPED and "Another sync" in run.error
    finally:
        lock.release()
    assert invoices_sync(credential=credential).status == SyncRun.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_syncs_of_one_credential_one_runs_the_other_skips(sandbox, make_credential):
    from gateways.sandbox import Fault

    credential = make_credential("xendit")
    sandbox.sandbox.add_fault("xendit", Fault(kind="latency", seconds=0.6, times=1))
    results, barrier = [], threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            cred = GatewayCredential.objects.get(pk=credential.pk)
            results.append(invoices_sync(credential=cred).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [SyncRun.Status.SKIPPED, SyncRun.Status.SUCCEEDED]
    assert Invoice.objects.filter(credential=credential).count() == len(truth_of(sandbox, "xendit"))


class ListedClient:
    """A client whose listing is given pages (no HTTP): for what a real provider rarely sends."""

    stop_when_unchanged = False

    def __init__(self, pages):
        self.pages = pages

    def iter_pages(self, **kwargs):
        yield from self.pages


def _parse_letters(item):
    from gateways import BadResponseError, RemoteInvoice

    if item == "bad":
        raise BadResponseError("xendit: an invoice has no id", provider="xendit")
    return RemoteInvoice(external_id=item, status="open", provider_status="PENDING")


@pytest.mark.parametrize("identified", [False, True])
def test_a_page_that_fails_to_parse_fails_the_run_after_committing_the_pages_before_it(identified,
                                                                                         make_credential):
    from gateways import Page

    credential = make_credential("xendit")
    extra = {"identify": lambda item: (item, {"id": item}), "salt": "s"} if identified else {}
    pages = [Page(items=["a", "b"], parse=_parse_letters, number=1, resume="after-1", **extra),
             Page(items=["c"], parse=_parse_letters, number=2, resume="after-2", **extra),
             Page(items=["d", "bad"], parse=_parse_letters, number=3, resume="after-3", **extra)]
    run = invoices_sync(credential=credential, client=ListedClient(pages), full=True)
    assert run.status == SyncRun.Status.FAILED and run.error_kind == "bad_response"
    assert "no id" in run.error
    # Pages 1 and 2 share page 3's batch, yet they are committed, and the run resumes after them.
    assert run.pages == 2 and run.fetched == run.created == 3
    assert set(Invoice.objects.filter(credential=credential).values_list("external_id", flat=True)) == {"a", "b", "c"}
    credential.refresh_from_db()
    assert credential.sync_state["pending"]["resume"] == "after-2"


def test_identified_pages_parse_only_new_and_changed_invoices(make_credential):
    """A client that can `identify` its raw items has unchanged invoices recognised unparsed;
    a change of the client's salt (its code or options) parses and rewrites them all once."""
    from gateways import Page, RemoteInvoice

    credential = make_credential("xendit")
    parsed = []

    def parse(item):
        parsed.append(item["id"])
        return RemoteInvoice(external_id=item["id"], status=item["status"], provider_status=item["status"].upper())

    def listing(items, salt="v1"):
        return ListedClient([Page(items=items, parse=parse, identify=lambda i: (i["id"], dict(i)), salt=salt)])

    items = [{"id": "a", "status": "open"}, {"id": "b", "status": "open"}]
    first = invoices_sync(credential=credential, client=listing(items), full=True)
    assert (first.created, sorted(parsed)) == (2, ["a", "b"])
    parsed.clear()
    again = invoices_sync(credential=credential, client=listing(items), full=True)
    assert (again.unchanged, parsed) == (2, [])  # nothing parsed, nothing written
    changed = invoices_sync(credential=credential, client=listing([items[0], {"id": "b", "status": "paid"}]), full=True)
    assert (changed.updated, changed.unchanged, parsed) == (1, 1, ["b"])
    assert InvoiceEvent.objects.get().status_after == "paid"
    parsed.clear()
    resalted = invoices_sync(credential=credential, client=listing([items[0], {"id": "b", "status": "paid"}], "v2"),
                             full=True)
    assert (resalted.updated, sorted(parsed)) == (2, ["a", "b"]) and InvoiceEvent.objects.count() == 1


def test_pages_are_written_in_batches_of_a_few_fixed_statements(sandbox, make_credential, monkeypatch):
    """Consecutive pages are written together; each batch costs the same statements whatever
    its size, so the statements per invoice fall as batches grow."""
    from arbook.services import sync

    def statements(size, batch_rows):
        monkeypatch.setattr(sync, "WRITE_BATCH_ROWS", batch_rows)
        sandbox.sandbox.sizes["xendit"] = size
        sandbox.sandbox.legacy = False  # the seeded pages only: their count is what is measured
        credential = make_credential("xendit", options={**OPTIONS["xendit"], "read_concurrency": 1})
        with CaptureQueriesContext(connection) as queries:
            run = invoices_sync(credential=credential)
        assert run.status == SyncRun.Status.SUCCEEDED and run.created == size and run.pages == -(-size // 100)
        return len(queries)

    # 100 invoices a page: 250 -> pages 100+100 | 50 (2 batches); 450 -> 3 batches; 250 in one batch.
    two, three, one = statements(250, 200), statements(450, 200), statements(250, 1000)
    per_batch = three - two
    # The write itself, then linking the batch's customers (a fixed cost too, `customers_link`).
    assert 0 < per_batch <= 9 + LINK_STATEMENTS
    assert one == two - per_batch  # the batch's size does not change its statements


def test_espay_has_nothing_to_poll(make_credential):
    run = invoices_sync(credential=make_credential("espay"))
    assert run.status == SyncRun.Status.SKIPPED and "no list API" in run.error


def test_the_schedule_enqueues_each_credential_when_its_interval_elapsed(make_credential, django_capture_on_commit_callbacks,
                                                                          monkeypatch):
    sent = []
    monkeypatch.setattr("arbook.services.sync_schedule.enqueue", lambda name, pk, **kw: sent.append((name, pk, kw)))
    fresh = make_credential("xendit", sync_interval_minutes=10)
    stale = make_credential("munio", sync_interval_minutes=10, last_full_sync_at=timezone.now())
    never = make_credential("faspay")
    make_credential("espay")
    make_credential("farpay", is_active=False)
    now = timezone.now()
    GatewayCredential.objects.filter(pk=fresh.pk).update(last_sync_at=now - timezone.timedelta(minutes=3))
    GatewayCredential.objects.filter(pk=stale.pk).update(last_sync_at=now - timezone.timedelta(minutes=11))
    with django_capture_on_commit_callbacks(execute=True):
        due = sync_enqueue_due(now=now)
    assert sorted(due) == sorted([stale.pk, never.pk])
    assert sorted(sent) == sorted([(SYNC_TASK, stale.pk, {"full": False, "trigger": "schedule"}),
                                   (SYNC_TASK, never.pk, {"full": True, "trigger": "schedule"})])
    # Enqueued but not yet run: the next tick does not enqueue again.
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_enqueue_due(now=now + timezone.timedelta(minutes=1)) == []


def test_two_schedulers_on_one_tick_enqueue_a_credential_once(make_credential, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    """Two hosts running beat read the same due credential; only the first claim enqueues it."""
    sent = []
    monkeypatch.setattr("arbook.services.sync_schedule.enqueue", lambda name, pk, **kw: sent.append(pk))
    credential = make_credential("xendit", sync_interval_minutes=10)
    first, second = (GatewayCredential.objects.get(pk=credential.pk) for _ in range(2))  # both read it as due
    now = timezone.now()
    assert sync_claim(credential=first, now=now) is True
    assert sync_claim(credential=second, now=now) is False  # the other scheduler's read is stale now
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_enqueue_due(now=now) == []  # and a tick that reads afresh sees it requested
    assert sent == []
    GatewayCredential.objects.filter(pk=credential.pk).update(sync_requested_at=now - timezone.timedelta(minutes=11))
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_enqueue_due(now=now) == [credential.pk]
    assert sent == [credential.pk]


def test_the_command_prints_a_summary_per_credential(sandbox, make_credential):
    a, b = make_credential("xendit"), make_credential("espay")
    out = StringIO()
    call_command("sync_invoices", "--all", stdout=out)
    text = out.getvalue()
    assert f"[{a.pk}]: succeeded (full" in text and f"{len(truth_of(sandbox, 'xendit'))} created" in text
    assert f"[{b.pk}]: skipped" in text
    out = StringIO()
    call_command("sync_invoices", "--credential", str(a.pk), "--full", stdout=out)
    assert f"{len(truth_of(sandbox, 'xendit'))} unchanged" in out.getvalue()


def test_the_command_fails_loudly_on_a_failed_sync(make_credential):
    from django.core.management.base import CommandError

    credential = make_credential("xendit", base_url="http://127.0.0.1:9/xendit")
    with pytest.raises(CommandError, match="1 of 1 sync"):
        call_command("sync_invoices", "--credential", str(credential.pk), stdout=StringIO())
    run = SyncRun.objects.get()
    assert run.error_kind == "transient" and isinstance(TransientError("x"), Exception)
