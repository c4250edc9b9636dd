"""The write path: every change of an invoice's state goes through here (DESIGN.md "Floors").

It applies remote states to invoices: a page of a provider's list or a looked-up invoice (the
sync), an invoice Espay listed from an upload, a payment notification (checked, where its
signature does not cover its facts, against the provider's own API: the live re-check). For all
of them it owns, in one place:

- the upsert, through `arbook.bulk` (COPY + one merge on PostgreSQL);
- change detection: `content_hash` of what arbook stores of a remote invoice, so an unchanged
  one is not rewritten;
- the history: an `InvoiceEvent` per change of status, outstanding or paid date, always inserted
  through `InvoiceEvent.objects.append`, which links it to the invoice's previous event and moves
  `Invoice.last_event_at` forward (`changed_at` follows, computed by the database);
- the missing flag: what a complete full read did not return (`invoices_flag_missing`; a read
  that returns the invoice again clears it);
- the money rules no notification can break;
- settling the notifications that waited for an invoice which a write has now brought
  (`notifications_apply_pending`, after every write that can create invoices).

Receiving notifications (verification, storage, replies) is `arbook.services.notifications`;
running a sync is `arbook.services.sync`; the Espay upload is `arbook.services.espay_batch`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator

from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

import gateways
from arbook import bulk
from arbook.crypto import SecretsUnavailable
from arbook.jsonutil import RawJSONEncoder
from arbook.models import (
    EspayBatch,
    EspayChunk,
    EspayLine,
    GatewayCredential,
    Invoice,
    InvoiceEvent,
    Notification,
    SyncRun,
    SyncSeen,
)
from arbook.services.collections import PAYMENT_STATES, promises_observe
from arbook.services.credentials import credential_client
from arbook.services.customers import Party, customers_link, customers_refresh, party_keys
from arbook.services.sync_schedule import sync_enqueue
from arbook.status import InvoiceStatus
from gateways import Page, RemoteInvoice, SettledScope, notify
from gateways import status as st
from gateways.numbers import parse_decimal

logger = logging.getLogger(__name__)

V = Notification.Verification
Out = Notification.Outcome
#: Waiting notifications settled per write (the rest on the next one).
PENDING_BATCH = 500
#: Customers refreshed per statement batch by `customers_settle`.
SETTLE_BATCH = 2_000

#: The normalized fields copied from a `RemoteInvoice` onto an `Invoice`, and its raw payload.
NORMALIZED_FIELDS = (
    "number", "customer_name", "customer_email", "customer_ref", "customer_phone", "currency", "amount", "outstanding",
    "paid_amount", "status", "provider_status", "issued_at", "due_at", "paid_at", "provider_updated_at",
    "payment_channel", "checkout_url",
)
INVOICE_FIELDS = (*NORMALIZED_FIELDS, "raw")
#: Written on insert only.
INSERT_ONLY = ("merchant_id", "credential_id", "provider", "external_id", "first_seen_at")
#: Written on insert and on update.
UPDATED = (*INVOICE_FIELDS, "content_hash", "last_synced_at", "missing_since", "missing_since_run_id", "customer_id")


# -- digests: what tells an unchanged invoice apart ----------------------------------------------

_normalized_values = operator.attrgetter(*NORMALIZED_FIELDS)
#: Part of an identified item's digest: when arbook stores another field of an invoice (as the
#: customer's phone, for customer identity), the next read rewrites every invoice once.
FIELDS_VERSION = hashlib.sha1("\x1f".join(NORMALIZED_FIELDS).encode()).hexdigest()[:12]
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
        salt = f"{page.salt}\x1f{FIELDS_VERSION}"
        for item in page.items:
            external_id, raw = page.identify(item)
            raw_text = _raw_json(raw)
            yield external_id, hashlib.sha1(f"{salt}\x1e{raw_text}".encode()).hexdigest(), raw_text, None, item
        return
    for remote in page.invoices:
        digest, raw_text = serialized(remote)
        yield remote.external_id, digest, raw_text, remote, None


def page_prepare(page: Page, *, parse: bool, provider: str, credential_id: int, region: str) -> None:
    """Compute ahead, in the sync's reader thread (no database), what `invoices_write` needs of a
    page: its `_identified` entries, in `page.ahead`. With `parse` (a read that mostly brings new
    or changed invoices) every item is parsed too and its customer keys normalized (the
    normalizations are cached), so the writer's thread only waits on the database.

    An item that fails to parse stays unparsed: the writer parses it again if it needs it, and
    stops the batch there, as without this. A page that fails to identify is left to the writer."""
    try:
        entries = list(_identified(page))
    except gateways.BadResponseError:
        return
    if parse:
        for position, (external_id, digest, raw_text, remote, item) in enumerate(entries):
            if remote is None:
                try:
                    remote = page.parse(item)
                except gateways.BadResponseError:
                    continue
                entries[position] = (external_id, digest, raw_text, remote, item)
            party_keys(Party.of(remote), provider=provider, credential_id=credential_id, region=region)
    page.ahead = entries


# -- the history ----------------------------------------------------------------------------------
# Every writer builds its events with `_event` and inserts them with `InvoiceEvent.objects.append`
# (links to the previous event, `last_event_at`); a new invoice from a read has no event, one
# from an upload has its `upload` event.

def _event(invoice_id: int, before: tuple, after: tuple, *, source: str, seen_at: datetime,
           **links: Any) -> InvoiceEvent:
    """The event of one change: `before` and `after` are (status, outstanding, paid_at)."""
    return InvoiceEvent(invoice_id=invoice_id, seen_at=seen_at, source=source,
                        status_before=before[0], outstanding_before=before[1], paid_at_before=before[2],
                        status_after=after[0], outstanding_after=after[1], paid_at_after=after[2], **links)


# -- a provider's read: pages of the sync, looked-up invoices ------------------------------------

#: The columns of a written row, in the order `invoices_write` builds them.
WRITE_COLUMNS = (*INSERT_ONLY, *UPDATED)
#: What tells an unchanged invoice apart: (external_id, content_hash, flagged missing).
DIGEST_COLUMNS = ("external_id", "content_hash", "missing_since")
#: What a change is compared with (events, the provider-clock guard), read for changed rows only.
STATE_COLUMNS = ("external_id", "id", "status", "outstanding", "paid_at", "provider_updated_at", "customer_id")


@dataclass
class WriteCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    fetched: int = 0
    ids: list[str] = field(default_factory=list)
    #: The customers whose invoices this write created, changed or moved (`customers_settle` them).
    customers: set[int] = field(default_factory=set)
    #: Pages of the batch written: all of them, unless one failed to parse (`error`), which the
    #: caller raises once the pages before it are committed.
    pages: int = 0
    error: gateways.BadResponseError | None = None


def _stored(credential_id: int, external_ids: list[str], columns: tuple[str, ...]) -> list[tuple]:
    """`columns` of the stored invoices with these ids (a probe of the (credential, external_id)
    unique index)."""
    return bulk.select_in(Invoice, columns, where={"credential_id": credential_id}, key="external_id",
                          values=external_ids)


def invoices_write(*, credential: GatewayCredential, pages: list[Page], run: SyncRun,
                   seen_at: datetime) -> WriteCounts:
    """Upsert a batch of pages as the provider's own statement of its invoices (call inside a
    transaction), then settle the notifications that waited for them. Returns what it did.

    Only new and changed invoices are parsed (where the page allows it, see `_identified`) and
    written: one SELECT of the stored digests, one of the stored state of the changed ones, one
    merge, one insert of events. A stored state that is newer by the provider's own clock is
    kept. A page that fails to parse ends the batch there: the pages before it are written, and
    the error is handed back in `counts.error`, to be raised once they are committed.
    """
    counts = WriteCounts(pages=len(pages))
    entries: list[tuple[int, str, str, str, RemoteInvoice | None, Any]] = []
    for index, page in enumerate(pages):
        try:
            page_entries = [(index, *entry) for entry in (page.ahead if page.ahead is not None else _identified(page))]
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
    written = []
    for remote, digest, raw_text in changed:
        old = states.get(remote.external_id)
        if old is not None and old[5] and remote.provider_updated_at and remote.provider_updated_at < old[5]:
            # The stored state is newer by the provider's own clock (a payment notification
            # applied after this list page was produced): a lagging read must not undo it.
            counts.unchanged += 1
            continue
        written.append((remote, digest, raw_text, old))
    # Who owes each written invoice (`arbook.services.customers`: the identity rules), in one go.
    customer_ids = _link_customers(credential, written)
    touched = set(customer_ids)
    paying: set[int | None] = set()  # customers whose invoices this read shows paid (their promises)
    for (remote, digest, raw_text, old), customer_id in zip(written, customer_ids):
        rows.append((*first, remote.external_id, seen_at, *_normalized_values(remote), raw_text, digest, seen_at,
                     None, None, customer_id))
        if old is None:
            counts.created += 1
            continue
        counts.updated += 1
        _, invoice_id, old_status, old_outstanding, old_paid_at, _, old_customer = old
        touched.add(old_customer)
        if (old_status, old_outstanding, old_paid_at) != (remote.status, remote.outstanding, remote.paid_at):
            events.append(_event(invoice_id, (old_status, old_outstanding, old_paid_at),
                                 (remote.status, remote.outstanding, remote.paid_at),
                                 source=InvoiceEvent.Source.SYNC, seen_at=seen_at, sync_run=run))
            if remote.status in PAYMENT_STATES:
                paying.update((old_customer, customer_id))
    # Hand-built rows rather than `bulk_create`: they are plain values already, and skipping model
    # instances (and the ORM's upsert) is what makes the write cheap.
    bulk.merge(Invoice, WRITE_COLUMNS, rows, conflict=("credential_id", "external_id"), update=UPDATED)
    InvoiceEvent.objects.append(events)
    if paying:
        promises_observe(customer_ids=paying)
    counts.customers = touched - {None}
    if counts.customers:
        _mark_unsettled(credential)
    notifications_apply_pending(credential=credential)
    return counts


def _mark_unsettled(credential: GatewayCredential) -> None:
    """Say, in the write's own transaction, that this credential's run has written invoices whose
    customers' balances are not refreshed yet (`customers_settle` clears it). Once per run."""
    if credential.customers_pending_since is None:
        credential.customers_pending_since = timezone.now()
        GatewayCredential.objects.filter(pk=credential.pk, customers_pending_since__isnull=True).update(
            customers_pending_since=credential.customers_pending_since)


