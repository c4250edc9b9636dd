"""The aging report: what is owed, in which payment state, how late — computed in the database.

Definitions (the page says them too):

* **Rows.** The receivable states (open, partially paid, processing, failed, charged back), then
  expired and unknown shown apart, then `credit`: unapplied credits (negative outstanding, in any
  state but draft/cancelled). Draft, paid and cancelled invoices do not age.
* **Columns.** `current` (not yet due), then day ranges `1-30`, `31-60`, `61-90`, `91-` (the
  boundaries come from `?buckets=30,60,90`). Days are counted in whole calendar days in the report
  time zone (the server's TIME_ZONE unless the caller passes another): an invoice due on the
  as-of day is not yet due; one due the day before is 1 day late. With `basis=issued` the age is
  counted from the issue date instead (issued on the as-of day = `current`). No due date (or, on
  the issue basis, no issue date) → `current`.
* **As of a past date** (`as_of` before today): the state at the end of that day (the cutoff is the
  start of the next day). Following `InvoiceEvent`'s rule, an invoice's state then is the
  `*_before` of its first event at or after the cutoff, else its current state; an event with no
  `status_before` records the first sighting, so its `*_after` is the earliest known state (an
  invoice first seen after the as-of date but issued before it counts with that state). An
  invoice whose known state is `paid` with `paid_at` after the cutoff was still owed then: it
  counts as `open` for its `amount` (or `paid_amount` when the amount is unknown). Invoices issued
  after the as-of date are excluded (no issue date: first seen after it). As of today, the report
  is simply every invoice in its current state.

Everything is an ORM expression, so the report (one aggregate query for all the ungrouped tables,
one per grouped table) and the drill-down (`aging_drilldown`, which the invoice list's FilterSet
calls) read the very same definition: a cell's list sums to the cell.

For speed at a million invoices, the event history is only consulted for invoices that have an
event after the cutoff (a hashed `id IN (...)` gate), and then through two subqueries (row,
amount) that each read that invoice's first such event once.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    DecimalField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from arbook.models import Invoice, InvoiceEvent
from arbook.models.invoices import MONEY
from arbook.status import APART, RECEIVABLE, STATUSES

PAID, DRAFT, CANCELLED = "paid", "draft", "cancelled"
CREDIT = "credit"
#: The rows of an ungrouped table, in display order.
ROWS: tuple[str, ...] = (*RECEIVABLE, *APART, CREDIT)
#: Row values that stand for several rows (subtotals) in a drill-down link.
ROW_SETS: dict[str, tuple[str, ...]] = {"receivable": RECEIVABLE, "all": ROWS}
ROW_LABELS: dict[str, str] = {**{s: STATUSES[s].label for s in (*RECEIVABLE, *APART)},
                              CREDIT: "Unapplied credits", "receivable": "Receivable", "all": "Net total"}
#: States whose negative outstanding counts as an unapplied credit.
CREDIT_STATES: tuple[str, ...] = (*RECEIVABLE, *APART, PAID)
BASES = ("due", "issued")
DEFAULT_BOUNDS: tuple[int, ...] = (30, 60, 90)
MAX_BOUNDS = 8
CURRENT = "current"
ALL = "all"

_money = DecimalField(**MONEY)


class AgingParameterError(ValueError):
    """A parameter of the report or of a drill-down is malformed; the message is for the user."""


# -- parameters -----------------------------------------------------------------------------

def parse_bounds(text: str | None) -> tuple[int, ...]:
    """`"30,60,90"` → (30, 60, 90): strictly increasing whole days ≥ 1, at most 8 of them."""
    if text is None or not str(text).strip():
        return DEFAULT_BOUNDS
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        bounds = tuple(int(p) for p in parts)
    except ValueError:
        raise AgingParameterError(
            f"Buckets must be whole numbers of days separated by commas, like 30,60,90 (got {text!r}).") from None
    if not bounds or len(bounds) > MAX_BOUNDS:
        raise AgingParameterError(f"Give between 1 and {MAX_BOUNDS} bucket boundaries, like 30,60,90.")
    if bounds[0] < 1 or any(b <= a for a, b in zip(bounds, bounds[1:])) or bounds[-1] > 36500:
        raise AgingParameterError("Bucket boundaries must be increasing whole days from 1, like 30,60,90.")
    return bounds


@dataclass(frozen=True)
class Bucket:
    key: str  # "current", "1-30", ..., "91-"
    lo: int | None  # first day late (None for current)
    hi: int | None  # last day late (None: open-ended)

    def label(self, basis: str) -> str:
        if self.key == CURRENT:
            return "Not yet due" if basis == "due" else "Issued that day"
        if self.hi is None:
            return f"{self.lo - 1}+ days"
        return f"{self.lo}–{self.hi} days"


def buckets_for(bounds: tuple[int, ...]) -> list[Bucket]:
    out, lo = [Bucket(CURRENT, None, None)], 1
    for b in bounds:
        out.append(Bucket(f"{lo}-{b}", lo, b))
        lo = b + 1
    out.append(Bucket(f"{lo}-", lo, None))
    return out


_BUCKET_RE = re.compile(r"^(\d{1,5})-(\d{1,5})?$")


def parse_bucket(key: str) -> Bucket | None:
    """A drill-down bucket key; None means every bucket (`all`)."""
    key = (key or "").strip()
    if key in ("", ALL):
        return None
    if key == CURRENT:
        return Bucket(CURRENT, None, None)
    m = _BUCKET_RE.match(key)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise AgingParameterError(
            f"Unknown aging bucket {key!r}: use current, a day range like 1-30, or an open range like 91-.")
    return Bucket(key, int(m.group(1)), int(m.group(2)) if m.group(2) else None)


def parse_row(row: str) -> tuple[str, ...]:
    row = (row or "").strip() or ALL
    if row in ROW_SETS:
        return ROW_SETS[row]
    if row in ROWS:
        return (row,)
    raise AgingParameterError(
        f"Unknown aging row {row!r}: use one of {', '.join(ROWS)}, receivable or all.")


def parse_basis(basis: str) -> str:
    basis = (basis or "").strip() or "due"
    if basis not in BASES:
        raise AgingParameterError(f"Unknown aging basis {basis!r}: use due or issued.")
    return basis


def parse_as_of(value: Any, *, tz=None) -> dt.date:
    """A date (or ISO text); empty = today in the report zone."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        return timezone.localdate(timezone=_zone(tz))
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise AgingParameterError(f"The as-of date {text!r} is not a date like 2025-06-30.") from None


