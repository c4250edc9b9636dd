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
from arbook.models import DayRollup, GatewayCredential, Notification, SyncRun
from arbook.models.invoices import MONEY
from arbook.scoping import scope, visible_merchants
from arbook.selectors.aging import day_start, reporting_query
from arbook.selectors.aging_rollup import RollupScope, day_rows, rollup_rows, window_days
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


def currency_figures(*, queryset, now: dt.datetime, tz=None, rollup: RollupScope | None = None) -> list[CurrencyFigures]:
    """The overview figures of `queryset` (already scoped) per currency, in one aggregate query.

    `rollup`: `queryset`'s invoices in the rollups' terms; when they can answer, the receivable
    figures are summed from the aging rollup, and the collected and sales windows from the day
    rollup (with the windows' partial first and last days from the invoices), in the same query.
    """
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
    kept = rollup_rows(rollup, zone=zone)
    if kept is not None:
        del branches["receivable"]
    days = day_rows(rollup)
    windows = {}
    wheres = [(branch, where) for branch, where in branches.items()]
    if days is not None:
        # Whole days from the day rollup; the partial first and last day from the invoices, each
        # its own plain range (an OR of the two would not be one index range).
        wheres = [(b, w) for b, w in wheres if b not in ("collected", "sales")]
        for branch, field, since in (("collected", "paid_at", collected_since), ("sales", "issued_at", sales_since)):
            edges, windows[branch] = window_days(field, since=since, until=now)
            wheres += [(branch, edge & branches[branch]) for edge in edges]
    parts = []
    for branch, where in wheres:
        parts.append(queryset.filter(where).order_by().values("currency").annotate(**{
            name: aggregate if part == branch else Value(0, output_field=kind)
            for name, (aggregate, part, kind) in figures.items()}))
    if kept is not None:
        parts.insert(0, _receivable_from_rollup(kept, today=today, figures=figures))
    if days is not None:
        parts.insert(0, _windows_from_rollup(days, windows=windows, figures=figures))
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


def _receivable_from_rollup(kept, *, today: dt.date, figures: dict):
    """The receivable figures per currency from the aging rollup's rows (days in its zone), in
    the columns of `figures` (zero for the others), so that it joins the invoices' UNION ALL."""
    overdue = Q(due_day__lt=today)
    due_soon = Q(due_day__gte=today, due_day__lte=today + dt.timedelta(days=DUE_SOON_DAYS))
    zero = Decimal("0")
    sums = {
        "f_outstanding": Coalesce(Sum("amount"), zero, output_field=_money),
        "f_outstanding_count": Coalesce(Sum("count"), 0, output_field=IntegerField()),
        "f_overdue": Coalesce(Sum("amount", filter=overdue), zero, output_field=_money),
        "f_overdue_count": Coalesce(Sum("count", filter=overdue), 0, output_field=IntegerField()),
        "f_due_soon": Coalesce(Sum("amount", filter=due_soon), zero, output_field=_money),
        "f_due_soon_count": Coalesce(Sum("count", filter=due_soon), 0, output_field=IntegerField()),
    }
    # Currencies whose appended rows cancel out hold no invoice: no row, as the invoices' scan.
    return (kept.filter(status__in=RECEIVABLE, credit=False).values("currency").order_by().annotate(**{
        name: sums.get(name, Value(0, output_field=kind)) for name, (_aggregate, _part, kind) in figures.items()})
        .alias(r_count=Sum("count")).exclude(r_count=0))


def _windows_from_rollup(days, *, windows: dict[str, tuple[dt.date, dt.date]], figures: dict):
    """The collected and sales figures of the windows' whole days from the day rollup, in the
    columns of `figures` (zero for the others)."""
    (c_first, c_last), (s_first, s_last) = windows["collected"], windows["sales"]
    collected = Q(kind=DayRollup.Kind.COLLECTED, day__gte=c_first, day__lte=c_last)
    sales = Q(kind=DayRollup.Kind.SALES, day__gte=s_first, day__lte=s_last)
    zero = Decimal("0")
    sums = {
        "f_collected": Coalesce(Sum("amount", filter=collected), zero, output_field=_money),
        "f_collected_count": Coalesce(Sum("count", filter=collected), 0, output_field=IntegerField()),
        "f_collected_known": Coalesce(Sum("known", filter=collected), 0, output_field=IntegerField()),
        "f_sales": Coalesce(Sum("amount", filter=sales), zero, output_field=_money),
    }
    return (days.filter(collected | sales).values("currency").order_by().annotate(**{
        name: sums.get(name, Value(0, output_field=kind)) for name, (_aggregate, _part, kind) in figures.items()})
        .alias(d_count=Sum("count")).exclude(d_count=0))


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
    # Every invoice of these merchants: what the aging rollup can answer for.
    rollup = RollupScope(merchants=tuple((m.pk, m.timezone or "") for m in merchants))
    figures = currency_figures(queryset=invoices, now=now, rollup=rollup) if merchants else []
    return {
        "merchants": merchants,
        "credentials": credentials,
        "freshness": [credential_freshness(c, now=now) for c in credentials],
        # Invoices may also come from uploads and notifications: figures show whenever there are any.
        "has_synced": last["first"] is not None or bool(figures),
        "last_sync_finished_at": last["last"],
        "figures": figures,
        "invoices": invoices,
        "rollup": rollup,
        "now": now,
        "dso_window": DSO_WINDOW_DAYS,
        "collected_window": COLLECTED_WINDOW_DAYS,
        "due_soon_days": DUE_SOON_DAYS,
        # Verified notifications whose claims the provider did not confirm: stored, not applied.
        "notifications_to_review": scope(Notification.objects.filter(outcome=Notification.Outcome.NEEDS_REVIEW),
                                         user, merchant_field="credential__merchant").count(),
    }
