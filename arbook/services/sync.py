"""The sync engine: mirror one credential's invoices from its gateway into the database.

One call of `invoices_sync` is one `SyncRun`:

- It reads the provider page by page through the gateway client and writes each page in one
  transaction: one SELECT of what is stored for the page's ids, one multi-row
  ``INSERT ... ON CONFLICT (credential, external_id) DO UPDATE`` for the new and changed rows
  only (an unchanged invoice, recognised by its `content_hash`, is not rewritten), one insert of
  `InvoiceEvent` rows for changes of status, outstanding or paid date.
- The resume marker of a page is saved in the same transaction as the page, so an interrupted
  run continues after the last committed page (a "pass" may span several runs).
- Incremental reads pass the start of the last completed pass as `since`; the clients read what
  their provider can filter. A full read also records every id it sees (`SyncSeen`) and, once
  complete, flags the credential's invoices it did not return as missing; nothing is deleted.
- A failure ends the run as failed with a readable, secret-free error and keeps every committed
  page; an auth failure also marks the credential as needing attention (no automatic retries
  until it is changed).
- Never two syncs of one credential at once: a cache lock with a TTL (so a dead worker's lock
  expires), refreshed after every page.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Subquery
from django.utils import timezone

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.jsonutil import RawJSONEncoder
from arbook.models import GatewayCredential, Invoice, InvoiceEvent, SyncRun, SyncSeen
from arbook.services.credentials import credential_client, scrub
from arbook.services.notifications import notifications_apply_pending
from gateways import Page, RemoteInvoice

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 15 * 60

#: The normalized fields copied from a `RemoteInvoice` onto an `Invoice`.
INVOICE_FIELDS = (
    "number", "customer_name", "customer_email", "customer_ref", "currency", "amount", "outstanding",
    "paid_amount", "status", "provider_status", "issued_at", "due_at", "paid_at", "provider_updated_at",
    "payment_channel", "checkout_url", "raw",
)
#: Written on insert only.
INSERT_ONLY = ("merchant_id", "credential_id", "provider", "external_id", "first_seen_at")
#: Written on insert and on update.
UPDATED = (*INVOICE_FIELDS, "content_hash", "last_synced_at", "missing_since", "missing_since_run_id")


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


# -- writing one page --------------------------------------------------------------------------

@dataclass
class PageCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ids: list[str] = field(default_factory=list)


def content_hash(remote: RemoteInvoice) -> str:
    """Digest of everything arbook stores from a remote invoice (normalized fields and raw)."""
    payload = [getattr(remote, name) for name in INVOICE_FIELDS]
    text = json.dumps(payload, cls=RawJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def _column_fields(columns: Iterable[str]) -> list[Any]:
    opts = Invoice._meta
    return [opts.get_field(c.removesuffix("_id") if c.endswith("_id") and c != "external_id" else c)
            for c in columns]


def _upsert(rows: list[dict[str, Any]]) -> None:
    """Insert new and update changed invoices of one page in one merge.

    Hand-built rather than `bulk_create`: the page is already plain values, so skipping model
    instances (and, on PostgreSQL, sending the rows with COPY into a temporary staging table
    instead of a statement with thousands of placeholders) is what makes the write cheaper than
    the ORM's upsert. Each value is adapted by its model field, exactly as the ORM would.
    """
    if not rows:
        return
    columns = [*INSERT_ONLY, *UPDATED]
    conn = connections[DEFAULT_DB_ALIAS]  # the real wrapper: the `connection` proxy costs per access
    # On PostgreSQL psycopg adapts str, int, Decimal and aware datetimes itself; only JSON needs
    # the field's preparation. SQLite gets Django's full adaptation for every value.
    preparers = [f if conn.vendor != "postgresql" or f.get_internal_type() == "JSONField" else None
                 for f in _column_fields(columns)]
    values = [[p.get_db_prep_save(row[c], conn) if p else row[c] for c, p in zip(columns, preparers)]
              for row in rows]
    qn = connection.ops.quote_name
    column_list = ", ".join(qn(c) for c in columns)
    conflict = (f"ON CONFLICT ({qn('credential_id')}, {qn('external_id')}) DO UPDATE SET "
                + ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in UPDATED))
    table = qn(Invoice._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _ensure_stage(cursor, column_list)
            with cursor.copy(f"COPY arbook_sync_stage ({column_list}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
            # Moving the rows out (DELETE ... RETURNING) leaves the stage empty for the next page
            # even when no COMMIT comes between them (a caller's outer transaction, the tests').
            cursor.execute(f"WITH moved AS (DELETE FROM arbook_sync_stage RETURNING {column_list}) "
                           f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM moved {conflict}")
            return
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(values), 500):  # keeps SQLite under its bound-variable limit
            chunk = values[start:start + 500]
            cursor.execute(f"INSERT INTO {table} ({column_list}) VALUES {', '.join([row_sql] * len(chunk))} "
                           f"{conflict}", [v for row in chunk for v in row])


def _ensure_stage(cursor, column_list: str) -> None:
    """A temporary table with the invoice columns' types (no constraints), one per database
    session. Created with IF NOT EXISTS on every page rather than remembered: a creation inside
    a transaction that rolled back is gone again."""
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS arbook_sync_stage AS SELECT {column_list} "
                   f"FROM {connection.ops.quote_name(Invoice._meta.db_table)} WITH NO DATA")


STATE_COLUMNS = ("id", "external_id", "content_hash", "status", "outstanding", "paid_at", "missing_since",
                 "provider_updated_at")


def _stored_state(credential_id: int, external_ids: list[str]) -> list[tuple]:
    """What is stored for these ids (a probe of the (credential, external_id) unique index)."""
    return list(Invoice.objects.filter(credential_id=credential_id, external_id__in=external_ids)
                .values_list(*STATE_COLUMNS))


def _refresh_statistics() -> None:
    """ANALYZE the invoice table (PostgreSQL) while a sync is growing it fast.

    Autovacuum analyzes a table only minutes after it grew; meanwhile the planner believes a
    credential has "a few rows" and reads all of them for every page's lookup instead of probing
    the unique index. The sync analyzes after 1k, 4k, 16k, ... created rows (a few times even
    for a million rows; each samples at most 30k rows)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Invoice._meta.db_table)}")