def _zone(tz) -> dt.tzinfo:
    if tz is None:
        return timezone.get_current_timezone()
    if isinstance(tz, str):
        return zoneinfo.ZoneInfo(tz)
    return tz


def day_start(day: dt.date, tz) -> dt.datetime:
    """The aware moment a calendar day starts in `tz` (DST-safe: combine with the zone)."""
    return dt.datetime.combine(day, dt.time.min).replace(tzinfo=_zone(tz))


# -- the state as of a date, as ORM expressions ---------------------------------------------

def _row_from(status, outstanding, *, paid_later: Q | None) -> Case:
    """The aging row of one invoice from its (status, outstanding) expressions/lookups prefix."""
    whens = []
    if paid_later is not None:
        whens.append(When(paid_later, then=Value(RECEIVABLE[0])))
    whens += [
        When(Q(**{f"{outstanding}__lt": 0, f"{status}__in": CREDIT_STATES}), then=Value(CREDIT)),
        When(Q(**{f"{status}__in": (*RECEIVABLE, *APART)}), then=F(status)),
    ]
    return Case(*whens, default=Value(None), output_field=CharField())


def _with_state(queryset: QuerySet[Invoice], *, as_of: dt.date, tz) -> QuerySet[Invoice]:
    """Alias `aging_row` (None = not in aging) and `aging_outstanding` as they stood on `as_of`."""
    cutoff = day_start(as_of + dt.timedelta(days=1), tz)
    if as_of >= timezone.localdate(timezone=_zone(tz)):
        # Today: every invoice in its current state (one dated to be issued later is already a
        # receivable in its gateway). Plain columns only, so that the (merchant, status, due_at)
        # INCLUDE (currency, outstanding) index answers the due-basis report without the table.
        return queryset.alias(
            aging_row=_row_from("status", "outstanding", paid_later=None),
            aging_outstanding=F("outstanding"),
        )

    qs = queryset.filter(Q(issued_at__lt=cutoff) | Q(issued_at__isnull=True, first_seen_at__lt=cutoff))
    paid_later = Q(status=PAID, paid_at__gte=cutoff)
    owed_then = Coalesce(F("amount"), F("paid_amount"), output_field=_money)
    current_row = _row_from("status", "outstanding", paid_later=paid_later)
    current_amount = Case(When(paid_later, then=owed_then), default=F("outstanding"), output_field=_money)

    # The first event at or after the cutoff: its *_before is the state then; with no status_before
    # it records the first sighting and its *_after is the earliest known state.
    first_after = (InvoiceEvent.objects.filter(invoice=OuterRef("pk"), seen_at__gte=cutoff)
                   .order_by("seen_at", "id"))
    ev = first_after.annotate(
        h_status=Coalesce(NullIf(F("status_before"), Value("")), NullIf(F("status_after"), Value("")),
                          OuterRef("status"), output_field=CharField()),
        # The sync writes full snapshots (status, outstanding and paid date before and after), so
        # a null outstanding_before means "unknown then", not "unchanged".
        h_out=Case(
            When(status_before="", then=Coalesce(F("outstanding_after"), OuterRef("outstanding"),
                                                 output_field=_money)),
            default=F("outstanding_before"), output_field=_money),
    )
    # paid_at of the invoice itself decides "paid after the cutoff" (the events' paid dates only
    # refine it when a payment was reversed, which the status history already shows).
    hist_row = ev.annotate(
        outer_paid_at=ExpressionWrapper(OuterRef("paid_at"), output_field=DateTimeField()),
    ).annotate(
        k=Case(
            When(Q(h_status=PAID, outer_paid_at__gte=cutoff), then=Value(RECEIVABLE[0])),
            When(Q(h_out__lt=0, h_status__in=CREDIT_STATES), then=Value(CREDIT)),
            When(h_status__in=(*RECEIVABLE, *APART), then=F("h_status")),
            default=Value(None), output_field=CharField()),
    ).values("k")[:1]
    hist_amount = ev.annotate(
        outer_paid_at=ExpressionWrapper(OuterRef("paid_at"), output_field=DateTimeField()),
        a=Case(
            When(Q(h_status=PAID, outer_paid_at__gte=cutoff),
                 then=Coalesce(OuterRef("amount"), OuterRef("paid_amount"), output_field=_money)),
            default=F("h_out"), output_field=_money),
    ).values("a")[:1]
    changed = Q(pk__in=InvoiceEvent.objects.filter(seen_at__gte=cutoff).values("invoice_id"))
    # Only these can be in aging then; the cheap test spares the rest (most paid, drafts, cancelled)
    # the CASE and the history lookups.
    qs = qs.filter(Q(status__in=(*RECEIVABLE, *APART)) | Q(outstanding__lt=0) | paid_later | changed)
    return qs.alias(
        aging_row=Case(When(changed, then=Subquery(hist_row, output_field=CharField())),
                       default=current_row, output_field=CharField()),
        aging_outstanding=Case(When(changed, then=Subquery(hist_amount, output_field=_money)),
                               default=current_amount, output_field=_money),
    )


