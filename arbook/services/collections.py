"""The collector's decisions: notes, holds (disputes), promises to pay, who chases a customer and
saved views, each audited.

Every service here checks what the pages cannot be trusted to check (the author edits a note,
a collector is a member of the customer's merchant, an invoice belongs to the customer it is
filed under) and writes its `AuditEntry` in the same transaction as the change, so the trail
never misses a decision nor records one that did not happen. Scoping (may this user see this
merchant at all) is the caller's: the views fetch every object through `arbook.scoping`.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

import gateways.status as st
from arbook.models import (
    AuditEntry,
    Customer,
    CustomerBalance,
    Hold,
    HoldReason,
    Invoice,
    InvoiceEvent,
    Merchant,
    Note,
    NoteRevision,
    Promise,
    SavedView,
)
from arbook.services.customers import customers_refresh

Action = AuditEntry.Action

#: A note longer than this is a document, not a note: attach it elsewhere.
NOTE_MAX_LENGTH = 10_000
#: The reasons a merchant's list starts with (staff edit the list in the admin).
DEFAULT_HOLD_REASONS = ("Amount disputed", "Goods or service not received", "Awaiting a credit note",
                        "Payment arrangement in negotiation", "Customer in administration", "Other")


class CollectionsError(ValueError):
    """A decision the rules refuse; the message is written for the user."""


def _audit(*, user, merchant_id: int, action: str, target: str, summary: str, customer_id: int | None = None,
           invoice_id: int | None = None, data: dict | None = None, at: dt.datetime | None = None) -> AuditEntry:
    return AuditEntry.objects.create(user=user, merchant_id=merchant_id, action=action, target=target,
                                     summary=summary[:255], customer_id=customer_id, invoice_id=invoice_id,
                                     data=data or {}, at=at or timezone.now())


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise CollectionsError("a note needs some text")
    if len(text) > NOTE_MAX_LENGTH:
        raise CollectionsError(f"a note holds at most {NOTE_MAX_LENGTH:,} characters")
    return text


def _invoice_of(customer: Customer, invoice: Invoice | None) -> Invoice | None:
    if invoice is not None and invoice.customer_id != customer.pk:
        raise CollectionsError("that invoice is not this customer's")
    return invoice


# -- notes ---------------------------------------------------------------------------------------

@transaction.atomic
def note_add(*, customer: Customer, author, text: str, invoice: Invoice | None = None,
             now: dt.datetime | None = None) -> Note:
    """A note on the customer (and on one of its invoices, when given)."""
    now = now or timezone.now()
    note = Note.objects.create(merchant_id=customer.merchant_id, customer=customer,
                               invoice=_invoice_of(customer, invoice), author=author, text=_clean_text(text),
                               created_at=now)
    _followed_up(customer, now)
    _audit(user=author, merchant_id=customer.merchant_id, action=Action.NOTE_ADDED, target=f"note:{note.pk}",
           summary=f"Note on {customer}" + (f", invoice {invoice.number or invoice.external_id}" if invoice else ""),
           customer_id=customer.pk, invoice_id=note.invoice_id, data={"text": note.text}, at=now)
    return note


@transaction.atomic
def note_edit(*, note: Note, user, text: str, now: dt.datetime | None = None) -> Note:
    """Change a note's text; only its author may, and the earlier text is kept as a revision."""
    if note.author_id is None or user is None or note.author_id != user.pk:
        raise CollectionsError("only the author of a note may change it")
    text = _clean_text(text)
    note = Note.objects.select_for_update().get(pk=note.pk)
    if text == note.text:
        return note
    now = now or timezone.now()
    NoteRevision.objects.create(note=note, text=note.text, written_at=note.edited_at or note.created_at,
                                replaced_at=now)
    before, note.text, note.edited_at = note.text, text, now
    note.save(update_fields=["text", "edited_at"])
    _audit(user=user, merchant_id=note.merchant_id, action=Action.NOTE_EDITED, target=f"note:{note.pk}",
           summary=f"Note {note.pk} edited", customer_id=note.customer_id, invoice_id=note.invoice_id,
           data={"before": before, "after": text}, at=now)
    return note