def customers_unsettled(*, credential: GatewayCredential) -> set[int]:
    """The customers an earlier run of this credential may have left unrefreshed (it ended before
    settling them: a killed worker): all of the credential's, when its marker is still set."""
    if credential.customers_pending_since is None:
        return set()
    return set(Invoice.objects.filter(credential=credential, customer__isnull=False).order_by()
               .values_list("customer_id", flat=True).distinct())


def customers_settle(*, customer_ids: set[int], credential: GatewayCredential | None = None) -> None:
    """Refresh the summary of the customers a run's writes touched (once per run, in batches: the
    customer list reads it; a read of a million invoices should not pay for it per page), then,
    in the same transaction, clear the credential's marker (`customers_pending_since`)."""
    ids = sorted(customer_ids)
    with transaction.atomic():
        for start in range(0, len(ids), SETTLE_BATCH):
            customers_refresh(customer_ids=ids[start:start + SETTLE_BATCH])
        if credential is not None and credential.customers_pending_since is not None:
            GatewayCredential.objects.filter(pk=credential.pk).update(customers_pending_since=None)
            credential.customers_pending_since = None


def _link_customers(credential: GatewayCredential, written: list[tuple]) -> list[int]:
    return customers_link(merchant_id=credential.merchant_id, credential_id=credential.pk,
                          provider=credential.provider, region=credential.merchant.country,
                          parties=[Party.of(remote) for remote, *_rest in written])


