"""The sync engine: mirror one credential's invoices from its gateway into the database.

One call of `invoices_sync` is one `SyncRun`:

- It reads the provider page by page through the gateway client and writes consecutive pages in
  batches of about `WRITE_BATCH_ROWS` invoices, each in one transaction, through the write path
  (`arbook.services.invoice_write.invoices_write`: unchanged invoices are recognised by their
  `content_hash` and not rewritten; new and changed ones go in one merge, with an `InvoiceEvent`
  per change of status, outstanding or paid date; waiting notifications are settled).
- The resume marker of a batch's last page is saved in the same transaction as the batch, so an
  interrupted run continues after the last committed page (a "pass" may span several runs).
- Incremental reads pass the start of the last completed pass as `since`; the clients read what
  their provider can filter. A full read also records every id it sees (`SyncSeen`). Once it is
  complete, every stored unsettled invoice it did not return (owed, expired, unknown, draft: paid
  after it left the settled window, say) is looked up by itself where the client can
  (`lookup`, counted in `SyncRun.lookups`) and written like a read; then the invoices still not
  seen are flagged missing: the unsettled ones, and the settled ones inside the client's settled
  scope (a paid invoice that aged out of the window is history, not missing). Nothing is deleted.
- A failure ends the run as failed with a readable, secret-free error and keeps every committed
  page; an auth failure also marks the credential as needing attention (no automatic retries
  until it is changed).
- Never two syncs of one credential at once: a cache lock with a TTL (so a dead worker's lock
  expires), refreshed after every batch.

Enqueueing a sync (on request, on the scheduler's tick) is `arbook.services.sync_schedule`.
"""
from __future__ import annotations

import logging
import queue
import threading
import uuid
from datetime import datetime
from typing import Any, Callable, Iterator

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

import gateways
from arbook import bulk
from arbook.crypto import SecretsUnavailable
from arbook.models import GatewayCredential, Invoice, SyncRun, SyncSeen
from arbook.services.credentials import credential_client, secrets_scrub
from arbook.services.invoice_write import (
    customers_settle,
    customers_unsettled,
    invoices_flag_missing,
    invoices_unseen,
    invoices_write,
    page_prepare,
)
from gateways import InvoiceRef, Page, RemoteInvoice, SettledScope
from gateways import status as st
from gateways.slices import Budget

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 15 * 60
#: Pages are written in batches of at least this many invoices (see `batches`).
WRITE_BATCH_ROWS = 1000
#: How far the HTTP reader may run ahead of the writer: pages, and invoices in them (two batches
#: of 100-invoice pages; FarPay's pages are whole due windows, so the pages alone are no bound).
PREFETCH_PAGES = 20
PREFETCH_ROWS = 2 * WRITE_BATCH_ROWS
#: Looked-up invoices are written in batches of this many (each lookup is one or a few calls).
LOOKUP_BATCH = 100


# -- the lock ----------------------------------------------------------------------------------

class CredentialLock:
    """A per-credential lock in the cache (Redis in production: SET NX with a TTL)."""

    def __init__(self, credential_id: int, ttl: int = LOCK_TTL_SECONDS):
        self.key = f"arbook:sync-lock:{credential_id}"
        self.token = uuid.uuid4().hex
        self.ttl = ttl

    def acquire(self) -> bool:
        return cache.add(self.key, self.token, self.ttl)

    def refresh(self) -> None:
        cache.touch(self.key, self.ttl)

    def release(self) -> None:
        if cache.get(self.key) == self.token:
            cache.delete(self.key)


# -- what a pass has seen ----------------------------------------------------------------------

def _record_seen(*, credential_id: int, pass_id: int, external_ids: list[str]) -> None:
    """Remember the ids a full pass returned (for flagging the missing ones at its end)."""
    bulk.insert(SyncSeen, ("credential_id", "pass_id", "external_id"),
                ((credential_id, pass_id, x) for x in external_ids))


def _analyze_seen() -> None:
    """ANALYZE the seen-ids table before asking what a full pass did not return.

    The table is filled by COPY within minutes, so its statistics still say "empty" and the
    planner would probe it with a nested loop for every stored invoice: quadratic (70 s for
    100k invoices). With real numbers it hashes it once."""
    bulk.analyze(SyncSeen)