def _bucket_case(*, basis: str, as_of: dt.date, tz, buckets: list[Bucket]) -> Case:
    ref = "due_at" if basis == "due" else "issued_at"
    whens = [When(**{f"{ref}__isnull": True}, then=Value(CURRENT)),
             When(**{f"{ref}__gte": day_start(as_of, tz)}, then=Value(CURRENT))]
    for b in buckets[1:-1]:
        whens.append(When(**{f"{ref}__gte": day_start(as_of - dt.timedelta(days=b.hi), tz)}, then=Value(b.key)))
    return Case(*whens, default=Value(buckets[-1].key), output_field=CharField())


def _bucket_q(*, basis: str, as_of: dt.date, tz, bucket: Bucket) -> Q:
    """The invoices of one bucket as a plain range on the date column (index-friendly)."""
    ref = "due_at" if basis == "due" else "issued_at"
    if bucket.key == CURRENT:
        return Q(**{f"{ref}__isnull": True}) | Q(**{f"{ref}__gte": day_start(as_of, tz)})
    # age in [lo, hi] <=> local date in [as_of - hi, as_of - lo]
    q = Q(**{f"{ref}__lt": day_start(as_of - dt.timedelta(days=bucket.lo - 1), tz)})
    if bucket.hi is not None:
        q &= Q(**{f"{ref}__gte": day_start(as_of - dt.timedelta(days=bucket.hi), tz)})
    return q


