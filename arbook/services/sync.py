"""The sync engine: mirror one credential's invoices from its gateway into the database.

One call of `invoices_sync` is one `SyncRun`:

- It reads the provider page by page through the gateway client and writes consecutive pages in
  batches of about `WRITE_BATCH_ROWS` invoices, each in one transaction: one SELECT of the
  stored digests for the batch's ids (an unchanged invoice, recognised by its `content_hash`, is
  not rewritten, nor even parsed when its client can `identify` raw items: see `_identified`),
  one SELECT of the stored state of the changed ones (only when there are some),
  one multi-row ``INSERT ... ON CONFLICT (credential, external_id) DO UPDATE`` for the new and
  changed rows only (COPY into a staging table and one merge, on PostgreSQL), one insert of
  `InvoiceEvent` rows for changes of status, outstanding or paid date.
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
"""
from __future__ import annotations

import hashlib
import logging
import operator
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.jsonutil import RawJSONEncoder
from arbook.models import GatewayCredential, Invoice, InvoiceEvent, SyncRun, SyncSeen
from arbook.services.credentials import credential_client, scrub
from arbook.services.notifications import notifications_apply_pending
from gateways import InvoiceRef, Page, RemoteInvoice, SettledScope
from gateways import status as st

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 15 * 60
#: Pages are written in batches of at least this many invoices (see `batches`).
WRITE_BATCH_ROWS = 1000
#: How many pages the HTTP reader may run ahead of the writer (two batches of 100-invoice pages).
PREFETCH_PAGES = 20
#: Looked-up invoices are written in batches of this many (each lookup is one or a few calls).
LOOKUP_BATCH = 100

#: The normalized fields copied from a `RemoteInvoice` onto an `Invoice`, and its raw payload.
NORMALIZED_FIELDS = (
    "number", "customer_name", "customer_email", "customer_ref", "currency", "amount", "outstanding",
    "paid_amount", "status", "provider_status", "issued_at", "due_at", "paid_at", "provider_updated_at",
    "payment_channel", "checkout_url",
)
INVOICE_FIELDS = (*NORMALIZED_FIELDS, "raw")
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
class WriteCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    fetched: int = 0
    ids: list[str] = field(default_factory=list)
    #: Pages of the batch written: all of them, unless one failed to parse (`error`), which the
    #: caller raises once the pages before it are committed.
    pages: int = 0
    error: gateways.BadResponseError | None = None


_normalized_values = operator.attrgetter(*NORMALIZED_FIELDS)
_raw_json = RawJSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def serialized(remote: RemoteInvoice) -> tuple[str, str]:
    """(digest, raw JSON text) of a remote invoice: the digest covers everything arbook stores
    from it (the normalized fields and the raw payload), so an unchanged invoice is recognised
    without comparing columns. The raw payload is serialized once, for the digest and the write."""
    raw_text = _raw_json(remote.raw)
    fields = "\x1f".join(map(str, _normalized_values(remote)))
    return hashlib.sha1(f"{fields}\x1e{raw_text}".encode()).hexdigest(), raw_text


def content_hash(remote: RemoteInvoice) -> str:
    return serialized(remote)[0]


def _identified(page: Page) -> Iterator[tuple[str, str, str, RemoteInvoice | None, Any]]:
    """(external id, digest, raw JSON text, parsed invoice or None, raw item) of each invoice.

    A page whose client can `identify` its items is not parsed here: the digest of an item is
    that of its raw payload, salted with what else decides its parse (the client's code and
    options), so an unchanged invoice is recognised without parsing it. Other pages are parsed
    and digested by `serialized`."""
    if page.identify is not None and page.items:
        salt = page.salt
        for item in page.items:
            external_id, raw = page.identify(item)
            raw_text = _raw_json(raw)
            yield external_id, hashlib.sha1(f"{salt}\x1e{raw_text}".encode()).hexdigest(), raw_text, None, item
        return
    for remote in page.invoices:
        digest, raw_text = serialized(remote)
        yield remote.external_id, digest, raw_text, remote, None