def _refresh_statistics() -> None:
    """ANALYZE the invoice table while a sync is growing it fast.

    Until then the planner believes a credential has "a few rows" and reads all of them for
    every batch's lookup instead of probing the unique index. The sync analyzes after 1k, 4k,
    16k, ... created rows (a few times even for a million rows; each samples at most 30k rows)."""
    bulk.analyze(Invoice)


# -- one sync ----------------------------------------------------------------------------------

ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (gateways.AuthError, "auth"),
    (gateways.TransientError, "transient"),
    (gateways.BadResponseError, "bad_response"),
    (gateways.ConfigurationError, "config"),
    (SecretsUnavailable, "config"),
)


def _skipped(*, credential: GatewayCredential, trigger: str, full: bool, reason: str) -> SyncRun:
    now = timezone.now()
    return SyncRun.objects.create(credential=credential, trigger=trigger, full=full, status=SyncRun.Status.SKIPPED,
                                  started_at=now, finished_at=now, error=reason)


def _plan(credential: GatewayCredential, *, full: bool, run: SyncRun) -> dict[str, Any]:
    """Continue an interrupted pass, or start a new one (full or incremental)."""
    state = credential.sync_state or {}
    pending = state.get("pending")
    wants_full = full or not credential.last_full_sync_at or not state.get("watermark")
    if pending and (pending["mode"] == "full" or not wants_full):
        return dict(pending)
    if wants_full:
        SyncSeen.objects.filter(credential_id=credential.pk).delete()  # leftovers of an abandoned pass
    return {"mode": "full" if wants_full else "incremental",
            "since": None if wants_full else state["watermark"],
            "started_at": run.started_at.isoformat(), "pass_id": run.pk, "resume": None}


def invoices_sync(*, credential: GatewayCredential, full: bool = False,
                  trigger: str = SyncRun.Trigger.SCHEDULE, client: Any = None) -> SyncRun:
    """Sync one credential now, in this process; returns the finished `SyncRun`.

    `client` replaces the gateway client built from the credential (tests use it to inject
    failures). Never raises for a provider problem: the run records it.
    """
    if not credential.is_active:
        return _skipped(credential=credential, trigger=trigger, full=full, reason="The credential is inactive.")
    if not gateways.client_class(credential.provider).lists_invoices:
        return _skipped(credential=credential, trigger=trigger, full=full,
                        reason=f"{credential.get_provider_display()} has no list API: its invoices come from "
                               "uploads and payment notifications.")
    lock = CredentialLock(credential.pk)
    if not lock.acquire():
        return _skipped(credential=credential, trigger=trigger, full=full,
                        reason="Another sync of this credential is running.")
    try:
        return _run(credential=credential, full=full, trigger=trigger, client=client, lock=lock)
    finally:
        lock.release()