def _in_aging(qs: QuerySet[Invoice], rows: tuple[str, ...], *, live: bool) -> QuerySet[Invoice]:
    if live:
        # Same meaning as `aging_row IN rows`, but on plain columns so PostgreSQL can use its indexes.
        states = [r for r in rows if r != CREDIT]
        q = Q(status__in=states) & (Q(outstanding__gte=0) | Q(outstanding__isnull=True)) if states else Q(pk__in=[])
        if CREDIT in rows:
            q |= Q(status__in=CREDIT_STATES, outstanding__lt=0)
        return qs.filter(q)
    return qs.filter(aging_row__in=rows)


def _is_live(as_of: dt.date, tz) -> bool:
    return as_of >= timezone.localdate(timezone=_zone(tz))


# -- the drill-down (the invoice list's FilterSet calls this) -------------------------------

def aging_drilldown(queryset: QuerySet[Invoice], *, as_of: dt.date | str | None, basis: str, bucket: str,
                    row: str, tz=None) -> QuerySet[Invoice]:
    """Exactly the invoices one aging cell sums.

    `row`: a state (`open`, ..., `expired`, `unknown`), `credit`, `receivable` (the five
    receivable states) or `all`; `bucket`: `current`, `1-30`, `91-` (any `lo-hi` / `lo-`) or
    `all`; `basis`: `due` or `issued`; `as_of`: a date (empty = today). Raises
    `AgingParameterError` (a ValueError with a message for the user) on a malformed value.

    The result is annotated with `aging_outstanding`: what each invoice owed on `as_of`. For today
    it equals `outstanding`; for a past date a list whose total must equal the cell sums
    `aging_outstanding` (e.g. `qs.values("currency").annotate(Sum("aging_outstanding"))`). The currency (and any
    grouping: merchant, provider, customer) is an ordinary list filter beside these.
    """
    zone = _zone(tz)
    day = parse_as_of(as_of, tz=zone)
    basis = parse_basis(basis)
    rows = parse_row(row)
    b = parse_bucket(bucket)
    qs = _with_state(queryset, as_of=day, tz=zone)
    qs = _in_aging(qs, rows, live=_is_live(day, zone))
    if b is not None:
        qs = qs.filter(_bucket_q(basis=basis, as_of=day, tz=zone, bucket=b))
    # Selected (not only aliased) so that callers can aggregate it; for today it is the column.
    return qs.annotate(aging_outstanding=F("aging_outstanding"))


# -- the report -----------------------------------------------------------------------------

