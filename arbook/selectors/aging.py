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

Everything is an ORM expression, so the report and the drill-down (`aging_drilldown`, which the
invoice list's FilterSet calls) read the very same definition of the state then (`_with_state`)
and of the buckets (`_bucket_q`): a cell's list sums to the cell. The report is one aggregate
query for all the ungrouped tables (grouped by the plain state values, mapped to rows by
`row_for`, whose SQL twin `_row_case` filters the drill-down), plus one per grouped table.

For speed at a million invoices: as of today no history is read at all and covering indexes
answer. As of a past date, the invoices unchanged since the cutoff (`Invoice.changed_at`, the
latest event or payment, is before it) are summed the same way, from the covering index; only
the changed ones (found by a covering index on `changed_at`) join "the first event at or after
the cutoff", which is a join condition (each event knows the `seen_at` of the previous one).
The drill-down reads the one definition (`_with_state`) for every invoice; the report's split
gives the same sums because an invoice unchanged since the cutoff stood then as it stands now.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from collections.abc import Collection, Iterator
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    FilteredRelation,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from arbook import params
from arbook.dbrouting import report_db
from arbook.models import PROVIDER_CHOICES, Customer, CustomerBalance, GatewayCredential, Invoice, Merchant
from arbook.models.invoices import MONEY
from arbook.status import APART, RECEIVABLE, STATUSES, InvoiceStatus
from arbook.selectors.aging_rollup import RollupScope, day_range_q, existing_unchanged, rollup_rows, rows_q
from arbook.selectors.collections import held_invoice_ids, held_invoices_q

PAID = InvoiceStatus.PAID
#: Not a payment state: the row of unapplied credits (negative outstanding).
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
#: The oldest bucket boundary, in days (a century): as-of dates are bounded so that the as-of date
#: minus this stays a date (`arbook.params.MAX_AGE_DAYS`).
MAX_DAYS = params.MAX_AGE_DAYS
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
    parts = [p.strip() for p in str(text)[:params.MAX_TEXT].split(",") if p.strip()]
    try:
        bounds = tuple(params.parse_int(p, min_value=-params.MAX_ID, max_value=params.MAX_ID) for p in parts)
    except params.ParamError:
        raise AgingParameterError("Buckets must be whole numbers of days separated by commas, like 30,60,90 "
                                  f"(got “{params.clip(text)}”).") from None
    if not bounds or len(bounds) > MAX_BOUNDS:
        raise AgingParameterError(f"Give between 1 and {MAX_BOUNDS} bucket boundaries, like 30,60,90.")
    if bounds[0] < 1 or any(b <= a for a, b in zip(bounds, bounds[1:])) or bounds[-1] > MAX_DAYS:
        raise AgingParameterError(f"Bucket boundaries must be increasing whole days from 1 to {MAX_DAYS}, "
                                  "like 30,60,90.")
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


_BUCKET_RE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})?")


def parse_bucket(key: str) -> Bucket | None:
    """A drill-down bucket key; None means every bucket (`all`)."""
    key = (key or "").strip()
    if key in ("", ALL):
        return None
    if key == CURRENT:
        return Bucket(CURRENT, None, None)
    m = _BUCKET_RE.fullmatch(key)
    if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise AgingParameterError(f"Unknown aging bucket “{params.clip(key)}”: use current, a day range like 1-30, "
                                  "or an open range like 91-.")
    lo, hi = int(m.group(1)), int(m.group(2)) if m.group(2) else None
    if hi is not None and hi > MAX_DAYS or lo > MAX_DAYS + 1:
        raise AgingParameterError(f"The aging bucket “{key}” reaches back more than {MAX_DAYS} days "
                                  f"(the oldest open bucket is {MAX_DAYS + 1}-).")
    return Bucket(key, lo, hi)


def parse_row(row: str) -> tuple[str, ...]:
    row = (row or "").strip() or ALL
    if row in ROW_SETS:
        return ROW_SETS[row]
    if row in ROWS:
        return (row,)
    raise AgingParameterError(
        f"Unknown aging row “{params.clip(row)}”: use one of {', '.join(ROWS)}, receivable or all.")