def invoices_unseen(*, credential: GatewayCredential, pass_id: int) -> QuerySet[Invoice]:
    """The credential's unflagged invoices that this full pass has not returned (`SyncSeen`).

    NOT EXISTS, not NOT IN: PostgreSQL turns it into a hash anti-join that spills to disk when
    the pass saw millions of ids; a NOT IN whose hash does not fit work_mem is quadratic."""
    seen = SyncSeen.objects.filter(credential_id=credential.pk, pass_id=pass_id, external_id=OuterRef("external_id"))
    return Invoice.objects.filter(credential=credential, missing_since__isnull=True).exclude(Exists(seen))


def invoices_flag_missing(*, credential: GatewayCredential, pass_id: int, run: SyncRun, scope: SettledScope) -> int:
    """Flag what the complete full pass did not return: unsettled invoices (looked up in vain, or
    not lookupable) and settled ones inside the read's settled scope. Nothing is deleted; the
    flag clears when a read returns the invoice again."""
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
    return (invoices_unseen(credential=credential, pass_id=pass_id).filter(expected)
            .update(missing_since=run.started_at, missing_since_run=run))


# -- an upload: invoices Espay listed -----------------------------------------------------------

def _va_json(va) -> dict[str, Any]:
    return {"bank_code": va.bank_code, "va_number": va.va_number,
            "expired": va.expires_at.isoformat() if va.expires_at else None, "description": va.description}


