"""The customer pages (pull): the user's customers, their list order, a page's balances, and what a
customer's page shows (its invoices, a timeline, identities, possible double billings, merges).

Every list here is bounded: a customer with 5,000 invoices costs what one with 50 costs. The
list is keyset-paged (`arbook.selectors.paginator`) over the customer summary that the write path
keeps (`arbook.services.customers.customers_refresh`), so it never reads an invoice.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Max, Min, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from arbook.models import (
    PROVIDER_CHOICES,
    Customer,
    CustomerBalance,
    CustomerIdentity,
    Invoice,
    InvoiceEvent,
    Note,
    Notification,
    ReminderMessage,
)
from arbook.scoping import get_scoped_or_404, scope, visible_merchants
from arbook.selectors.paginator import Sort

#: ?sort= of the customer list → column header. `outstanding` sorts the balances of one currency
#: (`CustomerBalance`, on its `balance_sort` indexes); the others sort the customers themselves on
#: the (merchant, column, id) indexes, or the (column, id) ones for a user of several merchants.
SORT_FIELDS: dict[str, str] = {
    "name": "Customer", "oldest_open_due": "Oldest overdue", "last_paid_at": "Last payment",
    "invoice_count": "Invoices", "outstanding": "Outstanding",
}
#: Most overdue first: what a collector works through.
DEFAULT_SORT = "oldest_open_due"
TIMELINE_LIMIT = 50
IDENTITY_LIMIT = 200
DUPLICATE_LIMIT = 50
MERGE_CANDIDATE_LIMIT = 20
#: What a list row reads of a customer (and of its merchant).
LIST_COLUMNS = ("id", "merchant_id", "name", "invoice_count", "open_count", "oldest_open_due", "last_paid_at",
                "providers", "merchant__name", "merchant__timezone", "collector__username")


PROVIDER_LABELS = dict(PROVIDER_CHOICES)


def provider_labels(providers: str) -> str:
    """`Customer.providers` ("faspay,xendit") as the pages write it ("Faspay Billing, Xendit")."""
    return ", ".join(PROVIDER_LABELS.get(p, p) for p in providers.split(",") if p)


def customer_sort(text: str | None) -> Sort | None:
    """The list order `?sort=` names; None for anything else. `outstanding` is a balance column."""
    field = (text or "").strip().lstrip("-")
    model = CustomerBalance if field == "outstanding" else Customer
    return Sort.parse(text, model=model, fields=SORT_FIELDS)


DEFAULT = customer_sort(DEFAULT_SORT)


def merchant_rows(*, user) -> list[tuple[int, str, str, str]]:
    """(id, name, timezone, country) of the merchants `user` may see (one small query)."""
    return list(visible_merchants(user).order_by("name", "id").values_list("id", "name", "timezone", "country"))


def scoped_customers(*, user, merchant_ids: Iterable[int]) -> QuerySet[Customer]:
    return scope(Customer.objects.all(), user, merchant_ids=merchant_ids)


def list_queryset(queryset: QuerySet[Customer]) -> QuerySet[Customer]:
    return queryset.select_related("merchant", "collector").only(*LIST_COLUMNS)


def balance_currencies(*, merchant_ids: list[int]) -> tuple[str, str] | None:
    """The lowest and highest currency the merchants' customers owe in (equal: just one), or None
    when nobody owes anything. Two index probes on `balance_sort`, not a scan."""
    row = CustomerBalance.objects.filter(merchant_id__in=merchant_ids).aggregate(lo=Min("currency"), hi=Max("currency"))
    return None if row["lo"] is None else (row["lo"], row["hi"])


def balances_of(customer_ids: list[int]) -> dict[int, list[CustomerBalance]]:
    """Each customer's balances by currency, for one page of the list (one query)."""
    out: dict[int, list[CustomerBalance]] = defaultdict(list)
    if customer_ids:
        for b in CustomerBalance.objects.filter(customer_id__in=customer_ids).order_by("currency"):
            out[b.customer_id].append(b)
    return out


def day_start_q(field: str, *, day_of, merchants: list[tuple]) -> Q:
    """`field` before the start of the day `day_of(zone)` in each merchant's own zone (one branch per zone)."""
    zones: dict[str, list[int]] = defaultdict(list)
    for m in merchants:
        zones[m[2] or "Asia/Jakarta"].append(m[0])
    if not zones:
        return Q(pk__in=[])

    def start(tz: str) -> dt.datetime:
        zone = zoneinfo.ZoneInfo(tz)
        return dt.datetime.combine(day_of(zone), dt.time.min, tzinfo=zone)

    if len(zones) == 1:
        return Q(**{f"{field}__lt": start(next(iter(zones)))})
    q = Q()
    for tz, ids in zones.items():
        q |= Q(merchant_id__in=ids, **{f"{field}__lt": start(tz)})
    return q


# -- one customer ----------------------------------------------------------------------------------

def merchant_today(merchant, *, now: dt.datetime | None = None) -> tuple[zoneinfo.ZoneInfo, dt.date]:
    """The merchant's zone and today's date there (what "as of today" means on its pages)."""
    zone = zoneinfo.ZoneInfo(merchant.timezone or "Asia/Jakarta")
    return zone, (now or timezone.now()).astimezone(zone).date()