def parse_basis(basis: str) -> str:
    basis = (basis or "").strip() or "due"
    if basis not in BASES:
        raise AgingParameterError(f"Unknown aging basis “{params.clip(basis)}”: use due or issued.")
    return basis


def parse_as_of(value: Any, *, tz=None) -> dt.date:
    """A date (or ISO text) in the range every page accepts (`arbook.params`); empty = today in
    the report zone. The range keeps `as_of` minus the oldest bucket representable."""
    if isinstance(value, dt.date):
        try:
            return params.check_date(value)
        except params.ParamError as exc:
            raise AgingParameterError(f"The as-of date: {exc}") from None
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        return timezone.localdate(timezone=_zone(tz))
    try:
        return params.parse_date(text)
    except params.ParamError:
        raise AgingParameterError(f"The as-of date “{params.clip(text)}” is not a date like 2025-06-30 "
                                  f"between {params.MIN_DATE} and {params.MAX_DATE}.") from None


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

def row_for(status: str | None, negative: bool | None, paid_later: bool | None) -> str | None:
    """The aging row of an invoice in `status` (`negative`: outstanding < 0; `paid_later`: its
    paid date is after the cutoff), or None when it does not age. `_row_case` is this in SQL."""
    if status == PAID and paid_later:
        return RECEIVABLE[0]
    if negative and status in CREDIT_STATES:
        return CREDIT
    return status if status in (*RECEIVABLE, *APART) else None


def _row_case(paid_later: Q | None) -> Case:
    """`row_for` as an SQL CASE over the `h_status` / `h_out` aliases, for filtering."""
    whens = [When(Q(h_status=PAID) & paid_later, then=Value(RECEIVABLE[0]))] if paid_later is not None else []
    whens += [
        When(Q(h_out__lt=0, h_status__in=CREDIT_STATES), then=Value(CREDIT)),
        When(Q(h_status__in=(*RECEIVABLE, *APART)), then=F("h_status")),
    ]
    return Case(*whens, default=Value(None), output_field=CharField())