def invoices_upload(*, batch: EspayBatch, chunk: EspayChunk, listed: Sequence[tuple[EspayLine, list]],
                    now: datetime) -> dict[str, int]:
    """An open Invoice per line Espay listed (provider espay, outstanding = amount, due = VA
    expiry), an `upload` event for each new one, then the notifications that waited for them
    (Espay has no list API, so no sync would ever bring these invoices); returns doc_no ->
    invoice id. An invoice that exists already (same credential and doc_no) keeps its state: it
    is linked, and given the VA numbers if it had none."""
    if not listed:
        return {}
    docs = [line.doc_no for line, _ in listed]
    existing = {i.external_id: i for i in Invoice.objects.filter(credential_id=batch.credential_id,
                                                                 external_id__in=docs)}
    new: list[dict[str, Any]] = []
    touched: list[Invoice] = []
    for line, vas in listed:
        list_va = {va.bank_code: _va_json(va) for va in vas}
        raw = {
            "source": "espay_batch", "batch_id": batch.pk, "line_id": line.pk, "row_number": line.row_number,
            "rq_uuid": chunk.rq_uuid, "doc_no": line.doc_no, "doc_ref_no": line.doc_ref_no,
            "member_code": line.member_code, "member_name": line.member_name, "description": line.description,
            "billing_date": line.billing_date, "amount": str(line.amount), "total_amount": str(line.total_amount),
            "number_of_installment": line.number_of_installment,
            "installment_amount": str(line.installment_amount),
            "balance_payment_amount": None if line.balance_payment_amount is None else str(line.balance_payment_amount),
            "list_va": list_va, "va_numbers_known": bool(list_va),
            "result": line.result_code,
        }
        banks = ", ".join(list_va)
        invoice = existing.get(line.doc_no)
        if invoice is None:
            new.append({
                "merchant_id": batch.merchant_id, "credential_id": batch.credential_id, "provider": "espay",
                "external_id": line.doc_no, "number": line.doc_no, "customer_name": line.member_name,
                "customer_ref": line.member_code, "currency": batch.currency, "amount": line.amount,
                "outstanding": line.amount, "paid_amount": Decimal(0), "status": InvoiceStatus.OPEN,
                "provider_status": "LISTED", "issued_at": line.sent_at, "due_at": line.expires_at,
                "payment_channel": f"VA {banks}" if banks else "VA", "raw": raw, "first_seen_at": now,
                "last_synced_at": now,
            })
        elif list_va and not (invoice.raw or {}).get("list_va"):
            invoice.raw = {**(invoice.raw or {}), **raw}
            invoice.due_at = invoice.due_at or line.expires_at
            invoice.payment_channel = invoice.payment_channel or f"VA {banks}"
            touched.append(invoice)
    ids = {doc_no: invoice.pk for doc_no, invoice in existing.items()}
    if new:
        owners = customers_link(merchant_id=batch.merchant_id, credential_id=batch.credential_id, provider="espay",
                                region=batch.merchant.country,
                                parties=[Party(external_id=row["external_id"], name=row["customer_name"],
                                               ref=row["customer_ref"]) for row in new])
        for row, customer_id in zip(new, owners):
            row["customer_id"] = customer_id
        new_ids = bulk.insert_objects(Invoice, new, need_ids=True)
        ids.update(zip((row["external_id"] for row in new), new_ids))
        InvoiceEvent.objects.append(
            _event(invoice_id, ("", None, None), (InvoiceStatus.OPEN, row["outstanding"], None),
                   source=InvoiceEvent.Source.UPLOAD, seen_at=now,
                   note=f"Espay batch #{batch.pk}, row {row['raw']['row_number']}, rq_uuid {chunk.rq_uuid}"[:255])
            for row, invoice_id in zip(new, new_ids))
    if touched:
        bulk.update(touched, ["raw", "due_at", "payment_channel"])
    if new:
        customers_refresh(customer_ids=owners)
    notifications_apply_pending(credential=batch.credential)
    return ids


# -- the money rules ----------------------------------------------------------------------------

# Money rules no notification can break, checked before a notification changes an invoice. A
# notification is the hostile channel: anyone can POST to a hook URL, and even a genuine one
# carries fields its signature does not cover. Whatever it says, the invoice it leaves must obey:
# - its amount, when known, is positive (credit notes, the documented negative amounts, come only
#   from a provider's list read, never from a notification);
# - `paid_amount` is never negative;
# - `outstanding` is never above the amount, except for a charge-back (money owed again on top);
# - a final state (paid, cancelled) goes back to an owed one only when the notification's facts
#   are vouched for: covered by its signature or confirmed by the provider's own API.
# A provider's read is its own statement of the invoice and is not second-guessed here.

#: The final states.
FINAL = st.SETTLED


def money_rule_violations(*, amount: Decimal | None, outstanding: Decimal | None, paid_amount: Decimal | None,
                          status: str) -> list[str]:
    """The rules an invoice state breaks (empty when it is sound)."""
    broken = []
    if amount is not None and amount <= 0:
        broken.append(f"the amount {amount} is not positive")
    if paid_amount is not None and paid_amount < 0:
        broken.append(f"the paid amount {paid_amount} is negative")
    if (amount is not None and outstanding is not None and amount > 0 and outstanding > amount
            and status != st.CHARGED_BACK):
        broken.append(f"the outstanding {outstanding} is above the amount {amount}")
    return broken


def is_regression(before: str, after: str) -> bool:
    """A final state turning back into one that is still owed or open."""
    return before in FINAL and after not in FINAL