def _run(*, credential: GatewayCredential, full: bool, trigger: str, client: Any, lock: CredentialLock) -> SyncRun:
    run = SyncRun.objects.create(credential=credential, trigger=trigger, full=full, started_at=timezone.now())
    plan = _plan(credential, full=full, run=run)
    run.full = plan["mode"] == "full"
    run.save(update_fields=["full"])
    since = datetime.fromisoformat(plan["since"]) if plan["since"] else None
    # Customers whose invoices this run writes (and those a run that died before settling left).
    touched: set[int] = customers_unsettled(credential=credential)
    logger.info("sync start credential=%s run=%s mode=%s resume=%s", credential.pk, run.pk, plan["mode"],
                bool(plan["resume"]))
    try:
        client = client or credential_client(credential=credential)
        analyze_at = 1000
        # Newest-first incremental reads stop at the first unchanged page: those pages are
        # written one by one; every other read is written in batches of whole pages.
        page_by_page = not run.full and client.stop_when_unchanged
        # The reader thread parses ahead while the reads bring mostly new or changed invoices
        # (a first sync); a read of unchanged ones leaves them unparsed (`page_prepare`).
        ahead = {"parse": not Invoice.objects.filter(credential=credential).exists()}
        region = credential.merchant.country

        def prepare(page: Page) -> None:
            page_prepare(page, parse=ahead["parse"], provider=credential.provider, credential_id=credential.pk,
                         region=region)

        pages_read = prefetch(client.iter_pages(since=since, resume=plan["resume"]), depth=PREFETCH_PAGES,
                              prepare=prepare, max_rows=PREFETCH_ROWS)
        for pages in batches(pages_read, min_rows=1 if page_by_page else WRITE_BATCH_ROWS):
            seen_at = timezone.now()
            with transaction.atomic():
                # Notifications that arrived before their invoice was synced are applied by the
                # write, in this batch's transaction.
                counts = invoices_write(credential=credential, pages=pages, run=run, seen_at=seen_at)
                touched |= counts.customers
                if run.full:
                    _record_seen(credential_id=credential.pk, pass_id=plan["pass_id"], external_ids=counts.ids)
                run.pages += counts.pages
                run.fetched += counts.fetched
                run.created += counts.created
                run.updated += counts.updated
                run.unchanged += counts.unchanged
                run.save(update_fields=["pages", "fetched", "created", "updated", "unchanged"])
                ahead["parse"] = 2 * (counts.created + counts.updated) >= counts.fetched
                if counts.pages:
                    plan["resume"] = pages[counts.pages - 1].resume
                    credential.sync_state = {**(credential.sync_state or {}), "pending": plan}
                    credential.save(update_fields=["sync_state"])
            if counts.error is not None:
                raise counts.error  # a page that failed to parse, after the pages before it
            lock.refresh()
            if run.created >= analyze_at:
                _refresh_statistics()
                analyze_at *= 4
            if page_by_page and counts.fetched and counts.created == counts.updated == 0:
                break  # newest first and nothing changed here: older pages are as they were
        if run.full:
            _analyze_seen()
            touched |= _look_up_unseen(credential=credential, client=client, pass_id=plan["pass_id"], run=run,
                                       lock=lock)
        with transaction.atomic():
            customers_settle(customer_ids=touched, credential=credential)
            if run.full:
                run.missing = _flag_missing(credential=credential, pass_id=plan["pass_id"], run=run,
                                            scope=_settled_scope(client))
            _finish(run, credential, plan=plan)
    except Exception as exc:  # every failure ends the run readably; committed pages stay
        customers_settle(customer_ids=touched, credential=credential)
        _fail(run, credential, exc)
    return run


