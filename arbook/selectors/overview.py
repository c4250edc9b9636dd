"""What the overview page shows, scoped to the user's merchants.

Figures per currency (one aggregate query for all of them; never summed across currencies):

* **Outstanding**: the outstanding balance of receivable invoices (open, partially paid,
  processing, failed, charged back; credits excluded) — the aging report's "Receivable" total.
* **Overdue**: the part of it due before today (the aging report's late buckets).
* **Due in the next 7 days**: receivable, due today up to 7 days ahead.
* **Collected in the last 30 days**: for invoices whose `paid_at` falls in the last 30 days
  (charged-back ones excluded: the money went back), the `paid_amount` the gateway reports;
  when a gateway gives no paid amount for a paid invoice, its `amount`. Payments whose amount is
  unknown either way are counted and shown apart, never guessed.
* **DSO** (days sales outstanding) = outstanding ÷ credit sales of the last 90 days × 90, where
  credit sales = the amounts (or outstanding + paid when the gateway gives no amount) of the
  invoices issued in the last 90 days, excluding drafts and cancelled ones. None without sales.

Days are counted in the server's time zone (TIME_ZONE), like the aging report's default.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, DecimalField, ExpressionWrapper, F, IntegerField, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

import gateways
from arbook.models import GatewayCredential, Notification, SyncRun
from arbook.models.invoices import MONEY
from arbook.scoping import scope, visible_merchants
from arbook.selectors.aging import day_start, reporting_query
from arbook.selectors.invoices import scoped_invoices
from arbook.status import RECEIVABLE, CredentialFreshness, InvoiceStatus

DSO_WINDOW_DAYS = 90
COLLECTED_WINDOW_DAYS = 30
DUE_SOON_DAYS = 7
_money = DecimalField(**MONEY)


@dataclass
class CurrencyFigures:
    currency: str
    outstanding: Decimal
    outstanding_count: int
    overdue: Decimal
    overdue_count: int
    due_soon: Decimal
    due_soon_count: int
    collected: Decimal
    collected_count: int
    collected_unknown: int
    sales: Decimal
    dso: Decimal | None


@dataclass
class Freshness:
    credential: GatewayCredential
    state: CredentialFreshness  # label and badge colour: arbook.status (kind "freshness")
    age: dt.timedelta | None  # since the last successful sync
    stale_after: dt.timedelta

    @property
    def stale_after_text(self) -> str:
        minutes = int(self.stale_after.total_seconds() // 60)
        if minutes % 60 == 0:
            return f"{minutes // 60} hour{'s' if minutes != 60 else ''}"
        return f"{minutes} minutes"


def currency_figures(*, queryset, now: dt.datetime, tz=None) -> list[CurrencyFigures]:
    """The overview figures of `queryset` (already scoped) per currency, in one aggregate query."""
    zone = tz or timezone.get_current_timezone()
    today = timezone.localdate(now, timezone=zone)
    today_start = day_start(today, zone)
    soon_end = day_start(today + dt.timedelta(days=DUE_SOON_DAYS + 1), zone)
    collected_since = now - dt.timedelta(days=COLLECTED_WINDOW_DAYS)
    sales_since = now - dt.timedelta(days=DSO_WINDOW_DAYS)

    receivable = Q(status__in=RECEIVABLE) & (Q(outstanding__gte=0) | Q(outstanding__isnull=True))
    overdue = Q(due_at__lt=today_start)
    due_soon = Q(due_at__gte=today_start, due_at__lt=soon_end)
    paid_value = Coalesce(F("paid_amount"), F("amount"), output_field=_money)
    sale_value = Coalesce(F("amount"), ExpressionWrapper(F("outstanding") + F("paid_amount"), output_field=_money),
                          output_field=_money)
    zero = Decimal("0")

    def money(expression, *, filter=None):
        return Coalesce(Sum(expression, filter=filter), zero, output_field=_money)

    count = IntegerField()
    figures = {  # name: (what an invoice adds, the branch that sums it, its type)
        "f_outstanding": (money("outstanding"), "receivable", _money),
        "f_outstanding_count": (Count("currency"), "receivable", count),
        "f_overdue": (money("outstanding", filter=overdue), "receivable", _money),
        "f_overdue_count": (Count("currency", filter=overdue), "receivable", count),
        "f_due_soon": (money("outstanding", filter=due_soon), "receivable", _money),
        "f_due_soon_count": (Count("currency", filter=due_soon), "receivable", count),
        "f_collected": (money(paid_value), "collected", _money),
        "f_collected_count": (Count("currency"), "collected", count),
        "f_collected_known": (Count(paid_value), "collected", count),
        "f_sales": (money(sale_value), "sales", _money),
    }
    # Three disjoint questions, each on its own index (the receivable ones an index-only scan of
    # the covering index, payments by paid date, sales by issue date), in one UNION ALL: an OR of
    # the three would read the whole table.
    branches = {
        "receivable": receivable,
        "collected": Q(paid_at__gte=collected_since, paid_at__lte=now) & ~Q(status=InvoiceStatus.CHARGED_BACK),
        "sales": Q(issued_at__gte=sales_since, issued_at__lte=now)
                 & ~Q(status__in=(InvoiceStatus.DRAFT, InvoiceStatus.CANCELLED)),
    }
    parts = []
    for branch, where in branches.items():
        parts.append(queryset.filter(where).order_by().values("currency").annotate(**{
            name: aggregate if part == branch else Value(0, output_field=kind)
            for name, (aggregate, part, kind) in figures.items()}))
    totals: dict[str, dict[str, Any]] = {}
    with reporting_query():
        for row in parts[0].union(*parts[1:], all=True):
            into = totals.setdefault(row["currency"], {name: 0 for name in figures})
            for name in figures:
                into[name] += row[name]
    rows = [{"currency": currency, **values} for currency, values in sorted(totals.items())]
    out = []
    for r in rows:
        dso = None
        if r["f_sales"] > 0:
            dso = (r["f_outstanding"] / r["f_sales"] * DSO_WINDOW_DAYS).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        out.append(CurrencyFigures(
            currency=r["currency"], outstanding=r["f_outstanding"], outstanding_count=r["f_outstanding_count"],
            overdue=r["f_overdue"], overdue_count=r["f_overdue_count"], due_soon=r["f_due_soon"],
            due_soon_count=r["f_due_soon_count"], collected=r["f_collected"], collected_count=r["f_collected_count"],
            collected_unknown=r["f_collected_count"] - r["f_collected_known"], sales=r["f_sales"], dso=dso))
    return out


def _lists_invoices(provider: str) -> bool:
    try:
        return bool(getattr(gateways.client_class(provider), "lists_invoices", True))
    except Exception:  # an unknown provider: shown, never crashes the page
        return True


def credential_freshness(credential: GatewayCredential, *, now: dt.datetime) -> Freshness:
    """Stale = no successful sync within twice the credential's sync interval."""
    stale_after = dt.timedelta(minutes=2 * (credential.sync_interval_minutes or 15))
    age = now - credential.last_success_at if credential.last_success_at else None
    if not credential.is_active:
        state = CredentialFreshness.INACTIVE
    elif not _lists_invoices(credential.provider):
        state = CredentialFreshness.NO_LIST_API
    elif credential.needs_attention:
        state = CredentialFreshness.NEEDS_ATTENTION
    elif age is None:
        state = CredentialFreshness.NEVER
    elif age > stale_after:
        state = CredentialFreshness.STALE
    else:
        state = CredentialFreshness.OK
    return Freshness(credential=credential, state=state, age=age, stale_after=stale_after)