# -- a notification: the change it carries, checked and applied ---------------------------------
#
# Applying (`notification_apply`), under a row lock on the invoice:
# - *Duplicate*: another delivery of the same provider event (same dedupe key) was already settled →
#   nothing changes.
# - *Invoice not synced yet*: the notification waits (`pending`) and a sync of its credential is
#   requested; `notifications_apply_pending` (after every write that can bring invoices) applies
#   it when the invoice appears.
# - *State* notifications (Xendit, Faspay, FarPay's non-payment events) carry the invoice's state
#   after the event. One whose provider time is older than the invoice's watermark (its
#   `provider_updated_at` or the newest provider time of a notification applied to it) is `stale`
#   and changes nothing. One without a provider time never undoes a final state (paid, cancelled).
# - *Payment* notifications (Espay always, FarPay "Succeeded" and "ReimbursedByBank") report money
#   moved, not a state: each distinct payment (dedupe key) counts once, whatever the order, so two
#   instalments that arrive newest first both count; a payment for an invoice that is paid already
#   changes nothing. For a polled provider (FarPay) the applied payment also clears the row's
#   `content_hash`, so the next sync rewrites it with the provider's own figures: should that sync's
#   read already have contained the payment, the count is corrected within one sync interval.
# - A change updates the invoice and appends an `InvoiceEvent` (source `notification`, with the
#   notification as its FK); the notification records its outcome.

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def change_of(remote: notify.RemoteNotification) -> dict[str, Any]:
    """A verified notification as the JSON-safe change stored with it (`Notification.parsed`),
    which `_apply_change` applies."""
    change: dict[str, Any] = {"kind": remote.kind, "status": remote.status, "provider_status": remote.provider_status,
                              "currency": remote.currency, "payment_channel": remote.payment_channel}
    for name in ("amount", "outstanding", "paid_amount", "invoice_amount"):
        if getattr(remote, name) is not None:
            change[name] = _money(getattr(remote, name))
    if remote.paid_at is not None:
        change["paid_at"] = _iso(remote.paid_at)
    if remote.clear_paid_at:
        change["clear_paid_at"] = True
    if remote.match != "external_id":
        change["match"] = remote.match
    if remote.vouched:
        change["vouched"] = True
    if remote.confirm:
        change["confirm"] = True
        change.update(remote.lookup_hints)
    if remote.invoice is not None:  # the whole invoice came with it: store it as a read would
        change["raw"] = json.loads(json.dumps(remote.invoice.raw, cls=RawJSONEncoder))
        change["content_hash"] = content_hash(remote.invoice)
    return change


def _find_invoice(notification: Notification, *, lock: bool) -> Invoice | None:
    invoices = Invoice.objects.filter(credential_id=notification.credential_id)
    if lock:
        invoices = invoices.select_for_update()
    if (notification.parsed or {}).get("match") == "number":
        return invoices.filter(number=notification.external_id).order_by("-id").first()
    return invoices.filter(external_id=notification.external_id).first()


def _finish(notification: Notification, outcome: str, reason: str = "", *, invoice: Invoice | None = None) -> Notification:
    notification.outcome = outcome
    notification.outcome_reason = reason[:255]
    if invoice is not None:
        notification.invoice = invoice
    if outcome in (Out.APPLIED, Out.UNCHANGED):
        notification.applied_at = timezone.now()
    notification.save(update_fields=["outcome", "outcome_reason", "invoice", "applied_at", "attempts"])
    return notification


APPLICABLE = (Out.QUEUED, Out.PENDING, Out.FAILED)


@dataclass(frozen=True)
class Review:
    """The provider's own API did not confirm what a notification claims: store, do not apply."""

    reason: str


def notification_apply(*, notification: Notification) -> Notification:
    """Apply one verified notification (idempotent: a settled one is left as it is).

    A notification whose facts its signature does not cover (`change["confirm"]`: Espay, Faspay)
    is first checked with the provider's own API, outside the transaction (an HTTP call must not
    hold the invoice's row lock), and what the provider says is applied instead of the claim. A
    provider that cannot be reached leaves it `failed` and raises, so the task retries."""
    notification = Notification.objects.get(pk=notification.pk)
    if notification.verification != V.VALID or notification.outcome not in APPLICABLE:
        return notification
    confirmed: dict[str, Any] | Review | None = None
    if (notification.parsed or {}).get("confirm") and notification.credential_id is not None:
        invoice = _find_invoice(notification, lock=False)
        if invoice is not None:
            confirmed = _confirmed(notification, invoice)
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(pk=notification.pk)
        if notification.verification != V.VALID or notification.outcome not in APPLICABLE:
            return notification
        notification.attempts += 1
        if notification.credential_id is None:
            return _finish(notification, Out.FAILED, "its credential was deleted")
        invoice = _find_invoice(notification, lock=True)
        if invoice is None:
            return _pending(notification)
        if (notification.parsed or {}).get("confirm"):
            if confirmed is None:  # the invoice appeared meanwhile: confirm on the next attempt
                return _finish(notification, Out.PENDING, "the invoice appeared while it was confirmed; retried")
            if isinstance(confirmed, Review):
                return _finish(notification, Out.NEEDS_REVIEW, confirmed.reason, invoice=invoice)
        return _apply_to(notification, invoice, confirmed)