def batches(pages: Iterator[Page], *, min_rows: int) -> Iterator[list[Page]]:
    """Group consecutive pages until they hold `min_rows` invoices, to write them together.

    Providers page by 50-100 invoices; a statement's fixed costs (round trip, planning, the
    per-batch bookkeeping) are paid once per batch instead of once per page. When the read
    fails, the pages read before the failure are still handed out (and committed) first. Pages
    are not parsed here (`invoices_write` parses what it needs, and stops at a page that fails)."""
    batch: list[Page] = []
    rows = 0
    try:
        for page in pages:
            rows += len(page)
            batch.append(page)
            if rows >= min_rows:
                yield batch
                batch, rows = [], 0
    except GeneratorExit:  # the consumer stopped early
        raise
    except BaseException:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def prefetch(pages: Iterator[Page], depth: int = 2,
             prepare: Callable[[Page], None] | None = None, max_rows: int | None = None) -> Iterator[Page]:
    """Read the next pages over HTTP in a thread while this one is written to the database.

    The thread only runs the gateway client (HTTP and parsing, no database) and `prepare` (what
    the writer would compute from a page, computed while it waits on the database); an exception
    there is re-raised here, after the pages before it, so committed-page semantics are unchanged.
    Stopping early (the unchanged-watermark rule) leaves the thread at most `depth` pages ahead;
    with `max_rows` it also waits while the pages ahead hold that many invoices (one page always
    goes through).
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()
    budget = Budget(max_rows, stop)  # the invoices in the pages queued and not yet taken

    def produce() -> None:
        try:
            for page in pages:
                if prepare is not None and not stop.is_set():
                    prepare(page)
                budget.hold(len(page))
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer, raised in its thread
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="sync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            budget.release(len(item))
            yield item
    finally:
        stop.set()
        budget.wake()
        close = getattr(pages, "close", None)
        thread.join(timeout=5)
        if close and not thread.is_alive():
            close()


def _look_up_unseen(*, credential: GatewayCredential, client: Any, pass_id: int, run: SyncRun,
                    lock: CredentialLock) -> set[int]:
    """After a complete full read: look up each stored unsettled invoice it did not return, and
    write what the provider says through `invoices_write` (events, the provider-clock guard, pending
    notifications: as for a read). Found ones count as seen; the others are left to be flagged.

    A client without lookups (or a test's stand-in) leaves them all to be flagged. A provider
    failure fails the run; the pass stays pending, so the next run repeats only the lookups.
    Returns the customers whose invoices it wrote."""
    touched: set[int] = set()
    if not getattr(client, "can_lookup", False):
        return touched
    rows = (invoices_unseen(credential=credential, pass_id=pass_id).filter(status__in=st.UNSETTLED).order_by("pk")
            .values_list("external_id", "status", "issued_at", "due_at", "customer_ref"))
    refs = [InvoiceRef(external_id=x, status=s, issued_at=i, due_at=d, customer_ref=c) for x, s, i, d, c in rows]
    for start in range(0, len(refs), LOOKUP_BATCH):
        found: list[RemoteInvoice] = []
        for ref in refs[start:start + LOOKUP_BATCH]:
            remote = client.lookup(ref)
            run.lookups += 1
            if remote is not None and remote.external_id == ref.external_id:
                found.append(remote)
        with transaction.atomic():
            if found:
                counts = invoices_write(credential=credential, pages=[Page(invoices=found)], run=run,
                                        seen_at=timezone.now())
                _record_seen(credential_id=credential.pk, pass_id=pass_id, external_ids=counts.ids)
                run.fetched += counts.fetched
                run.updated += counts.updated
                run.unchanged += counts.unchanged
                touched |= counts.customers
            run.save(update_fields=["lookups", "fetched", "updated", "unchanged"])
        lock.refresh()
    return touched


def _settled_scope(client: Any) -> SettledScope:
    scope = getattr(client, "settled_scope", None)
    return scope() if scope is not None else SettledScope()


def _flag_missing(*, credential: GatewayCredential, pass_id: int, run: SyncRun, scope: SettledScope) -> int:
    """Flag what the complete full pass did not return; its seen ids are done with."""
    flagged = invoices_flag_missing(credential=credential, pass_id=pass_id, run=run, scope=scope)
    SyncSeen.objects.filter(credential_id=credential.pk).delete()
    return flagged


def _finish(run: SyncRun, credential: GatewayCredential, *, plan: dict[str, Any]) -> None:
    now = timezone.now()
    run.status = SyncRun.Status.SUCCEEDED
    run.finished_at = now
    run.save(update_fields=["status", "finished_at", "missing"])
    credential.last_sync_at = now
    credential.last_success_at = now
    if run.full:
        credential.last_full_sync_at = now
    credential.last_error = ""
    # The next incremental read asks for what changed since this pass *started*.
    credential.sync_state = {"watermark": plan["started_at"]}
    credential.save(update_fields=["last_sync_at", "last_success_at", "last_full_sync_at", "last_error",
                                   "sync_state"])
    logger.info("sync done credential=%s run=%s pages=%s fetched=%s created=%s updated=%s unchanged=%s missing=%s",
                credential.pk, run.pk, run.pages, run.fetched, run.created, run.updated, run.unchanged, run.missing)


def _fail(run: SyncRun, credential: GatewayCredential, exc: Exception) -> None:
    kind = next((k for cls, k in ERROR_KINDS if isinstance(exc, cls)), "internal")
    if kind == "internal":
        logger.exception("sync failed credential=%s run=%s", credential.pk, run.pk)
        message = f"Internal error ({type(exc).__name__}); the worker log has the details."
    else:
        logger.warning("sync failed credential=%s run=%s kind=%s", credential.pk, run.pk, kind)
        message = secrets_scrub(text=str(exc), credential=credential)
    run.status = SyncRun.Status.FAILED
    run.finished_at = timezone.now()
    run.error = message
    run.error_kind = kind
    run.save(update_fields=["status", "finished_at", "error", "error_kind"])
    updates = {"last_sync_at": run.finished_at, "last_error": message}
    if kind in ("auth", "config"):
        updates["needs_attention"] = True  # no automatic retries until the credential is changed
    GatewayCredential.objects.filter(pk=credential.pk).update(**updates)
    for name, value in updates.items():
        setattr(credential, name, value)