@contextmanager
def reporting_query():
    """PostgreSQL settings for one big aggregate, local to its transaction.

    More work_mem lets the planner hash-aggregate (it cannot estimate the groups of a CASE, so
    with 4 MB it sorts hundreds of thousands of rows on disk instead), and JIT off because its
    compile time (~1 s for the as-of query) exceeds the query's own. Server-wide `jit = off` is
    the usual setting for a dashboard like this; this keeps the report fast without it.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")
        yield


@dataclass
class Cell:
    amount: Decimal = Decimal("0")
    count: int = 0
    bucket: str = ALL
    row: str = ALL
    url: str = ""  # the drill-down link, set by the view

    def add(self, amount: Decimal | None, count: int) -> None:
        self.amount += amount or Decimal("0")
        self.count += count


@dataclass
class Line:
    key: str  # a row value, or the group key
    label: str
    cells: list[Cell]
    total: Cell
    kind: str = "row"  # row | subtotal | total | group | others
    group_value: Any = None  # merchant id / provider / customer name, for the drill-down link


@dataclass
class Table:
    currency: str
    lines: list[Line] = field(default_factory=list)
    totals: list[Cell] = field(default_factory=list)  # per bucket, of the table's main scope
    groups_shown: int = 0
    groups_total: int | None = None


@dataclass
class AgingReport:
    as_of: dt.date
    basis: str
    buckets: list[Bucket]
    group: str
    rows: str
    tz: dt.tzinfo
    tables: list[Table]
    top: int
    live: bool

    @property
    def bucket_labels(self) -> list[str]:
        return [b.label(self.basis) for b in self.buckets]


GROUPS = {"": None, "merchant": "merchant_id", "provider": "provider", "customer": "customer_name"}
DEFAULT_TOP = 50
MAX_TOP = 500


def _empty_cells(buckets: list[Bucket], row: str) -> list[Cell]:
    return [Cell(bucket=b.key, row=row) for b in buckets]


def invoice_aging(*, queryset: QuerySet[Invoice], as_of: dt.date, basis: str = "due",
                  bounds: tuple[int, ...] = DEFAULT_BOUNDS, group: str = "", rows: str = "receivable",
                  top: int = DEFAULT_TOP, tz=None) -> AgingReport:
    """Aging tables per currency of `queryset` (already scoped and filtered by the caller).

    Ungrouped: one aggregate query for every currency's table (GROUP BY currency, row, bucket).
    Grouped by merchant/provider/customer (`rows` chooses which rows are summed: `receivable`,
    a single row value, or `all`): the same totals query, then one conditional-aggregation query
    per currency table, showing the `top` groups by amount and an "others" line for the rest.
    """
    zone = _zone(tz)
    basis = parse_basis(basis)
    if group not in GROUPS:
        raise AgingParameterError(f"Unknown grouping {group!r}: use merchant, provider or customer.")
    row_set = parse_row(rows) if group else ROWS
    buckets = buckets_for(bounds)
    live = _is_live(as_of, zone)
    index = {b.key: i for i, b in enumerate(buckets)}

    base = _in_aging(_with_state(queryset, as_of=as_of, tz=zone), row_set, live=live)
    bucket_expr = _bucket_case(basis=basis, as_of=as_of, tz=zone, buckets=buckets)
    raw = (base.annotate(g_row=F("aging_row"), g_bucket=bucket_expr)
           .values("currency", "g_row", "g_bucket")
           .annotate(amount=Sum("aging_outstanding"), n=Count("currency"))  # currency is NOT NULL and in the covering index: COUNT(id) would need the table
           .order_by())

    per_currency: dict[str, dict[str, list[Cell]]] = {}
    with reporting_query():
        raw = list(raw)
        tables = _tables(raw, per_currency=per_currency, base=base, group=group, rows=rows, row_set=row_set,
                         buckets=buckets, index=index, bucket_expr=bucket_expr, top=top)
    return AgingReport(as_of=as_of, basis=basis, buckets=buckets, group=group, rows=rows if group else ALL,
                       tz=zone, tables=tables, top=top, live=live)


def _tables(raw, *, per_currency, base, group, rows, row_set, buckets, index, bucket_expr, top) -> list[Table]:
    for r in raw:
        cells = per_currency.setdefault(r["currency"], {}).setdefault(r["g_row"], _empty_cells(buckets, r["g_row"]))
        cells[index[r["g_bucket"]]].add(r["amount"], r["n"])

    tables = []
    for currency in sorted(per_currency):
        by_row = per_currency[currency]
        table = Table(currency=currency)
        totals = _empty_cells(buckets, ALL if not group else rows or "receivable")
        for row in row_set:
            for i, c in enumerate(by_row.get(row, [])):
                totals[i].add(c.amount, c.count)
        table.totals = totals
        if not group:
            receivable = _empty_cells(buckets, "receivable")
            for row in ROWS:
                cells = by_row.get(row) or _empty_cells(buckets, row)
                table.lines.append(_line(row, ROW_LABELS[row], cells, "row"))
                if row in RECEIVABLE:
                    for i, c in enumerate(cells):
                        receivable[i].add(c.amount, c.count)
                if row == RECEIVABLE[-1]:
                    table.lines.append(_line("receivable", ROW_LABELS["receivable"], receivable, "subtotal"))
            table.lines.append(_line(ALL, ROW_LABELS[ALL], totals, "total"))
        else:
            _grouped_lines(table, base=base, group=group, bucket_expr=bucket_expr, buckets=buckets,
                           rows=rows or "receivable", top=top, totals=totals)
        tables.append(table)
    return tables


def _line(key: str, label: str, cells: list[Cell], kind: str, group_value: Any = None) -> Line:
    total = Cell(bucket=ALL, row=cells[0].row if cells else key)
    for c in cells:
        total.add(c.amount, c.count)
    return Line(key=key, label=label, cells=cells, total=total, kind=kind, group_value=group_value)


def _grouped_lines(table: Table, *, base, group, bucket_expr, buckets, rows, top, totals) -> None:
    column = GROUPS[group]
    aggregates = {}
    for i, b in enumerate(buckets):
        aggregates[f"a{i}"] = Sum("aging_outstanding", filter=Q(g_bucket=b.key))
        aggregates[f"n{i}"] = Count("currency", filter=Q(g_bucket=b.key))
    qs = (base.filter(currency=table.currency).alias(g_bucket=bucket_expr)
          .values(column).annotate(total=Coalesce(Sum("aging_outstanding"), Value(Decimal("0")), output_field=_money),
                                   count=Count("currency"), **aggregates)
          .order_by("-total", column)[:top])
    groups = list(qs)
    labels = _group_labels(group, [g[column] for g in groups])
    shown = [_empty_cells(buckets, rows) for _ in groups]
    for g, cells in zip(groups, shown):
        for i in range(len(buckets)):
            cells[i].add(g[f"a{i}"], g[f"n{i}"])
        table.lines.append(_line(str(g[column]), labels.get(g[column], str(g[column] or "—")), cells, "group",
                                 group_value=g[column]))
    others = _empty_cells(buckets, rows)
    for i, t in enumerate(totals):
        others[i].add(t.amount - sum((cells[i].amount for cells in shown), Decimal("0")),
                      t.count - sum(cells[i].count for cells in shown))
    table.groups_shown = len(groups)
    if any(c.count for c in others):
        table.lines.append(_line("others", "All others", others, "others"))
    table.lines.append(_line(ALL, "Total", totals, "total"))


def _group_labels(group: str, keys: list) -> dict:
    if group == "merchant":
        from arbook.models import Merchant

        return {m.pk: m.name for m in Merchant.objects.filter(pk__in=keys)}
    if group == "provider":
        from arbook.models import PROVIDER_CHOICES

        return dict(PROVIDER_CHOICES)
    return {k: (k or "(no customer name)") for k in keys}