# -- holds ---------------------------------------------------------------------------------------

def hold_reason_labels(*, merchant: Merchant) -> list[str]:
    """The reasons offered for a new hold: the merchant's active list (edited in the admin), or
    the default list while the merchant has none at all."""
    reasons = list(HoldReason.objects.filter(merchant=merchant).order_by("label").values_list("label", "is_active"))
    if not reasons:
        return list(DEFAULT_HOLD_REASONS)
    return [label for label, active in reasons if active]


def hold_end(until: dt.date | None, *, merchant: Merchant) -> dt.datetime | None:
    """The instant a hold `until` that day ends: the end of the day in the merchant's zone."""
    if until is None:
        return None
    zone = zoneinfo.ZoneInfo(merchant.timezone or "Asia/Jakarta")
    return dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min, tzinfo=zone)


@transaction.atomic
def hold_open(*, customer: Customer, user, reason: str, detail: str = "", until: dt.date | None = None,
              invoice: Invoice | None = None, now: dt.datetime | None = None) -> Hold:
    """Hold one invoice of the customer, or (no invoice) the whole customer, until a day or until
    released. `reason` is one of `hold_reason_labels` (a default one is added to the merchant's
    list the first time it is used)."""
    now = now or timezone.now()
    merchant = customer.merchant
    if reason not in hold_reason_labels(merchant=merchant):
        raise CollectionsError("choose one of this merchant's reasons")
    reason, _ = HoldReason.objects.get_or_create(merchant=merchant, label=reason)
    ends_at = hold_end(until, merchant=merchant)
    if ends_at is not None and ends_at <= now:
        raise CollectionsError("a hold must last until today or later")
    hold = Hold.objects.create(merchant_id=customer.merchant_id, customer=customer,
                               invoice=_invoice_of(customer, invoice), reason=reason, detail=(detail or "").strip(),
                               opened_by=user, opened_at=now, until=until, ends_at=ends_at)
    what = f"invoice {invoice.number or invoice.external_id}" if invoice else "every invoice"
    _audit(user=user, merchant_id=customer.merchant_id, action=Action.HOLD_OPENED, target=f"hold:{hold.pk}",
           summary=f"Held {what} of {customer}: {reason.label}" + (f" until {until.isoformat()}" if until else ""),
           customer_id=customer.pk, invoice_id=hold.invoice_id,
           data={"reason": reason.label, "detail": hold.detail, "until": until.isoformat() if until else None}, at=now)
    return hold


@transaction.atomic
def hold_release(*, hold: Hold, user, now: dt.datetime | None = None) -> Hold:
    """End a hold now. An expired or already released hold is left as it is."""
    now = now or timezone.now()
    hold = Hold.objects.select_for_update().get(pk=hold.pk)
    if not hold.is_active(now):
        raise CollectionsError("this hold has already ended")
    hold.released_by, hold.released_at = user, now
    hold.save(update_fields=["released_by", "released_at"])
    _audit(user=user, merchant_id=hold.merchant_id, action=Action.HOLD_RELEASED, target=f"hold:{hold.pk}",
           summary=f"Released hold {hold.pk}", customer_id=hold.customer_id, invoice_id=hold.invoice_id, at=now)
    return hold


# -- who chases whom -----------------------------------------------------------------------------

@transaction.atomic
def customers_assign(*, customers: Sequence[Customer], collector, user, now: dt.datetime | None = None) -> int:
    """Make `collector` (None: nobody) the collector of these customers; each must be a member of
    every customer's merchant. Returns how many customers changed hands."""
    now = now or timezone.now()
    if collector is not None:
        members = set(get_user_model().objects.filter(pk=collector.pk, is_active=True)
                      .values_list("merchants", flat=True))
        outside = sorted({c.merchant_id for c in customers} - members)
        if outside and not collector.is_superuser:
            raise CollectionsError(f"{collector.get_username()} is not a member of every merchant of these customers")
    changed = [c for c in customers if c.collector_id != (collector.pk if collector else None)]
    if not changed:
        return 0
    Customer.objects.filter(pk__in=[c.pk for c in changed]).update(collector=collector)
    name = collector.get_username() if collector else "nobody"
    AuditEntry.objects.bulk_create([
        AuditEntry(user=user, merchant_id=c.merchant_id, action=Action.COLLECTOR_ASSIGNED, target=f"customer:{c.pk}",
                   summary=f"{c} assigned to {name}"[:255], customer_id=c.pk, at=now,
                   data={"before": c.collector_id, "after": collector.pk if collector else None})
        for c in changed])
    for c in changed:
        c.collector = collector
    return len(changed)