def write_page(*, credential: GatewayCredential, invoices: Iterable[RemoteInvoice], run: SyncRun,
               seen_at: datetime) -> PageCounts:
    """Upsert one page of remote invoices (call inside a transaction). Returns what it did."""
    by_id: dict[str, RemoteInvoice] = {}
    for remote in invoices:
        by_id[remote.external_id] = remote  # a provider repeating an id within a page: last wins
    counts = PageCounts(ids=list(by_id))
    if not by_id:
        return counts
    stored = {row[1]: row for row in _stored_state(credential.pk, counts.ids)}
    rows: list[dict[str, Any]] = []
    events: list[InvoiceEvent] = []
    for external_id, remote in by_id.items():
        digest = content_hash(remote)
        old = stored.get(external_id)
        if old is not None and old[2] == digest and old[6] is None:
            counts.unchanged += 1
            continue
        if old is not None and old[7] and remote.provider_updated_at and remote.provider_updated_at < old[7]:
            # The stored state is newer by the provider's own clock (a payment notification
            # applied after this list page was produced): a lagging read must not undo it.
            counts.unchanged += 1
            continue
        row = {name: getattr(remote, name) for name in INVOICE_FIELDS}
        row.update(merchant_id=credential.merchant_id, credential_id=credential.pk, provider=credential.provider,
                   external_id=external_id, first_seen_at=seen_at, content_hash=digest, last_synced_at=seen_at,
                   missing_since=None, missing_since_run_id=None)
        rows.append(row)
        if old is None:
            counts.created += 1
            continue
        counts.updated += 1
        _, _, _, old_status, old_outstanding, old_paid_at, _, _ = old
        if (old_status, old_outstanding, old_paid_at) != (remote.status, remote.outstanding, remote.paid_at):
            events.append(InvoiceEvent(
                invoice_id=old[0], seen_at=seen_at, source=InvoiceEvent.Source.SYNC, sync_run=run,
                status_before=old_status, status_after=remote.status,
                outstanding_before=old_outstanding, outstanding_after=remote.outstanding,
                paid_at_before=old_paid_at, paid_at_after=remote.paid_at,
            ))
    _upsert(rows)
    if events:
        InvoiceEvent.objects.bulk_create(events)
    return counts


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
    logger.info("sync start credential=%s run=%s mode=%s resume=%s", credential.pk, run.pk, plan["mode"],
                bool(plan["resume"]))
    try:
        client = client or credential_client(credential=credential)
        analyze_at = 1000
        for page in prefetch(client.iter_pages(since=since, resume=plan["resume"])):
            seen_at = timezone.now()
            with transaction.atomic():
                counts = write_page(credential=credential, invoices=page.invoices, run=run, seen_at=seen_at)
                # Notifications that arrived before their invoice was synced are applied now, in
                # this page's transaction (see arbook.services.notifications).
                notifications_apply_pending(credential=credential)
                if run.full:
                    SyncSeen.objects.bulk_create(
                        [SyncSeen(credential_id=credential.pk, pass_id=plan["pass_id"], external_id=x)
                         for x in counts.ids])
                run.pages += 1
                run.fetched += len(page.invoices)
                run.created += counts.created
                run.updated += counts.updated
                run.unchanged += counts.unchanged
                run.save(update_fields=["pages", "fetched", "created", "updated", "unchanged"])
                plan["resume"] = page.resume
                credential.sync_state = {**(credential.sync_state or {}), "pending": plan}
                credential.save(update_fields=["sync_state"])
            lock.refresh()
            if run.created >= analyze_at:
                _refresh_statistics()
                analyze_at *= 4
            if (not run.full and client.stop_when_unchanged and page.invoices
                    and counts.created == counts.updated == 0):
                break  # newest first and nothing changed here: older pages are as they were
        with transaction.atomic():
            if run.full:
                run.missing = _flag_missing(credential=credential, pass_id=plan["pass_id"], run=run)
            _finish(run, credential, plan=plan)
    except Exception as exc:  # every failure ends the run readably; committed pages stay
        _fail(run, credential, exc)
    return run