def _confirmed(notification: Notification, invoice: Invoice) -> dict[str, Any] | Review:
    """What the provider's own API says of the invoice, as the change to apply (or a Review)."""
    try:
        client = credential_client(credential=notification.credential)
        if notification.provider == "espay":
            return _confirmed_espay(notification, invoice, client)
        return _confirmed_faspay(notification, invoice, client)
    except gateways.TransientError as exc:
        Notification.objects.filter(pk=notification.pk).update(
            outcome=Out.FAILED, outcome_reason=f"could not be confirmed yet: {exc}"[:255])
        raise
    except (gateways.GatewayError, SecretsUnavailable) as exc:
        return Review(f"the provider could not confirm it: {exc}")


def _confirmed_espay(notification: Notification, invoice: Invoice, client: Any) -> dict[str, Any] | Review:
    status = client.check_status(invoice.external_id, rq_uuid=uuid.uuid4().hex)
    if status is None:
        return Review("Espay's Check Payment Status does not know this order")
    if not status.paid_amount or status.paid_amount <= 0:
        return Review(f"Espay reports no payment for this order (tx_status {status.tx_status})")
    if invoice.amount is not None and status.amount is not None and status.amount != invoice.amount:
        return Review(f"Espay's order amount {status.amount} is not the invoice's {invoice.amount}")
    total = status.amount if status.amount is not None else invoice.amount
    claimed = notification.parsed or {}
    return {"kind": "state", "status": status.status, "provider_status": status.tx_status,
            "outstanding": _money(None if total is None else total - status.paid_amount),
            "paid_amount": _money(status.paid_amount),
            "paid_at": _iso(status.paid_at) or claimed.get("paid_at"), "currency": status.currency,
            "payment_channel": claimed.get("payment_channel", ""), "vouched": True,
            "confirmed_by": "Espay Check Payment Status"}


def _confirmed_faspay(notification: Notification, invoice: Invoice, client: Any) -> dict[str, Any] | Review:
    """Faspay's inquiry (status, total, payments with their dates) when the callback names its
    billing and service ids, else the bill's row in get-all-billing (status and outstanding; the
    list has no payment date, so none is set)."""
    claimed = notification.parsed or {}
    if claimed.get("billing_id") and claimed.get("service_id"):
        remote = client.inquire(billing_id=claimed["billing_id"], service_id=claimed["service_id"],
                                transaction_number=invoice.external_id)
        source = "Faspay inquiry"
    else:
        remote = client.lookup(gateways.InvoiceRef(external_id=invoice.external_id, status=invoice.status,
                                                   issued_at=invoice.issued_at, due_at=invoice.due_at,
                                                   customer_ref=invoice.customer_ref))
        source = "Faspay get-all-billing"
    if remote is None:
        return Review(f"{source} does not know this bill")
    amount = remote.amount if remote.amount is not None else invoice.amount
    if invoice.amount is not None and remote.amount is not None and remote.amount != invoice.amount:
        return Review(f"{source} says the bill's total is {remote.amount}, not {invoice.amount}")
    change: dict[str, Any] = {"kind": "state", "status": remote.status, "provider_status": remote.provider_status,
                              "outstanding": _money(remote.outstanding), "currency": remote.currency,
                              "invoice_amount": _money(remote.amount),
                              "payment_channel": claimed.get("payment_channel", ""),
                              "vouched": True, "confirmed_by": source, "now": True}
    if remote.paid_amount is not None:
        change["paid_amount"] = _money(remote.paid_amount)
    elif amount is not None and remote.outstanding is not None:
        change["paid_amount"] = _money(max(amount - remote.outstanding, Decimal(0)))
    if remote.paid_at is not None:
        change["paid_at"] = _iso(remote.paid_at)
    elif remote.status in (InvoiceStatus.OPEN, InvoiceStatus.CANCELLED, InvoiceStatus.DRAFT, InvoiceStatus.EXPIRED):
        change["clear_paid_at"] = True
    return change


def _pending_flag(credential_id: int) -> str:
    return f"arbook:notifications-pending:{credential_id}"


def _pending(notification: Notification) -> Notification:
    first = notification.outcome != Out.PENDING
    _finish(notification, Out.PENDING, "the invoice is not in arbook yet; applied when a sync or upload brings it")
    # Tells the sync's per-page hook that there is something to look for (no query otherwise).
    flag, value = _pending_flag(notification.credential_id), uuid.uuid4().hex
    transaction.on_commit(lambda: cache.set(flag, value, timeout=None))
    if first:
        credential = notification.credential
        if sync_enqueue(credential=credential, full=False, trigger=SyncRun.Trigger.NOTIFICATION):
            logger.info("notification id=%s waits for invoice %s; sync of credential %s requested",
                        notification.pk, notification.external_id, credential.pk)
    return notification