def customer_for_user(*, user, pk: int) -> Customer:
    """The customer if `user` may see its merchant; 404 otherwise."""
    return get_scoped_or_404(Customer.objects.select_related("merchant", "collector"), user, pk=pk)


def customers_for_merge(*, user, target: Customer, ids: Iterable[int]) -> list[Customer]:
    """The customers `ids` of the target's merchant that `user` may see (the caller 404s on a miss)."""
    return list(scope(Customer.objects.filter(merchant_id=target.merchant_id, pk__in=list(ids)), user))


def customer_invoices(*, customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer)


def customer_balances(*, customer: Customer) -> list[CustomerBalance]:
    return list(customer.balances.order_by("currency"))


def customer_identities(*, customer: Customer, limit: int = IDENTITY_LIMIT) -> list[CustomerIdentity]:
    """Its keys, with the gateway account each came from and who moved it here (if staff did)."""
    return list(customer.identities.select_related("credential", "decided_by")
                .order_by("kind", "value", "id")[:limit])


def merge_candidates(*, customer: Customer, limit: int = MERGE_CANDIDATE_LIMIT) -> list[Customer]:
    """Other customers of its merchant whose name folds to the same key (the suggestions' rule)."""
    if not customer.name_key:
        return []
    return list(Customer.objects.filter(merchant_id=customer.merchant_id, name_key=customer.name_key)
                .exclude(pk=customer.pk).order_by("name", "id")[:limit])


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "payment" | "change" | "notification" | "note" | "reminder"
    invoice_id: int | None
    invoice_number: str
    event: InvoiceEvent | None = None
    notification: Notification | None = None
    paid: Decimal | None = None
    note: Note | None = None
    reminder: ReminderMessage | None = None


def _latest_changed(customer: Customer, limit: int) -> list[int]:
    """The invoices that hold the customer's newest `limit` events: those whose `last_event_at`
    (the time of their own latest event) is at least the `limit`-th largest among its invoices.

    Exact: an event of any other invoice is older than that invoice's latest event, hence older
    than the latest event of each of at least `limit` chosen invoices. Reading these few invoices'
    events (on the (invoice, seen_at) index) stays bounded, where joining all 5,000 invoices of a
    big customer to the event table made PostgreSQL walk every recent event of every customer."""
    changed = Invoice.objects.filter(customer=customer, last_event_at__isnull=False).order_by()
    cut = changed.order_by("-last_event_at").values("last_event_at")[limit - 1:limit]
    # Fewer than `limit` invoices with events: the subquery is empty, and all of them are read.
    floor = Coalesce(Subquery(cut), Value(dt.datetime.min.replace(tzinfo=dt.timezone.utc)))
    return list(changed.filter(last_event_at__gte=floor).values_list("id", flat=True))


def customer_timeline(*, customer: Customer, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """The newest `limit` status changes, payments (a drop of the outstanding) and payment
    notifications of its invoices, collectors' notes and the reminders written to it (with their
    text), newest first (bounded queries on the invoices' indexes)."""
    events = (InvoiceEvent.objects.filter(invoice_id__in=_latest_changed(customer, limit))
              .select_related("invoice").only("id", "seen_at", "status_before", "status_after", "outstanding_before",
                                               "outstanding_after", "source", "note", "invoice__id",
                                               "invoice__number", "invoice__external_id", "invoice__currency")
              .order_by("-seen_at", "-id")[:limit])
    notes = (Notification.objects.filter(invoice__customer=customer)
             .select_related("invoice").only("id", "received_at", "provider", "verification", "outcome",
                                             "outcome_reason", "invoice__id", "invoice__number",
                                             "invoice__external_id")
             .order_by("-received_at", "-id")[:limit])
    out = []
    for e in events:
        before, after = e.outstanding_before, e.outstanding_after
        paid = before - after if before is not None and after is not None and before > after else None
        out.append(TimelineEntry(at=e.seen_at, kind="payment" if paid else "change", invoice_id=e.invoice_id,
                                 invoice_number=e.invoice.number or e.invoice.external_id, event=e, paid=paid))
    for n in notes:
        out.append(TimelineEntry(at=n.received_at, kind="notification", invoice_id=n.invoice_id,
                                 invoice_number=n.invoice.number or n.invoice.external_id, notification=n))
    for n in (Note.objects.filter(customer=customer).select_related("author", "invoice")
              .only("id", "created_at", "text", "edited_at", "invoice_id", "author__username", "invoice__number",
                    "invoice__external_id").order_by("-created_at", "-id")[:limit]):
        out.append(TimelineEntry(at=n.created_at, kind="note", invoice_id=n.invoice_id,
                                 invoice_number=(n.invoice.number or n.invoice.external_id) if n.invoice else "",
                                 note=n))
    for m in (ReminderMessage.objects.filter(customer=customer).select_related("step")
              .order_by("-created_at", "-id")[:limit]):
        out.append(TimelineEntry(at=m.sent_at or m.created_at, kind="reminder", invoice_id=None, invoice_number="",
                                 reminder=m))
    out.sort(key=lambda t: t.at, reverse=True)
    return out[:limit]