def prefetch(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """Read the next pages over HTTP in a thread while this one is written to the database.

    The thread only runs the gateway client (HTTP and parsing, no database); an exception there
    is re-raised here, after the pages before it, so committed-page semantics are unchanged.
    Stopping early (the unchanged-watermark rule) leaves the thread at most `depth` pages ahead.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
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
            yield item
    finally:
        stop.set()
        close = getattr(pages, "close", None)
        thread.join(timeout=5)
        if close and not thread.is_alive():
            close()


def _flag_missing(*, credential: GatewayCredential, pass_id: int, run: SyncRun) -> int:
    seen = SyncSeen.objects.filter(credential_id=credential.pk, pass_id=pass_id).values("external_id")
    flagged = (Invoice.objects.filter(credential=credential, missing_since__isnull=True)
               .exclude(external_id__in=Subquery(seen))
               .update(missing_since=run.started_at, missing_since_run=run))
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
        message = scrub(str(exc), credential=credential)
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


# -- enqueueing and the schedule ---------------------------------------------------------------

def sync_enqueue(*, credential: GatewayCredential, full: bool = False,
                 trigger: str = SyncRun.Trigger.MANUAL) -> bool:
    """Queue a sync of `credential` (after the current transaction commits) and return at once.

    False when there is nothing to sync (inactive, or a provider without a list API)."""
    from arbook.tasks.sync import sync_credential

    if not credential.is_active or not gateways.client_class(credential.provider).lists_invoices:
        return False
    GatewayCredential.objects.filter(pk=credential.pk).update(sync_requested_at=timezone.now())
    transaction.on_commit(lambda: sync_credential.delay(credential.pk, full=full, trigger=str(trigger)))
    return True


def sync_due_credentials(*, now: datetime | None = None) -> list[int]:
    """Enqueue every active credential whose own interval has elapsed (the scheduler's tick).

    A credential that needs attention is left alone until it is changed; a full reconciliation
    is asked for when its full interval has elapsed too."""
    now = now or timezone.now()
    due: list[int] = []
    polled = [p for p in gateways.PROVIDERS if gateways.client_class(p).lists_invoices]
    for credential in GatewayCredential.objects.filter(is_active=True, needs_attention=False, provider__in=polled):
        last = max((t for t in (credential.last_sync_at, credential.sync_requested_at) if t), default=None)
        if last is not None and now - last < timedelta(minutes=credential.sync_interval_minutes):
            continue
        full = (credential.last_full_sync_at is None
                or now - credential.last_full_sync_at >= timedelta(hours=credential.full_sync_interval_hours))
        sync_enqueue(credential=credential, full=full, trigger=SyncRun.Trigger.SCHEDULE)
        due.append(credential.pk)
    return due