# -- promises to pay -----------------------------------------------------------------------------
State = Promise.State
#: Above the money columns' 16 digits before the point.
MAX_AMOUNT = Decimal(10) ** 16
#: The invoice states a payment leaves behind (an event into one of them that lowers what is owed
#: is a payment; a cancellation or an expiry is not).
PAYMENT_STATES = (st.PAID, st.PARTIALLY_PAID)


def day_end(day: dt.date, *, merchant: Merchant) -> dt.datetime:
    """The instant `day` ends in the merchant's zone."""
    return hold_end(day, merchant=merchant)


def merchant_today(merchant: Merchant, now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(merchant.timezone or "Asia/Jakarta")).date()


def _money(value) -> Decimal:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError, TypeError):
        raise CollectionsError("the amount is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise CollectionsError("a promise is for an amount above zero")
    if amount >= MAX_AMOUNT:
        raise CollectionsError("that amount is too large")
    return amount


def _followed_up(customer: Customer, now: dt.datetime) -> None:
    """Someone acted on the customer: its broken or partly kept promises leave the worklist's top."""
    Promise.objects.filter(customer=customer, state__in=[State.BROKEN, State.PARTLY_KEPT],
                           followed_up_at__isnull=True).update(followed_up_at=now)


@transaction.atomic
def promise_make(*, customer: Customer, user, amount, currency: str, promised_for: dt.date,
                 invoices: Sequence[Invoice] = (), detail: str = "", now: dt.datetime | None = None) -> Promise:
    """Record that the customer promised to pay `amount` in `currency` by the end of `promised_for`
    (today or later, in the merchant's zone), on `invoices` (all the customer's, in that currency
    and owed) or, none given, on any of its invoices in that currency, oldest first."""
    now = now or timezone.now()
    merchant = customer.merchant
    amount = _money(amount)
    currency = (currency or "").strip().upper()
    owed_in = set(CustomerBalance.objects.filter(customer=customer).values_list("currency", flat=True))
    if currency not in owed_in:
        raise CollectionsError(f"{customer} owes nothing in {currency or 'that currency'}")
    if promised_for < merchant_today(merchant, now):
        raise CollectionsError("a promise is for today or a later day")
    for invoice in invoices:
        _invoice_of(customer, invoice)
        if invoice.currency != currency:
            raise CollectionsError(f"invoice {invoice.number or invoice.external_id} is in {invoice.currency}")
    promise = Promise.objects.create(merchant_id=customer.merchant_id, customer=customer, amount=amount,
                                     currency=currency, promised_for=promised_for,
                                     deadline=day_end(promised_for, merchant=merchant),
                                     detail=(detail or "").strip(), made_by=user, made_at=now)
    if invoices:
        promise.invoices.set(invoices)
    _followed_up(customer, now)
    on = ", ".join(i.number or i.external_id for i in invoices) if invoices else "its oldest invoices"
    _audit(user=user, merchant_id=customer.merchant_id, action=Action.PROMISE_MADE, target=f"promise:{promise.pk}",
           summary=f"{customer} promised {currency} {amount:,} by {promised_for.isoformat()} on {on}",
           customer_id=customer.pk, data={"amount": str(amount), "currency": currency,
                                          "promised_for": promised_for.isoformat(),
                                          "invoices": [i.pk for i in invoices]}, at=now)
    return promise


@transaction.atomic
def promise_cancel(*, promise: Promise, user, now: dt.datetime | None = None) -> Promise:
    """Withdraw an open promise (the customer retracted it, or it was recorded by mistake)."""
    now = now or timezone.now()
    promise = Promise.objects.select_for_update().get(pk=promise.pk)
    if promise.state != State.OPEN:
        raise CollectionsError(f"this promise is {promise.get_state_display().lower()} already")
    promise.state, promise.settled_at = State.CANCELLED, now
    promise.save(update_fields=["state", "settled_at"])
    _audit(user=user, merchant_id=promise.merchant_id, action=Action.PROMISE_CANCELLED,
           target=f"promise:{promise.pk}", summary=f"Promise {promise.pk} cancelled", customer_id=promise.customer_id,
           at=now)
    return promise


def promise_payments(promise: Promise) -> Decimal:
    """What payments took off the promise's invoices after it was made, paid by its deadline.

    A payment is an event of the invoices' write path into a paid state that lowers what is owed;
    it counts when it was recorded after the promise was made and was paid (the provider's payment
    time, else when it was recorded) by the end of the promised day. An event that raises what is
    owed again (a payment reversed, a read that contradicts a notification) takes it back, so a
    payment undone and redone counts once."""
    events = InvoiceEvent.objects.filter(seen_at__gte=promise.made_at, invoice__customer_id=promise.customer_id,
                                         invoice__currency=promise.currency)
    chosen = [i.pk for i in promise.invoices.all()]
    if chosen:
        events = events.filter(invoice_id__in=chosen)
    paid = Decimal(0)
    for status, before, after, paid_at, seen_at, amount in events.order_by("seen_at", "pk").values_list(
            "status_after", "outstanding_before", "outstanding_after", "paid_at_after", "seen_at", "invoice__amount"):
        before = before if before is not None else amount
        if before is None:
            continue
        change = before - (after if after is not None else (Decimal(0) if status in PAYMENT_STATES else before))
        if change > 0 and status in PAYMENT_STATES and (paid_at or seen_at) <= promise.deadline:
            paid += change
        elif change < 0:
            paid = max(paid + change, Decimal(0))
    return paid


def _settle(promise: Promise, now: dt.datetime) -> bool:
    """Bring one promise up to date with its payments and the clock; True when its state changed.
    Re-read under a row lock: a payment's write and the scheduler's pass never overwrite each
    other's verdict, and a promise cancelled meanwhile is left alone."""
    with transaction.atomic():
        locked = Promise.objects.select_for_update().filter(pk=promise.pk, state__in=Promise.OBSERVED).first()
        if locked is None:
            return False
        return _settle_locked(locked, now)


def _settle_locked(promise: Promise, now: dt.datetime) -> bool:
    paid = promise_payments(promise)
    if paid >= promise.amount:
        state = State.KEPT
    elif now >= promise.deadline:
        state = State.PARTLY_KEPT if paid > 0 else State.BROKEN
    else:
        state = State.OPEN
    changed = state != promise.state
    if not changed and paid == promise.paid:
        return False
    before = promise.state
    promise.paid, promise.state = paid, state
    fields = ["paid", "state"]
    if changed:
        promise.settled_at = None if state == State.OPEN else now
        fields.append("settled_at")
        if state in (State.BROKEN, State.PARTLY_KEPT) and before not in (State.BROKEN, State.PARTLY_KEPT):
            promise.followed_up_at = None
            fields.append("followed_up_at")
    promise.save(update_fields=fields)
    if changed:
        _audit(user=None, merchant_id=promise.merchant_id, action=Action.PROMISE_SETTLED,
               target=f"promise:{promise.pk}",
               summary=f"Promise {promise.pk} {promise.get_state_display().lower()}: "
                       f"{promise.currency} {paid:,} of {promise.amount:,} paid by {promise.promised_for.isoformat()}",
               customer_id=promise.customer_id,
               data={"before": before, "after": state, "paid": str(paid)}, at=now)
    return changed


def promises_observe(*, customer_ids: Iterable[int | None], now: dt.datetime | None = None) -> int:
    """Re-read the promises of these customers that a payment can still move (called by the
    invoices' write path, in its transaction, after it recorded events). One query when they
    have none; returns how many promises changed state."""
    ids = {i for i in customer_ids if i is not None}
    if not ids:
        return 0
    now = now or timezone.now()
    promises = list(Promise.objects.filter(customer_id__in=ids, state__in=Promise.OBSERVED)
                    .prefetch_related("invoices").order_by("deadline", "pk"))
    return sum(_settle(promise, now) for promise in promises)


def promises_due(*, now: dt.datetime | None = None) -> int:
    """Settle the open promises whose day is over: partly kept or broken (kept, if a payment came
    in time that nothing has counted yet). Run by the scheduler; returns how many changed."""
    now = now or timezone.now()
    changed = 0
    for promise in (Promise.objects.filter(state=State.OPEN, deadline__lte=now).prefetch_related("invoices")
                    .order_by("deadline", "pk")[:5000]):
        with transaction.atomic():
            changed += _settle(promise, now)
    return changed


# -- the worklist's clock: overdue balances ------------------------------------------------------

def customers_age(*, now: dt.datetime | None = None, batch: int = 2000) -> int:
    """Count, in the customers' overdue balances, the invoices that fell due since each merchant's
    last pass (`Merchant.customers_aged_at`; the first pass reads every overdue invoice). Run by
    the scheduler; returns how many customers it refreshed."""
    now = now or timezone.now()
    refreshed = 0
    for merchant in Merchant.objects.order_by("pk"):
        due = Invoice.objects.filter(merchant=merchant, status__in=st.RECEIVABLE, due_at__lt=now,
                                     customer__isnull=False)
        if merchant.customers_aged_at is not None:
            due = due.filter(due_at__gte=merchant.customers_aged_at)
        ids = sorted(set(due.order_by().values_list("customer_id", flat=True)))
        for start in range(0, len(ids), batch):
            with transaction.atomic():
                refreshed += customers_refresh(customer_ids=ids[start:start + batch], now=now)
        Merchant.objects.filter(pk=merchant.pk).update(customers_aged_at=now)
    return refreshed


# -- saved views ---------------------------------------------------------------------------------

#: The pages a view may be saved of (their GET parameters are the view).
SAVABLE_PATHS = ("/invoices/", "/aging/", "/customers/", "/worklist/")


def saved_view_url(url: str) -> str:
    """`url` as a saved view keeps it: a path of one of SAVABLE_PATHS and its query, nothing else
    (no host, no fragment, no export parameter)."""
    parts = urlsplit((url or "").strip())
    if parts.scheme or parts.netloc or parts.path not in SAVABLE_PATHS:
        raise CollectionsError("only an invoice list, aging, customer list or worklist can be saved")
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith(("_export=", "page=", "cursor=")))
    return parts.path + (f"?{query}" if query else "")