def overview_context(*, user, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    merchants = list(visible_merchants(user))
    credentials = list(scope(GatewayCredential.objects.select_related("merchant"), user)
                       .order_by("merchant__name", "provider", "label"))
    runs = scope(SyncRun.objects.all(), user, merchant_field="credential__merchant")
    last = runs.aggregate(last=Max("finished_at"), first=Min("started_at"))
    invoices = scoped_invoices(user=user, merchant_ids=[m.pk for m in merchants])
    figures = currency_figures(queryset=invoices, now=now) if merchants else []
    return {
        "merchants": merchants,
        "credentials": credentials,
        "freshness": [credential_freshness(c, now=now) for c in credentials],
        # Invoices may also come from uploads and notifications: figures show whenever there are any.
        "has_synced": last["first"] is not None or bool(figures),
        "last_sync_finished_at": last["last"],
        "figures": figures,
        "invoices": invoices,
        "now": now,
        "dso_window": DSO_WINDOW_DAYS,
        "collected_window": COLLECTED_WINDOW_DAYS,
        "due_soon_days": DUE_SOON_DAYS,
        # Verified notifications whose claims the provider did not confirm: stored, not applied.
        "notifications_to_review": scope(Notification.objects.filter(outcome=Notification.Outcome.NEEDS_REVIEW),
                                         user, merchant_field="credential__merchant").count(),
    }
