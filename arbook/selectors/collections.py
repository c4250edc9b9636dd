"""Reads of the collector's records: notes, holds, collectors, the audit trail (all bounded)."""
from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from arbook.models import AuditEntry, Customer, Hold, Invoice, Merchant, Note, Promise, SavedView
from arbook.scoping import get_scoped_or_404
from arbook.services.collections import hold_reason_labels

NOTE_LIMIT = 50
HOLD_LIMIT = 50
AUDIT_LIMIT = 50


def active_q(now: dt.datetime, prefix: str = "") -> Q:
    """Holds active at `now` (`Hold.active_q`)."""
    return Hold.active_q(now, prefix)


def customer_notes(*, customer: Customer, limit: int = NOTE_LIMIT) -> list[Note]:
    return list(Note.objects.filter(customer=customer).select_related("author", "invoice")
                .prefetch_related("revisions").order_by("-created_at", "-id")[:limit])


def invoice_notes(*, invoice: Invoice, limit: int = NOTE_LIMIT) -> list[Note]:
    return list(Note.objects.filter(invoice=invoice).select_related("author")
                .prefetch_related("revisions").order_by("-created_at", "-id")[:limit])


def customer_holds(*, customer: Customer, limit: int = HOLD_LIMIT) -> list[Hold]:
    """Its holds, newest first, active and ended alike (the page marks which is which)."""
    return list(Hold.objects.filter(customer=customer).select_related("reason", "opened_by", "released_by", "invoice")
                .order_by("-opened_at", "-id")[:limit])


def invoice_holds(*, invoice: Invoice) -> list[Hold]:
    """The holds that cover this invoice: its own and its customer's whole-customer ones."""
    covering = Q(invoice=invoice)
    if invoice.customer_id is not None:
        covering |= Q(customer_id=invoice.customer_id, invoice__isnull=True)
    return list(Hold.objects.filter(covering).select_related("reason", "opened_by", "released_by")
                .order_by("-opened_at", "-id")[:HOLD_LIMIT])


def held_invoices_q(*, now: dt.datetime | None = None, merchant_ids=None) -> Q:
    """Invoices under an active hold (their own, or their customer's whole-customer hold), as a Q
    on `Invoice` of two small id subqueries: holds are few, and only the open ones are read
    (the `hold_open` partial index)."""
    now = now or timezone.now()
    holds = Hold.objects.filter(active_q(now))
    if merchant_ids is not None:
        holds = holds.filter(merchant_id__in=list(merchant_ids))
    return (Q(pk__in=holds.filter(invoice__isnull=False).values("invoice_id"))
            | Q(customer_id__in=holds.filter(invoice__isnull=True).values("customer_id")))


#: Past this many invoices under holds, the filter reads them by subquery rather than by id list.
HELD_ID_LIMIT = 20_000


def held_invoice_ids(*, merchant_ids, now: dt.datetime | None = None) -> list[int] | None:
    """The ids of the invoices under an active hold in these merchants (their own hold or their
    customer's), as a list: holds are few, and a list of ids lets PostgreSQL read just those rows
    (the primary key) where a subquery OR made it scan. None past HELD_ID_LIMIT."""
    now = now or timezone.now()
    held = list(Hold.objects.filter(active_q(now), merchant_id__in=list(merchant_ids))
                .values_list("invoice_id", "customer_id"))
    ids = {invoice_id for invoice_id, _ in held if invoice_id is not None}
    whole = sorted({customer_id for invoice_id, customer_id in held if invoice_id is None})
    if whole:
        ids.update(Invoice.objects.filter(customer_id__in=whole).values_list("id", flat=True)[:HELD_ID_LIMIT + 1])
    return None if len(ids) > HELD_ID_LIMIT else sorted(ids)


def held_filter(queryset: QuerySet[Invoice], *, merchant_ids, show: str, now: dt.datetime | None = None
                ) -> QuerySet[Invoice]:
    """`queryset` with the invoices on hold left out (`show="hide"`) or alone (`"only"`)."""
    ids = held_invoice_ids(merchant_ids=merchant_ids, now=now)
    held = Q(pk__in=ids) if ids is not None else held_invoices_q(now=now, merchant_ids=merchant_ids)
    return queryset.exclude(held) if show == "hide" else queryset.filter(held)


def hold_reasons(*, merchant: Merchant) -> list[str]:
    """The reasons the hold form offers (`services.collections.hold_reason_labels`)."""
    return hold_reason_labels(merchant=merchant)


def hold_for_user(*, user, pk: int) -> Hold:
    return get_scoped_or_404(Hold.objects.select_related("customer", "customer__merchant", "invoice"), user, pk=pk)


def note_for_user(*, user, pk: int) -> Note:
    return get_scoped_or_404(Note.objects.select_related("customer", "invoice"), user, pk=pk)


def collectors(*, merchant_ids) -> QuerySet:
    """The active users who may collect for these merchants (members of at least one of them)."""
    return (get_user_model().objects.filter(is_active=True, merchants__in=list(merchant_ids)).distinct()
            .order_by("username"))


def customer_audit(*, customer: Customer, limit: int = AUDIT_LIMIT) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(customer=customer).select_related("user").order_by("-at", "-id")[:limit])


def promise_for_user(*, user, pk: int) -> Promise:
    return get_scoped_or_404(Promise.objects.select_related("customer"), user, pk=pk)


def customer_promises(*, customer: Customer, limit: int = NOTE_LIMIT) -> list[Promise]:
    """The customer's promises, newest first: its history of keeping them."""
    return list(Promise.objects.filter(customer=customer).select_related("made_by")
                .prefetch_related("invoices").order_by("-made_at", "-id")[:limit])


def saved_view_for_user(*, user, pk: int) -> SavedView:
    """One of the user's own views (another's, shared or not, is a 404 here: only owners delete)."""
    view = SavedView.objects.filter(pk=pk, owner=user).first()
    if view is None:
        raise Http404("No such view.")
    return view


def saved_views(*, user) -> list[SavedView]:
    """The views in the user's navigation (one query): their own first, then those shared with a
    merchant they are a member of (a superuser: every shared view). Each runs with the viewer's
    own scope."""
    if not getattr(user, "is_authenticated", False):
        return []
    shared = Q(shared_with__isnull=False)
    if not user.is_superuser:
        shared &= Q(shared_with__in=Merchant.objects.filter(members=user).values("pk"))
    views = list(SavedView.objects.filter(Q(owner=user) | shared).select_related("owner", "shared_with")
                 .order_by("name", "id")[:100])
    return sorted(views, key=lambda v: (v.owner_id != user.pk, v.name.lower(), v.pk))
