"""The collector's decisions: notes, holds (disputes) and who chases a customer, each audited.

Every service here checks what the pages cannot be trusted to check (the author edits a note,
a collector is a member of the customer's merchant, an invoice belongs to the customer it is
filed under) and writes its `AuditEntry` in the same transaction as the change, so the trail
never misses a decision nor records one that did not happen. Scoping (may this user see this
merchant at all) is the caller's: the views fetch every object through `arbook.scoping`.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from arbook.models import AuditEntry, Customer, Hold, HoldReason, Invoice, Merchant, Note, NoteRevision

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