def _is_postgresql() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def _copy_rows(cursor, table: str, columns: str, rows: Iterable[tuple]) -> None:
    """Send rows with COPY (PostgreSQL): no statement with thousands of placeholders to build,
    send and parse."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


#: The columns of a written row, in the order `write_pages` builds them.
WRITE_COLUMNS = (*INSERT_ONLY, *UPDATED)


def _upsert(rows: list[tuple]) -> None:
    """Insert new and update changed invoices of one batch in one merge.

    `rows` are tuples in `WRITE_COLUMNS` order, `raw` as JSON text (see `serialized`).
    Hand-built rather than `bulk_create`: the rows are already plain values, so skipping model
    instances (and, on PostgreSQL, sending them with COPY into a temporary staging table and
    merging from there) is what makes the write cheaper than the ORM's upsert.
    """
    if not rows:
        return
    qn = connection.ops.quote_name
    column_list = ", ".join(qn(c) for c in WRITE_COLUMNS)
    conflict = (f"ON CONFLICT ({qn('credential_id')}, {qn('external_id')}) DO UPDATE SET "
                + ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in UPDATED))
    table = qn(Invoice._meta.db_table)
    with connection.cursor() as cursor:
        if _is_postgresql():
            # psycopg adapts str, int, Decimal and aware datetimes itself; jsonb parses `raw`.
            _ensure_stage(cursor, column_list)
            _copy_rows(cursor, "arbook_sync_stage", column_list, rows)
            # Moving the rows out (DELETE ... RETURNING) leaves the stage empty for the next batch
            # even when no COMMIT comes between them (a caller's outer transaction, the tests').
            cursor.execute(f"WITH moved AS (DELETE FROM arbook_sync_stage RETURNING {column_list}) "
                           f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM moved {conflict}")
            return
        # SQLite: each value adapted by its model field, as the ORM would (`raw` is text already).
        conn = connections[DEFAULT_DB_ALIAS]
        fields = [None if f.get_internal_type() == "JSONField" else f for f in _column_fields(WRITE_COLUMNS)]
        values = [[f.get_db_prep_save(v, conn) if f else v for v, f in zip(row, fields)] for row in rows]
        row_sql = "(" + ", ".join(["%s"] * len(WRITE_COLUMNS)) + ")"
        for start in range(0, len(values), 500):  # keeps SQLite under its bound-variable limit
            chunk = values[start:start + 500]
            cursor.execute(f"INSERT INTO {table} ({column_list}) VALUES {', '.join([row_sql] * len(chunk))} "
                           f"{conflict}", [v for row in chunk for v in row])


def _column_fields(columns: Iterable[str]) -> list[Any]:
    opts = Invoice._meta
    return [opts.get_field(c.removesuffix("_id") if c.endswith("_id") and c != "external_id" else c)
            for c in columns]


def _ensure_stage(cursor, column_list: str) -> None:
    """A temporary table with the invoice columns' types (no constraints), one per database
    session. Created with IF NOT EXISTS for every batch rather than remembered: a creation inside
    a transaction that rolled back is gone again."""
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS arbook_sync_stage AS SELECT {column_list} "
                   f"FROM {connection.ops.quote_name(Invoice._meta.db_table)} WITH NO DATA")


#: What tells an unchanged invoice apart: (external_id, content_hash, flagged missing).
DIGEST_COLUMNS = ("external_id", "content_hash", "missing_since")
#: What a change is compared with (events, the provider-clock guard), read for changed rows only.
STATE_COLUMNS = ("external_id", "id", "status", "outstanding", "paid_at", "provider_updated_at")


def _stored(credential_id: int, external_ids: list[str], columns: tuple[str, ...]) -> list[tuple]:
    """`columns` of the stored invoices with these ids (a probe of the (credential, external_id)
    unique index)."""
    if _is_postgresql():  # one array parameter instead of a thousand placeholders
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(map(qn, columns))} FROM {qn(Invoice._meta.db_table)} "
                           f"WHERE {qn('credential_id')} = %s AND {qn('external_id')} = ANY(%s)",
                           [credential_id, external_ids])
            return cursor.fetchall()
    return list(Invoice.objects.filter(credential_id=credential_id, external_id__in=external_ids)
                .values_list(*columns))


def _record_seen(*, credential_id: int, pass_id: int, external_ids: list[str]) -> None:
    """Remember the ids a full pass returned (for flagging the missing ones at its end)."""
    if _is_postgresql():
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            _copy_rows(cursor, qn(SyncSeen._meta.db_table), "credential_id, pass_id, external_id",
                       ((credential_id, pass_id, x) for x in external_ids))
        return
    SyncSeen.objects.bulk_create(SyncSeen(credential_id=credential_id, pass_id=pass_id, external_id=x)
                                 for x in external_ids)


def _analyze_seen() -> None:
    """ANALYZE the seen-ids table (PostgreSQL) before asking what a full pass did not return.

    The table is filled by COPY within minutes, so its statistics still say "empty" and the
    planner would probe it with a nested loop for every stored invoice: quadratic (70 s for
    100k invoices). With real numbers it hashes it once."""
    if _is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(SyncSeen._meta.db_table)}")


def _refresh_statistics() -> None:
    """ANALYZE the invoice table (PostgreSQL) while a sync is growing it fast.

    Autovacuum analyzes a table only minutes after it grew; meanwhile the planner believes a
    credential has "a few rows" and reads all of them for every batch's lookup instead of probing
    the unique index. The sync analyzes after 1k, 4k, 16k, ... created rows (a few times even
    for a million rows; each samples at most 30k rows)."""
    if _is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Invoice._meta.db_table)}")


def write_pages(*, credential: GatewayCredential, pages: list[Page], run: SyncRun, seen_at: datetime) -> WriteCounts:
    """Upsert a batch of pages (call inside a transaction). Returns what it did.

    Only new and changed invoices are parsed (where the page allows it, see `_identified`) and
    written. A page that fails to parse ends the batch there: the pages before it are written,
    and the error is handed back in `counts.error`, to be raised once they are committed.
    """
    counts = WriteCounts(pages=len(pages))
    entries: list[tuple[int, str, str, str, RemoteInvoice | None, Any]] = []
    for index, page in enumerate(pages):
        try:
            page_entries = [(index, *entry) for entry in _identified(page)]
        except gateways.BadResponseError as exc:  # none of the bad page's invoices is kept
            counts.pages, counts.error = index, exc
            break
        entries.extend(page_entries)
    digests = {external_id: (digest, missing) for external_id, digest, missing
               in _stored(credential.pk, list({e[1] for e in entries}), DIGEST_COLUMNS)} if entries else {}
    for position, (index, external_id, digest, raw_text, remote, item) in enumerate(entries):
        if remote is None and digests.get(external_id) != (digest, None):
            try:
                entries[position] = (index, external_id, digest, raw_text, pages[index].parse(item), item)
            except gateways.BadResponseError as exc:
                counts.pages, counts.error = index, exc
                break
    by_id: dict[str, tuple[str, str, RemoteInvoice | None]] = {}
    for index, external_id, digest, raw_text, remote, _ in entries:
        if index >= counts.pages:
            break
        counts.fetched += 1
        by_id[external_id] = (digest, raw_text, remote)  # a provider repeating an id in a batch: last wins
    counts.ids = list(by_id)
    changed: list[tuple[RemoteInvoice, str, str]] = []
    for external_id, (digest, raw_text, remote) in by_id.items():
        if digests.get(external_id) == (digest, None):
            counts.unchanged += 1
        else:
            changed.append((remote, digest, raw_text))
    existing = [remote.external_id for remote, _, _ in changed if remote.external_id in digests]
    states = {row[0]: row for row in _stored(credential.pk, existing, STATE_COLUMNS)} if existing else {}
    rows: list[tuple] = []
    events: list[InvoiceEvent] = []
    first = (credential.merchant_id, credential.pk, credential.provider)
    for remote, digest, raw_text in changed:
        old = states.get(remote.external_id)
        if old is not None and old[5] and remote.provider_updated_at and remote.provider_updated_at < old[5]:
            # The stored state is newer by the provider's own clock (a payment notification
            # applied after this list page was produced): a lagging read must not undo it.
            counts.unchanged += 1
            continue
        rows.append((*first, remote.external_id, seen_at, *_normalized_values(remote), raw_text, digest, seen_at,
                     None, None))
        if old is None:
            counts.created += 1
            continue
        counts.updated += 1
        _, invoice_id, old_status, old_outstanding, old_paid_at, _ = old
        if (old_status, old_outstanding, old_paid_at) != (remote.status, remote.outstanding, remote.paid_at):
            events.append(InvoiceEvent(
                invoice_id=invoice_id, seen_at=seen_at, source=InvoiceEvent.Source.SYNC, sync_run=run,
                status_before=old_status, status_after=remote.status,
                outstanding_before=old_outstanding, outstanding_after=remote.outstanding,
                paid_at_before=old_paid_at, paid_at_after=remote.paid_at,
            ))
    _upsert(rows)
    if events:
        InvoiceEvent.objects.append(events)
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
        # Newest-first incremental reads stop at the first unchanged page: those pages are
        # written one by one; every other read is written in batches of whole pages.
        page_by_page = not run.full and client.stop_when_unchanged
        pages_read = prefetch(client.iter_pages(since=since, resume=plan["resume"]), depth=PREFETCH_PAGES)
        for pages in batches(pages_read, min_rows=1 if page_by_page else WRITE_BATCH_ROWS):
            seen_at = timezone.now()
            with transaction.atomic():
                counts = write_pages(credential=credential, pages=pages, run=run, seen_at=seen_at)
                # Notifications that arrived before their invoice was synced are applied now, in
                # this batch's transaction (see arbook.services.notifications).
                notifications_apply_pending(credential=credential)
                if run.full:
                    _record_seen(credential_id=credential.pk, pass_id=plan["pass_id"], external_ids=counts.ids)
                run.pages += counts.pages
                run.fetched += counts.fetched
                run.created += counts.created
                run.updated += counts.updated
                run.unchanged += counts.unchanged
                run.save(update_fields=["pages", "fetched", "created", "updated", "unchanged"])
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
            _look_up_unseen(credential=credential, client=client, pass_id=plan["pass_id"], run=run, lock=lock)
        with transaction.atomic():
            if run.full:
                run.missing = _flag_missing(credential=credential, pass_id=plan["pass_id"], run=run,
                                            scope=_settled_scope(client))
            _finish(run, credential, plan=plan)
    except Exception as exc:  # every failure ends the run readably; committed pages stay
        _fail(run, credential, exc)
    return run


def batches(pages: Iterator[Page], *, min_rows: int) -> Iterator[list[Page]]:
    """Group consecutive pages until they hold `min_rows` invoices, to write them together.

    Providers page by 50-100 invoices; a statement's fixed costs (round trip, planning, the
    per-batch bookkeeping) are paid once per batch instead of once per page. When the read
    fails, the pages read before the failure are still handed out (and committed) first. Pages
    are not parsed here (`write_pages` parses what it needs, and stops at a page that fails)."""
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


def _unseen(*, credential: GatewayCredential, pass_id: int):
    """The credential's unflagged invoices that this full pass has not returned.

    NOT EXISTS, not NOT IN: PostgreSQL turns it into a hash anti-join that spills to disk when
    the pass saw millions of ids; a NOT IN whose hash does not fit work_mem is quadratic."""
    seen = SyncSeen.objects.filter(credential_id=credential.pk, pass_id=pass_id, external_id=OuterRef("external_id"))
    return Invoice.objects.filter(credential=credential, missing_since__isnull=True).exclude(Exists(seen))


def _look_up_unseen(*, credential: GatewayCredential, client: Any, pass_id: int, run: SyncRun,
                    lock: CredentialLock) -> None:
    """After a complete full read: look up each stored unsettled invoice it did not return, and
    write what the provider says through `write_pages` (events, the provider-clock guard, pending
    notifications: as for a read). Found ones count as seen; the others are left to be flagged.

    A client without lookups (or a test's stand-in) leaves them all to be flagged. A provider
    failure fails the run; the pass stays pending, so the next run repeats only the lookups."""
    if not getattr(client, "can_lookup", False):
        return
    rows = (_unseen(credential=credential, pass_id=pass_id).filter(status__in=st.UNSETTLED).order_by("pk")
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
                counts = write_pages(credential=credential, pages=[Page(invoices=found)], run=run,
                                     seen_at=timezone.now())
                notifications_apply_pending(credential=credential)
                _record_seen(credential_id=credential.pk, pass_id=pass_id, external_ids=counts.ids)
                run.fetched += counts.fetched
                run.updated += counts.updated
                run.unchanged += counts.unchanged
            run.save(update_fields=["lookups", "fetched", "updated", "unchanged"])
        lock.refresh()


def _settled_scope(client: Any) -> SettledScope:
    scope = getattr(client, "settled_scope", None)
    return scope() if scope is not None else SettledScope()


def _flag_missing(*, credential: GatewayCredential, pass_id: int, run: SyncRun, scope: SettledScope) -> int:
    """Flag what the complete full pass did not return: unsettled invoices (looked up in vain, or
    not lookupable) and settled ones inside the read's settled scope."""
    expected = Q(status__in=st.UNSETTLED)
    if scope.field is None:
        expected = Q()
    else:
        inside = Q()
        if scope.start is not None:
            inside &= Q(**{f"{scope.field}__gte": scope.start})
        if scope.end is not None:
            inside &= Q(**{f"{scope.field}__lt": scope.end})
        expected |= inside
        if scope.undated:
            expected |= Q(**{f"{scope.field}__isnull": True})
    flagged = (_unseen(credential=credential, pass_id=pass_id).filter(expected)
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