def _current_state(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """The aliases of `_with_state` for invoices in their current state: plain columns, so the
    covering indexes answer."""
    blank = Value("", output_field=CharField())
    return queryset.alias(h_status=F("status"), h_out=F("outstanding"), h_before=blank, h_after=blank,
                          h_paid_later=Value(False, output_field=BooleanField())).alias(
        aging_row=_row_case(None),
        aging_outstanding=F("outstanding"),
    )


def _cutoff(as_of: dt.date, tz) -> dt.datetime:
    """The end of the as-of day (the start of the next one)."""
    return day_start(as_of + dt.timedelta(days=1), tz)


def _existing_at(queryset: QuerySet[Invoice], cutoff: dt.datetime) -> QuerySet[Invoice]:
    """The invoices issued before the cutoff (no issue date: first seen before it)."""
    return queryset.filter(Q(issued_at__lt=cutoff) | Q(issued_at__isnull=True, first_seen_at__lt=cutoff))


def _with_state(queryset: QuerySet[Invoice], *, as_of: dt.date, tz) -> QuerySet[Invoice]:
    """Alias the state of each invoice as it stood on `as_of`:

    `h_status`, `h_out` (status and outstanding then), `h_paid_later` (paid after the cutoff, a
    boolean), `aging_row` (None = not in aging) and `aging_outstanding` (what it owed then);
    `h_status` is the first non-empty of `h_before`, `h_after` and `status` (the report groups by
    these three plain columns, whose groups PostgreSQL can estimate).
    """
    if _is_live(as_of, tz):
        # Today: every invoice in its current state (one dated to be issued later is already a
        # receivable in its gateway).
        return _current_state(queryset)

    blank = Value("", output_field=CharField())
    cutoff = _cutoff(as_of, tz)
    qs = _existing_at(queryset, cutoff)
    # The first event at or after the cutoff, as a join: the only such event whose previous one
    # (prev_seen_at) is before the cutoff, or that has none. Its *_before is the state then; with
    # no status_before it records the first sighting and its *_after is the earliest known state.
    qs = qs.alias(first_after=FilteredRelation("events", condition=Q(events__seen_at__gte=cutoff) & (
        Q(events__prev_seen_at__isnull=True) | Q(events__prev_seen_at__lt=cutoff))))
    # Aliased once: each new lookup through the filtered relation would join it again.
    qs = qs.alias(event_id=F("first_after__id"), h_before=F("first_after__status_before"),
                  h_after=F("first_after__status_after"))
    paid_later = Q(paid_at__gte=cutoff)
    qs = qs.alias(
        h_status=Coalesce(NullIf(F("h_before"), blank), NullIf(F("h_after"), blank), F("status"),
                          output_field=CharField()),
        # The sync writes full snapshots (status, outstanding and paid date before and after), so
        # a null outstanding_before means "unknown then", not "unchanged".
        h_out=Case(When(event_id__isnull=True, then=F("outstanding")),
                   When(h_before="", then=Coalesce(F("first_after__outstanding_after"), F("outstanding"))),
                   default=F("first_after__outstanding_before"), output_field=_money),
        # paid_at of the invoice itself decides "paid after the cutoff" (the events' paid dates
        # only refine it when a payment was reversed, which the status history already shows).
        h_paid_later=ExpressionWrapper(paid_later, output_field=BooleanField()),
    )
    # Only these can be in aging then; the cheap test spares the rest (most paid, drafts, cancelled).
    qs = qs.filter(Q(status__in=(*RECEIVABLE, *APART)) | Q(outstanding__lt=0) | paid_later
                   | Q(event_id__isnull=False))
    owed_then = Coalesce(F("amount"), F("paid_amount"), output_field=_money)
    return qs.alias(
        aging_row=_row_case(paid_later),
        aging_outstanding=Case(When(Q(h_status=PAID) & paid_later, then=owed_then), default=F("h_out"),
                               output_field=_money),
    )


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
    live = _is_live(day, zone)
    if not live and basis == "due":
        # Only on the due basis: the due-date cover has `changed_at`, the issue-date cover not (there
        # it cost a table read per row: 44 -> 118 ms for a 30-day bucket at 10M, measured).
        queryset = queryset.filter(_may_be_in(rows, cutoff=_cutoff(day, zone)))
    qs = _with_state(queryset, as_of=day, tz=zone)
    qs = _in_aging(qs, rows, live=live)
    if b is not None:
        qs = qs.filter(_bucket_q(basis=basis, as_of=day, tz=zone, bucket=b))
    # Selected (not only aliased) so that callers can aggregate it; for today it is the column.
    return qs.annotate(aging_outstanding=F("aging_outstanding"))


def _may_be_in(rows: tuple[str, ...], *, cutoff: dt.datetime) -> Q:
    """A plain-column superset of the invoices whose row at `cutoff` is in `rows`: those changed
    since (`changed_at`), and those whose status now could be such a row (unchanged since, the
    state then is the state now). The drill-down filters by it before joining the history, so
    a covering index (`inv_due_cover_v2`) drops the rest before the list sorts its matches: of a
    bucket's 400,000 invoices at 10M, those paid or cancelled long ago."""
    states = {r for r in rows if r != CREDIT} & {*RECEIVABLE, *APART}
    if CREDIT in rows:
        states |= set(CREDIT_STATES)
    return Q(changed_at__gte=cutoff) | Q(status__in=sorted(states))


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
    using = report_db()
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
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
    group_value: Any = None  # merchant id / provider / customer id, for the drill-down link


@dataclass
class Table:
    currency: str
    lines: list[Line] = field(default_factory=list)
    totals: list[Cell] = field(default_factory=list)  # per bucket, of the table's main scope
    #: Of the receivable amounts, what is on hold now (`mark_held`), per bucket.
    held: Line | None = None
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


GROUPS = {"": None, "merchant": "merchant_id", "provider": "provider", "customer": "customer_id"}
DEFAULT_TOP = 50
MAX_TOP = 500


def _empty_cells(buckets: list[Bucket], row: str) -> list[Cell]:
    return [Cell(bucket=b.key, row=row) for b in buckets]


def invoice_aging(*, queryset: QuerySet[Invoice], as_of: dt.date, basis: str = "due",
                  bounds: tuple[int, ...] = DEFAULT_BOUNDS, group: str = "", rows: str = "receivable",
                  top: int = DEFAULT_TOP, tz=None, merchant_ids: Collection[int] | None = None,
                  rollup: RollupScope | None = None) -> AgingReport:
    """Aging tables per currency of `queryset` (already scoped and filtered by the caller).

    Ungrouped: one aggregate query for every currency's table (GROUP BY currency, row, bucket).
    Grouped by merchant/provider/customer (`rows` chooses which rows are summed: `receivable`,
    a single row value, or `all`): the same totals query, then one conditional-aggregation query
    per currency table, showing the `top` groups by amount and an "others" line for the rest.
    By customer, when the caller names the merchants `queryset` is within (`merchant_ids`), the
    top customers are found from their stored balances instead (`_ranked_customers`).

    `rollup`: when the caller can say which invoices `queryset` holds in the rollup's terms
    (`arbook.selectors.aging_rollup.scope_for`), the sums come from the rollup rather than from
    the invoices (`_rollup_summary`); by customer, only the totals do.
    """
    zone = _zone(tz)
    as_of = parse_as_of(as_of, tz=zone)
    basis = parse_basis(basis)
    if group not in GROUPS:
        raise AgingParameterError(f"Unknown grouping {group!r}: use merchant, provider or customer.")
    row_set = parse_row(rows) if group else ROWS
    buckets = buckets_for(parse_bounds(",".join(str(b) for b in bounds)))
    live = _is_live(as_of, zone)
    state = _with_state(queryset, as_of=as_of, tz=zone)
    aggregates = _bucket_aggregates(basis=basis, as_of=as_of, tz=zone, buckets=buckets)
    kept = rollup_rows(rollup, zone=zone)
    ranking = None
    if group == "customer" and merchant_ids is not None and _balances_bound(row_set, merchant_ids):
        changed = None if live else _in_aging(_changed_since(queryset, as_of=as_of, tz=zone), row_set, live=False)
        ranking = Ranking(balances=CustomerBalance.objects.filter(merchant_id__in=list(merchant_ids)), changed=changed)
    with reporting_query():
        if kept is not None:
            summary = _rollup_summary(kept, queryset, as_of=as_of, tz=zone, basis=basis, buckets=buckets, live=live,
                                      aggregates=aggregates)
        else:
            summary = _summary(queryset, as_of=as_of, tz=zone, row_set=row_set, live=live, aggregates=aggregates)
        from_rollup = None
        if kept is not None and group in ("merchant", "provider"):
            from_rollup = RollupGroups(rows=kept.filter(rows_q(row_set, credit=CREDIT, credit_states=CREDIT_STATES)),
                                       aggregates=_rollup_aggregates(basis=basis, as_of=as_of, buckets=buckets),
                                       live=live, as_of=as_of, tz=zone)
        tables = _tables(list(summary), base=_in_aging(state, row_set, live=live), group=group, rows=rows,
                         row_set=row_set, buckets=buckets, aggregates=aggregates, top=top, ranking=ranking,
                         from_rollup=from_rollup)
    return AgingReport(as_of=as_of, basis=basis, buckets=buckets, group=group, rows=rows if group else ALL,
                       tz=zone, tables=tables, top=top, live=live)


def _bucket_aggregates(*, basis: str, as_of: dt.date, tz, buckets: list[Bucket]) -> dict[str, Any]:
    """Per bucket i, `a{i}` (owed then) and `n{i}` (count): aggregates filtered by date ranges."""
    aggregates: dict[str, Any] = {}
    for i, b in enumerate(buckets):
        in_bucket = _bucket_q(basis=basis, as_of=as_of, tz=tz, bucket=b)
        aggregates[f"a{i}"] = Sum("aging_outstanding", filter=in_bucket)
        # currency is NOT NULL and in the covering indexes: COUNT(id) would need the table
        aggregates[f"n{i}"] = Count("currency", filter=in_bucket)
    return aggregates


def _summary(queryset: QuerySet[Invoice], *, as_of: dt.date, tz, row_set: tuple[str, ...], live: bool,
             aggregates: dict) -> QuerySet:
    """The per-bucket sums per (currency, state then, negative, paid later): one query.

    Grouped by plain columns and booleans (the state then is the first non-empty of the event's
    status before, after and the invoice's status), not by the row (`row_for` maps them in Python, a few dozen
    groups): PostgreSQL estimates their groups, so it aggregates in its parallel workers; a CASE
    key it cannot estimate made it gather every row into one process and aggregate there. Rows
    outside `row_set` are dropped by the caller, so the WHERE only has to be a superset.

    As of a past date, UNION ALL of two parts split at the cutoff by `changed_at` (the latest
    event or payment): the invoices unchanged since stood then as now, so they are summed like
    today's report (index-only); only the changed ones (a few percent) join their history.
    """
    if live:
        branches = _current_branches(_current_state(queryset), row_set=row_set, aggregates=aggregates)
    else:
        cutoff = _cutoff(as_of, tz)
        unchanged = _existing_at(queryset, cutoff).filter(Q(changed_at__isnull=True) | Q(changed_at__lt=cutoff))
        branches = [*_current_branches(_current_state(unchanged), row_set=row_set, aggregates=aggregates),
                    _grouped(_changed_since(queryset, as_of=as_of, tz=tz), aggregates)]
    return branches[0].union(*branches[1:], all=True) if len(branches) > 1 else branches[0]


def _rollup_aggregates(*, basis: str, as_of: dt.date, buckets: list[Bucket]) -> dict[str, Any]:
    """`_bucket_aggregates` over the rollup's day columns: per bucket, `a{i}` and `n{i}`."""
    column = "due_day" if basis == "due" else "issued_day"
    zero_money, zero = Value(Decimal("0"), output_field=_money), Value(0)
    aggregates: dict[str, Any] = {}
    for i, b in enumerate(buckets):
        in_bucket = day_range_q(column, as_of=as_of, lo=b.lo, hi=b.hi)
        aggregates[f"a{i}"] = Coalesce(Sum("amount", filter=in_bucket), zero_money, output_field=_money)
        aggregates[f"n{i}"] = Coalesce(Sum("count", filter=in_bucket), zero)
    return aggregates


def _rollup_summary(kept, queryset: QuerySet[Invoice], *, as_of: dt.date, tz, basis: str, buckets: list[Bucket],
                    live: bool, aggregates: dict) -> list[dict]:
    """`_summary`'s rows from the rollup: as of today, its rows alone (a few hundred thousand at
    ten million invoices, against millions of index entries); as of a past date, its rows of the
    invoices unchanged since the cutoff plus the changed invoices read from their history (the
    same split as `_summary`'s, with the rollup in place of the unchanged invoices' scan)."""
    source = kept if live else existing_unchanged(kept, as_of)
    blank = {"k_before": "", "k_after": "", "k_paid_later": False}
    # A key whose appended rows cancel out (its invoices all left it) holds no invoice: no row,
    # as the invoices' scan has none.
    out = [{**r, **blank} for r in source.values("currency", k_status=F("status"), k_negative=F("credit"))
           .annotate(**_rollup_aggregates(basis=basis, as_of=as_of, buckets=buckets))
           .alias(k_count=Sum("count")).exclude(k_count=0).order_by()]
    if not live:
        out += list(_grouped(_changed_since(queryset, as_of=as_of, tz=tz), aggregates))
    return out


@dataclass
class RollupGroups:
    """What a table grouped by merchant or gateway reads from the rollup (`_rollup_group_rows`):
    the groups of every currency at once (`by_currency`, filled on the first table's call)."""

    rows: QuerySet  # the rollup's rows in the report's rows
    aggregates: dict
    live: bool
    as_of: dt.date
    tz: dt.tzinfo
    by_currency: dict[str, list[dict]] | None = None

    def groups(self, *, column: str, base: QuerySet, aggregates: dict) -> dict[str, list[dict]]:
        """{currency: [group rows]}: summed from the rollup (as of a past date, its rows unchanged
        since, plus the changed invoices' groups from `base`), in one query for each part."""
        if self.by_currency is None:
            rows = self.rows if self.live else existing_unchanged(self.rows, self.as_of)
            parts = [rows.values("currency", column).annotate(**self.aggregates).order_by()]
            if not self.live:
                changed = base.filter(changed_at__gte=_cutoff(self.as_of, self.tz))
                parts.append(changed.values("currency", column).annotate(**aggregates).order_by())
            self.by_currency = {}
            for part in parts:
                for r in part:
                    self.by_currency.setdefault(r["currency"], []).append(r)
        return self.by_currency


def _rollup_group_rows(source: RollupGroups, *, column: str, currency: str, base: QuerySet, aggregates: dict,
                       top: int) -> list[dict]:
    """The `top` groups of a table, by total then key, as `_grouped_lines` reads them from the
    invoices, merged here from `source`'s parts (a merchant or gateway grouping has a few dozen
    groups at most)."""
    n = len([k for k in source.aggregates if k.startswith("a")])
    merged: dict[Any, dict] = {}
    for r in source.groups(column=column, base=base, aggregates=aggregates).get(currency, []):
        g = merged.setdefault(r[column], {column: r[column], **{f"a{i}": Decimal("0") for i in range(n)},
                                           **{f"n{i}": 0 for i in range(n)}})
        for i in range(n):
            g[f"a{i}"] += r[f"a{i}"] or Decimal("0")
            g[f"n{i}"] += r[f"n{i}"] or 0
    for g in merged.values():
        g["total"] = sum((g[f"a{i}"] for i in range(n)), Decimal("0"))
        g["count"] = sum(g[f"n{i}"] for i in range(n))
    ranked = sorted((g for g in merged.values() if g["count"]), key=lambda g: (-g["total"], g[column]))
    return ranked[:top]


def _changed_since(queryset: QuerySet[Invoice], *, as_of: dt.date, tz) -> QuerySet[Invoice]:
    """The invoices changed since the end of the as-of day, with their state then: the part of a
    past-date report that reads history (the summary's second branch, the ranking's bound)."""
    return _with_state(queryset.filter(changed_at__gte=_cutoff(as_of, tz)), as_of=as_of, tz=tz)


def _grouped(state: QuerySet[Invoice], aggregates: dict) -> QuerySet:
    return (state.values("currency", k_status=F("status"), k_before=F("h_before"), k_after=F("h_after"),
                         k_negative=ExpressionWrapper(Q(h_out__lt=0), output_field=BooleanField()),
                         k_paid_later=F("h_paid_later"))
            .annotate(**aggregates).order_by())


def _current_branches(state: QuerySet[Invoice], *, row_set: tuple[str, ...], aggregates: dict) -> list[QuerySet]:
    """Invoices in their current state: the states in the index range and, apart (a union
    branch, so that the first stays an index range), the paid invoices with an unapplied credit,
    found by the outstanding index."""
    states = {r for r in row_set if r != CREDIT}
    if CREDIT in row_set:
        states |= {s for s in CREDIT_STATES if s != PAID}
    branches = [_grouped(state.filter(status__in=sorted(states)), aggregates)]
    if CREDIT in row_set:
        branches.append(_grouped(state.filter(status=PAID, outstanding__lt=0), aggregates))
    return branches


def _tables(summary, *, base, group, rows, row_set, buckets, aggregates, top, ranking=None,
            from_rollup: RollupGroups | None = None) -> list[Table]:
    per_currency: dict[str, dict[str, list[Cell]]] = {}
    for r in summary:
        row = row_for(r["k_before"] or r["k_after"] or r["k_status"], r["k_negative"], r["k_paid_later"])
        if row not in row_set:
            continue
        cells = per_currency.setdefault(r["currency"], {}).setdefault(row, _empty_cells(buckets, row))
        for i, cell in enumerate(cells):
            cell.add(r[f"a{i}"], r[f"n{i}"])

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
            _grouped_lines(table, base=base, group=group, aggregates=aggregates, buckets=buckets,
                           rows=rows or "receivable", top=top, totals=totals, ranking=ranking,
                           from_rollup=from_rollup)
        tables.append(table)
    return tables


def _line(key: str, label: str, cells: list[Cell], kind: str, group_value: Any = None) -> Line:
    total = Cell(bucket=ALL, row=cells[0].row if cells else key)
    for c in cells:
        total.add(c.amount, c.count)
    return Line(key=key, label=label, cells=cells, total=total, kind=kind, group_value=group_value)


def _grouped_lines(table: Table, *, base, group, aggregates, buckets, rows, top, totals, ranking=None,
                   from_rollup: RollupGroups | None = None) -> None:
    column = GROUPS[group]
    grouped = (base.filter(currency=table.currency)
               .values(column).annotate(total=Coalesce(Sum("aging_outstanding"), Value(Decimal("0")),
                                                       output_field=_money),
                                        count=Count("currency"), **aggregates))
    groups = _ranked_customers(grouped, ranking=ranking, currency=table.currency, top=top) if ranking else None
    if groups is None and from_rollup is not None:
        groups = _rollup_group_rows(from_rollup, column=column, currency=table.currency, base=base,
                                    aggregates=aggregates, top=top)
    if groups is None:
        groups = list(grouped.order_by("-total", column)[:top])
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


# -- aging by customer from the stored balances -------------------------------------------------

@dataclass(frozen=True)
class Ranking:
    """What bounds a customer's total in the report: its stored balances (`CustomerBalance`) and,
    as of a past date, what its invoices changed since then owed then (`changed`, aging rows)."""

    balances: QuerySet[CustomerBalance]
    changed: QuerySet[Invoice] | None = None


#: Customers read per round from each bound's order, and rounds before the plain GROUP BY takes over.
RANK_BATCH = 100
RANK_ROUNDS = 4


def _balances_bound(row_set: tuple[str, ...], merchant_ids: Collection[int]) -> bool:
    """Whether a customer's stored balance bounds what it owes in these rows: only receivable
    rows (never negative, all in the balance), and only while no sync run of these merchants has
    written invoices whose customers it has not refreshed yet (`customers_pending_since`)."""
    return bool(row_set) and set(row_set) <= set(RECEIVABLE) and not GatewayCredential.objects.filter(
        merchant_id__in=list(merchant_ids), customers_pending_since__isnull=False).exists()


def _by_balance(balances: QuerySet[CustomerBalance]) -> Iterator[tuple[Decimal, int]]:
    """(balance, customer id), largest first, in keyset pages that walk a `balance_sort` index
    backwards (a cursor over the whole order would let PostgreSQL sort every balance first)."""
    page = balances.order_by("-outstanding", "-customer_id").values_list("outstanding", "customer_id")
    rows = list(page[:RANK_BATCH])
    while rows:
        yield from rows
        if len(rows) < RANK_BATCH:
            return
        last, last_id = rows[-1]
        rows = list(page.filter(Q(outstanding__lt=last) | Q(outstanding=last, customer_id__lt=last_id))[:RANK_BATCH])


def _ranked_customers(grouped: QuerySet, *, ranking: Ranking, currency: str, top: int) -> list[dict] | None:
    """The `top` groups of `grouped` (by total, then customer id), reading only some customers.

    A customer's total here is at most its stored balance B in that currency (every invoice in a
    receivable row owes its outstanding, counted in B), plus, as of a past date, C: the exact
    amount its invoices changed since then owed then (those are the ones that may differ from
    now). Customers are read in rounds from two orders, B descending (the `balance_sort`
    indexes) and, for those with changes, B + C descending (one grouped pass over the changed
    invoices), and their exact rows computed on the customer index; once the `top`-th exact
    total exceeds the bound of everybody not yet read (the larger of the two orders' next
    values), nobody unread can enter. None when that did not happen within RANK_ROUNDS rounds,
    or too few customers owe anything: the caller groups every invoice.
    """
    by_balance = _by_balance(ranking.balances.filter(currency=currency))
    # The customers with changes, by their whole bound B + C (B of the others is their bound).
    zero = Value(Decimal("0"))
    by_change = iter(()) if ranking.changed is None else (
        ranking.changed.filter(currency=currency)
        .alias(balance=FilteredRelation("customer__balances", condition=Q(customer__balances__currency=currency)))
        .values("customer_id")
        .annotate(c=Coalesce(Sum("aging_outstanding"), zero, output_field=_money),
                  b=Coalesce(Max("balance__outstanding"), zero, output_field=_money))
        .annotate(bound=ExpressionWrapper(F("c") + F("b"), output_field=_money))
        .filter(bound__gt=0).order_by("-bound", "customer_id").values_list("bound", "customer_id")
        .iterator(chunk_size=RANK_BATCH))
    streams = [by_balance, by_change]
    heads: list[tuple | None] = [next(s, None) for s in streams]
    # Invoices linked to no customer form one group of their own, read first (on the index's NULLs).
    read: dict[Any, dict | None] = {None: next(iter(grouped.filter(customer_id__isnull=True)), None)}
    batch = RANK_BATCH
    for _round in range(RANK_ROUNDS):
        wanted: set[int] = set()
        for i, stream in enumerate(streams):
            taken = 0
            while heads[i] is not None and taken < batch:
                if heads[i][1] not in read and heads[i][1] not in wanted:
                    wanted.add(heads[i][1])
                    taken += 1
                heads[i] = next(stream, None)
        found = {row["customer_id"]: row for row in grouped.filter(customer_id__in=sorted(wanted))}
        read.update((pk, found.get(pk)) for pk in wanted)
        # The order of the plain GROUP BY: total descending, then customer id (no customer last).
        best = sorted((r for r in read.values() if r is not None),
                      key=lambda r: (-r["total"], r["customer_id"] is None, r["customer_id"] or 0))
        unread_bound = max([h[0] for h in heads if h is not None] + [Decimal("0")])
        if len(best) >= top and best[top - 1]["total"] > unread_bound:
            return best[:top]
        if all(h is None for h in heads):
            # Everybody with a balance or a change was read; the rest owe nothing here, and would
            # rank by id among other zero totals: only the plain GROUP BY knows them.
            return None
        batch *= 2
    return None


def _group_labels(group: str, keys: list) -> dict:
    if group == "merchant":
        return {m.pk: m.name for m in Merchant.objects.filter(pk__in=keys)}
    if group == "provider":
        return dict(PROVIDER_CHOICES)
    names = dict(Customer.objects.filter(pk__in=[k for k in keys if k is not None]).values_list("pk", "name"))
    return {k: (names.get(k) or f"Customer {k}") if k is not None else "(no customer)" for k in keys}


def aging_on_hold(*, queryset: QuerySet[Invoice], report: AgingReport, bounds: tuple[int, ...],
                  merchant_ids: Collection[int], now: dt.datetime | None = None) -> AgingReport | None:
    """The part of `report` (made from `queryset`) that is on hold now, as its own ungrouped report
    (None when nothing is held): the aging page's "of which on hold" line per currency. Reads
    only the held invoices (by id)."""
    ids = held_invoice_ids(merchant_ids=merchant_ids, now=now)
    if ids == []:
        return None
    held = queryset.filter(pk__in=ids) if ids is not None else queryset.filter(
        held_invoices_q(now=now, merchant_ids=merchant_ids))
    return invoice_aging(queryset=held, as_of=report.as_of, basis=report.basis, bounds=bounds, tz=report.tz)


def mark_held(report: AgingReport, held: AgingReport | None) -> None:
    """Give each table of `report` its `held` line: the receivable subtotal of the same currency's
    table of `held` (an `aging_on_hold` report, its cells linked already)."""
    lines = {t.currency: line for t in (held.tables if held else []) for line in t.lines if line.key == "receivable"}
    for table in report.tables:
        line = lines.get(table.currency)
        table.held = line if line is not None and line.total.count else None