def _watermark(invoice: Invoice, notification: Notification) -> datetime | None:
    """The newest provider time the invoice's state is known to reflect."""
    newest = (Notification.objects.filter(invoice=invoice, outcome=Out.APPLIED).exclude(pk=notification.pk)
              .aggregate(m=Max("event_at"))["m"])
    candidates = [t for t in (invoice.provider_updated_at, newest) if t is not None]
    return max(candidates) if candidates else None


def _apply_to(notification: Notification, invoice: Invoice, confirmed: dict[str, Any] | None = None) -> Notification:
    duplicate = (Notification.objects.filter(credential_id=notification.credential_id, event_key=notification.event_key,
                                             outcome__in=Notification.SETTLED)
                 .exclude(pk=notification.pk).order_by("pk").values_list("pk", flat=True).first())
    if duplicate is not None:
        return _finish(notification, Out.DUPLICATE, f"the same event was applied by notification #{duplicate}",
                       invoice=invoice)
    change = confirmed or notification.parsed or {}
    if change.get("now"):  # the provider's current state: as of now, not of an unsigned date
        notification.event_at = timezone.now()
        notification.save(update_fields=["event_at"])
    event_at = notification.event_at
    if change.get("kind") == "payment":
        amount = _dec(change.get("amount"))
        if (amount is None or amount > 0) and invoice.status == InvoiceStatus.PAID and (invoice.outstanding or 0) <= 0:
            return _finish(notification, Out.UNCHANGED, "the invoice is paid already", invoice=invoice)
    else:
        watermark = _watermark(invoice, notification)
        if event_at and watermark and event_at < watermark:
            return _finish(notification, Out.STALE, f"older than the invoice's state ({watermark.isoformat()})",
                           invoice=invoice)
        if event_at is None and invoice.status in FINAL and change.get("status") != invoice.status:
            return _finish(notification, Out.STALE, "no provider time: it cannot undo a final state", invoice=invoice)
    applied = _apply_change(notification, invoice, change)
    claimed = (notification.parsed or {}).get("status")
    if confirmed and applied.outcome == Out.UNCHANGED and claimed and claimed != change.get("status"):
        # The provider contradicts what the notification claims: nothing to apply, but staff should know.
        return _finish(notification, Out.NEEDS_REVIEW, f"it says {claimed}; {change.get('confirmed_by')} says "
                       f"{change.get('status')} (the invoice was left as the provider has it)", invoice=invoice)
    return applied


def _dec(value: Any) -> Decimal | None:
    return parse_decimal(value)  # the change's amounts were checked by the gateway parser


def _apply_change(notification: Notification, invoice: Invoice, change: dict[str, Any]) -> Notification:
    before = (invoice.status, invoice.outstanding, invoice.paid_at)
    updates: dict[str, Any] = {}
    paid_at = datetime.fromisoformat(change["paid_at"]) if change.get("paid_at") else None
    if change.get("kind") == "payment":
        amount = _dec(change.get("amount"))
        base = invoice.outstanding if invoice.outstanding is not None else invoice.amount
        if amount is None:  # "paid", no amount given: nothing is left
            outstanding, paid_amount = Decimal(0), invoice.amount
        else:
            outstanding = None if base is None else base - amount
            paid_amount = (invoice.paid_amount or Decimal(0)) + amount
        status = change["status"]
        if status == InvoiceStatus.PAID and outstanding is not None and outstanding > 0:
            status = InvoiceStatus.PARTIALLY_PAID
        updates.update(status=status, outstanding=outstanding, paid_amount=paid_amount)
        if paid_at and (invoice.paid_at is None or paid_at > invoice.paid_at):
            updates["paid_at"] = paid_at
        if gateways.client_class(invoice.provider).lists_invoices:
            # The provider's list is the truth about what is left to pay: make the next sync
            # rewrite this row even if its read already contained this payment.
            updates["content_hash"] = ""
    else:
        updates["status"] = change["status"]
        for name in ("outstanding", "paid_amount"):
            if change.get(name) is not None:
                updates[name] = _dec(change[name])
        if paid_at:
            updates["paid_at"] = paid_at
        elif change.get("clear_paid_at"):
            updates["paid_at"] = None
        if change.get("raw") is not None:
            updates.update(raw=change["raw"], content_hash=change.get("content_hash", ""))
    updates["provider_status"] = change.get("provider_status", invoice.provider_status)
    if change.get("payment_channel"):
        updates["payment_channel"] = change["payment_channel"]
    if invoice.amount is None and change.get("invoice_amount") is not None:
        updates["amount"] = _dec(change["invoice_amount"])
    if notification.event_at and (invoice.provider_updated_at is None
                                  or notification.event_at > invoice.provider_updated_at):
        updates["provider_updated_at"] = notification.event_at
    after_state = {name: updates.get(name, getattr(invoice, name))
                   for name in ("amount", "outstanding", "paid_amount", "status")}
    broken = money_rule_violations(**after_state)
    if broken:
        return _finish(notification, Out.NEEDS_REVIEW, f"not applied: {'; '.join(broken)}", invoice=invoice)
    if is_regression(invoice.status, after_state["status"]) and not change.get("vouched"):
        return _finish(notification, Out.NEEDS_REVIEW,
                       f"not applied: {invoice.status} -> {after_state['status']} needs a confirmed source",
                       invoice=invoice)
    changed = [name for name, value in updates.items() if getattr(invoice, name) != value]
    for name in changed:
        setattr(invoice, name, updates[name])
    if changed:
        invoice.save(update_fields=changed)
    after = (invoice.status, invoice.outstanding, invoice.paid_at)
    if after == before:
        return _finish(notification, Out.UNCHANGED, "the invoice already was in this state", invoice=invoice)
    InvoiceEvent.objects.append([_event(
        invoice.pk, before, after, source=InvoiceEvent.Source.NOTIFICATION, seen_at=timezone.now(),
        notification=notification,
        note=f"{invoice.get_provider_display()} notification #{notification.pk}: "
             f"{change.get('provider_status') or change.get('status')}"
             f"{' (confirmed by ' + change['confirmed_by'] + ')' if change.get('confirmed_by') else ''}"
             f"{' (event ' + notification.event_id + ')' if notification.event_id else ''}"[:255])])
    customers_refresh(customer_ids=[invoice.customer_id])
    if invoice.status in PAYMENT_STATES:
        promises_observe(customer_ids=[invoice.customer_id])
    logger.info("notification id=%s applied to invoice=%s %s -> %s", notification.pk, invoice.pk, before[0], after[0])
    return _finish(notification, Out.APPLIED, invoice=invoice)