@transaction.atomic
def saved_view_save(*, user, name: str, url: str, shared_with: Merchant | None = None,
                    now: dt.datetime | None = None) -> SavedView:
    """Keep `url` under `name` for `user` (a name of theirs already used is replaced), private or
    shared with the members of `shared_with` (a merchant the user is a member of)."""
    now = now or timezone.now()
    name = (name or "").strip()
    if not name:
        raise CollectionsError("a view needs a name")
    if len(name) > 80:
        raise CollectionsError("a view's name holds at most 80 characters")
    url = saved_view_url(url)
    if shared_with is not None and not user.is_superuser and not shared_with.members.filter(pk=user.pk).exists():
        raise CollectionsError("you can share a view only with a merchant you are a member of")
    view, _ = SavedView.objects.update_or_create(owner=user, name=name,
                                                 defaults={"url": url, "shared_with": shared_with, "created_at": now})
    if shared_with is not None:
        _audit(user=user, merchant_id=shared_with.pk, action=Action.VIEW_SAVED, target=f"view:{view.pk}",
               summary=f"View “{name}” shared: {url}", data={"url": url}, at=now)
    return view


@transaction.atomic
def saved_view_delete(*, view: SavedView, user, now: dt.datetime | None = None) -> None:
    """Delete a view; only its owner may."""
    if view.owner_id != user.pk:
        raise CollectionsError("only the owner of a view may delete it")
    if view.shared_with_id is not None:
        _audit(user=user, merchant_id=view.shared_with_id, action=Action.VIEW_DELETED, target=f"view:{view.pk}",
               summary=f"Shared view “{view.name}” deleted", data={"url": view.url}, at=now)
    view.delete()