@transaction.atomic
def invoice_confirmed(*, invoice: Invoice, run: SyncRun, status: str, provider_status: str,
                      amount: Decimal | None, paid_amount: Decimal | None, paid_at: datetime | None,
                      seen_at: datetime) -> bool:
    """Write what a provider's own per-order status API says of one invoice (Espay's Check Payment
    Status, asked before a reminder: Espay has no list to read it from), like a read: the money
    rules hold, an event in `run` records the change. Returns whether the invoice changed."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    total = amount if amount is not None else invoice.amount
    paid = paid_amount or Decimal(0)
    outstanding = None if total is None else total - paid
    after_state = {"amount": total, "outstanding": outstanding, "paid_amount": paid, "status": status}
    if money_rule_violations(**after_state) or (is_regression(invoice.status, status) and not paid):
        return False
    before = (invoice.status, invoice.outstanding, invoice.paid_at)
    updates = {**after_state, "provider_status": provider_status[:64]}
    if paid_at and (invoice.paid_at is None or paid_at > invoice.paid_at):
        updates["paid_at"] = paid_at
    changed = [name for name, value in updates.items() if getattr(invoice, name) != value]
    if not changed:
        return False
    for name in changed:
        setattr(invoice, name, updates[name])
    invoice.save(update_fields=changed)
    after = (invoice.status, invoice.outstanding, invoice.paid_at)
    if after != before:
        InvoiceEvent.objects.append([_event(invoice.pk, before, after, source=InvoiceEvent.Source.SYNC,
                                            seen_at=seen_at, sync_run=run,
                                            note=f"{invoice.get_provider_display()} status check: {provider_status}"[:255])])
        customers_refresh(customer_ids=[invoice.customer_id])
        if invoice.status in PAYMENT_STATES:
            promises_observe(customer_ids=[invoice.customer_id])
    return after != before


def notifications_apply_pending(*, credential: GatewayCredential) -> int:
    """Apply the credential's notifications that wait for an invoice which now exists.

    Called by every write that can bring invoices (`invoices_write`, `invoices_upload`), inside
    its transaction (so a page and the notifications it unblocks commit together).
    Costs no query unless a notification of this credential went pending (a cache flag set when
    one does, cleared here once none waits); returns how many were settled.
    """
    flag = _pending_flag(credential.pk)
    marker = cache.get(flag)
    if marker is None:
        return 0
    waiting = list(Notification.objects.filter(credential=credential, outcome=Out.PENDING).order_by("pk")[:PENDING_BATCH])
    if not waiting:
        if cache.get(flag) == marker:  # not re-set meanwhile by a notification that just went pending
            cache.delete(flag)
        return 0
    by_number = {n.external_id for n in waiting if (n.parsed or {}).get("match") == "number"}
    by_id = {n.external_id for n in waiting} - by_number
    known_ids = set(Invoice.objects.filter(credential=credential, external_id__in=by_id)
                    .values_list("external_id", flat=True)) if by_id else set()
    known_numbers = set(Invoice.objects.filter(credential=credential, number__in=by_number)
                        .values_list("number", flat=True)) if by_number else set()
    settled = 0
    for notification in waiting:
        if notification.external_id in (known_numbers if notification.external_id in by_number else known_ids):
            if notification_apply(notification=notification).outcome != Out.PENDING:
                settled += 1
    return settled
