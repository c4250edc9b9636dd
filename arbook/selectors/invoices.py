"""The invoice list and detail (pull): filtered, scoped querysets, totals per currency, keyset
pages and export rows.

Pagination is keyset ("seek"), not OFFSET: a page is "the next `size` rows after (sort value, id)
of the last row shown", so page 40,000 costs what page 1 costs, and no COUNT over the table is
needed to page. Links are First / Previous / Next / Last; "Last" walks the same order backwards
from the end, which is how a user reaches the end of a million rows in one click. The total
number of matching rows is part of the totals per currency shown above the table.

Nullable sort keys (due, issued and paid dates, amounts) put unknown values last in both
directions. Each query reads one "segment" — the rows with a value (ordered by value, id, so an
index on the column serves it) or the rows without (ordered by id) — and a page that crosses
from one into the other reads the second with one more query.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DateTimeField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from arbook.models import PROVIDER_CHOICES, GatewayCredential, Invoice, InvoiceEvent
from arbook.params import MAX_TEXT, ParamError, check_id, clip, parse_decimal, parse_int, parse_moment
from arbook.status import STATUSES
from arbook.scoping import get_scoped_or_404, scope, visible_merchants
from arbook.services.exports import copy_csv_chunks, csv_chunks, safe_text_sql
from arbook.status import RECEIVABLE
from arbook.templatetags.money import days_overdue, to_local

SORT_FIELDS: dict[str, str] = {
    "issued_at": "Issued", "due_at": "Due", "paid_at": "Paid", "amount": "Amount",
    "outstanding": "Outstanding", "number": "Invoice", "customer_name": "Customer",
}
DEFAULT_SORT = "-issued_at"
PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
#: Rows a server-side cursor hands over per round trip during an export.
EXPORT_CHUNK = 5000
#: What the list reads per row (never `raw`, which can be large).
LIST_COLUMNS = ("id", "merchant_id", "credential_id", "provider", "external_id", "number", "customer_name",
                "customer_email", "currency", "amount", "outstanding", "status", "issued_at", "due_at", "paid_at",
                "merchant__name", "merchant__timezone")
HISTORY_LIMIT = 500
PROVIDER_LABELS = dict(PROVIDER_CHOICES)
STATUS_LABELS = {k: v.label for k, v in STATUSES.items()}


# -- scoped inputs ---------------------------------------------------------------------------

def merchant_choices(*, user) -> list[tuple[int, str, str]]:
    """(id, name, timezone) of the merchants `user` may see: the filter's choices and zones."""
    return list(visible_merchants(user).order_by("name", "id").values_list("id", "name", "timezone"))


def credential_choices(*, user) -> list[tuple[int, str]]:
    """(id, "Merchant · Gateway · label") of the user's gateway accounts (small: a few per merchant)."""
    rows = (scope(GatewayCredential.objects.all(), user)
            .order_by("merchant__name", "provider", "label", "id")
            .values_list("id", "merchant__name", "provider", "label"))
    return [(pk, " · ".join(x for x in (m, PROVIDER_LABELS.get(p, p), label) if x)) for pk, m, p, label in rows]


def scoped_invoices(*, user, merchant_ids: Iterable[int] | None = None) -> QuerySet[Invoice]:
    """The invoices `user` may see (`merchant_ids`: see `scope`)."""
    return scope(Invoice.objects.all(), user, merchant_ids=merchant_ids)


def list_queryset(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """What a list row needs in one query: the merchant (name, zone) joined, the payload left out."""
    return queryset.select_related("merchant").only(*LIST_COLUMNS)


# -- sorting and keyset pages ----------------------------------------------------------------

@dataclass(frozen=True)
class Sort:
    field: str
    descending: bool

    @classmethod
    def parse(cls, text: str | None) -> Sort | None:
        text = (text or "").strip()
        field = text.lstrip("-")
        if field not in SORT_FIELDS or text.count("-") > 1:
            return None
        return cls(field, text.startswith("-"))

    @property
    def param(self) -> str:
        return ("-" if self.descending else "") + self.field

    @property
    def nullable(self) -> bool:
        return Invoice._meta.get_field(self.field).null


DEFAULT = Sort.parse(DEFAULT_SORT)
VALUE, NULL = "v", "n"


@dataclass(frozen=True)
class Cursor:
    sort: str
    segment: str  # VALUE or NULL
    value: Any
    pk: int

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else (
            None if self.value is None else str(self.value))
        raw = json.dumps([self.sort, self.segment, value, self.pk], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, sort: Sort) -> Cursor | None:
        """The cursor in `token`, or None when it is malformed, belongs to another sort order or
        carries a value its column cannot hold (a URL is user input: NaN, Infinity, 1e999999, a
        moment whose UTC offset overflows the year, an id past 2**63, a NUL character).

        Each value is read by `arbook.params` with the bounds of its column; a moment comes back
        in UTC (PostgreSQL takes offsets up to ±15:59 only).
        """
        if len(token) > MAX_TEXT:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            # NaN and Infinity are not JSON, but Python's reader accepts them: refuse them here.
            sort_param, segment, value, pk = json.loads(raw, parse_constant=_no_constant)
            if sort_param != sort.param or segment not in (VALUE, NULL):
                return None
            pk = check_id(pk)
            if segment == NULL:
                return cls(sort_param, NULL, None, pk) if sort.nullable else None
            field = Invoice._meta.get_field(sort.field)
            kind = field.get_internal_type()
            if kind == "DateTimeField":
                value = parse_moment(value)
            elif kind == "DecimalField":
                if not isinstance(value, str):
                    return None
                value = parse_decimal(value, max_digits=field.max_digits, decimal_places=field.decimal_places)
            elif not isinstance(value, str) or "\x00" in value or len(value) > (field.max_length or 0):
                return None
            return cls(sort_param, VALUE, value, pk)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
            return None  # ParamError and json.JSONDecodeError are ValueErrors

    @classmethod
    def of(cls, row: Invoice, sort: Sort) -> Cursor:
        value = getattr(row, sort.field)
        if value is None and sort.nullable:
            return cls(sort.param, NULL, None, row.pk)
        return cls(sort.param, VALUE, value, row.pk)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _segments(sort: Sort, reverse: bool) -> list[str]:
    segments = [VALUE, NULL] if sort.nullable else [VALUE]
    return segments[::-1] if reverse else segments


def _segment_query(qs: QuerySet, sort: Sort, segment: str, *, reverse: bool, after: Cursor | None,
                   fence: bool = False) -> QuerySet:
    """One segment in traversal order, strictly after `after` when given.

    `fence`: order by `COALESCE(col, col)` (same order, but no index matches it), so PostgreSQL
    reads the rows the filters select through their own index and sorts the top of them, instead
    of walking the sort column's index and hoping to meet matches early. See `needs_fence`.
    """
    down = sort.descending != reverse  # walking the values downwards?
    f = sort.field
    key = Coalesce(F(f), F(f)) if fence and connection.vendor == "postgresql" else F(f)
    if segment == NULL:
        qs = qs.filter(**{f"{f}__isnull": True})
        if after is not None:
            qs = qs.filter(pk__lt=after.pk) if down else qs.filter(pk__gt=after.pk)
        return qs.order_by("-pk" if down else "pk")
    if sort.nullable:
        qs = qs.filter(**{f"{f}__isnull": False})
    if after is not None:
        v = after.value
        # `f >= v` bounds the index range; the OR only drops the ties already shown.
        if down:
            qs = qs.filter(Q(**{f"{f}__lte": v}) & (Q(**{f"{f}__lt": v}) | Q(pk__lt=after.pk)))
        else:
            qs = qs.filter(Q(**{f"{f}__gte": v}) & (Q(**{f"{f}__gt": v}) | Q(pk__gt=after.pk)))
    return qs.order_by(key.desc() if down else key.asc(), "-pk" if down else "pk")


def _walk(qs: QuerySet, sort: Sort, *, after: Cursor | None, reverse: bool, limit: int, fence: bool = False) -> list:
    """Up to `limit` rows after `after` (None: from the start of the walk), forwards or backwards."""
    segments = _segments(sort, reverse)
    start = segments.index(after.segment) if after is not None else 0
    rows: list = []
    for i in range(start, len(segments)):
        need = limit - len(rows)
        if need <= 0:
            break
        page = _segment_query(qs, sort, segments[i], reverse=reverse, after=after if i == start else None, fence=fence)
        if fence:
            # Choose the page's ids first, reading only the filter and sort columns (which a
            # covering index can answer without the table: 42k matches of a month of due dates
            # sat on 27k table pages), then read just those rows.
            page = _segment_query(qs.filter(pk__in=page.values("pk")[:need]), sort, segments[i], reverse=reverse,
                                  after=None, fence=True)
        rows += list(page[:need])
    return rows


@dataclass
class KeysetPage:
    rows: list
    size: int
    sort: Sort
    next_cursor: str | None
    previous_cursor: str | None
    is_last: bool = False

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def keyset_page(qs: QuerySet, *, sort: Sort, size: int, after: Cursor | None = None, before: Cursor | None = None,
                last: bool = False, fence: bool = False) -> KeysetPage:
    """One page of `qs` in `sort` order (ties broken by id): after a cursor, before one, or the last."""
    if before is not None or last:
        rows = _walk(qs, sort, after=before, reverse=True, limit=size + 1, fence=fence)
        more_before = len(rows) > size
        if before is not None and not more_before:
            return keyset_page(qs, sort=sort, size=size, fence=fence)  # reached the start: a full first page
        rows = rows[:size][::-1]
        return KeysetPage(rows, size, sort,
                          next_cursor=None if last else Cursor.of(rows[-1], sort).encode() if rows else None,
                          previous_cursor=Cursor.of(rows[0], sort).encode() if more_before and rows else None,
                          is_last=last)
    rows = _walk(qs, sort, after=after, reverse=False, limit=size + 1, fence=fence)
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, size, sort,
                      next_cursor=Cursor.of(rows[-1], sort).encode() if more else None,
                      previous_cursor=Cursor.of(rows[0], sort).encode() if after is not None and rows else None,
                      is_last=not more)


# -- totals ----------------------------------------------------------------------------------

@dataclass
class CurrencyTotal:
    currency: str
    count: int
    amount: Decimal  # sum of the known amounts
    amount_unknown: int  # invoices whose amount the gateway does not give (Faspay's list)
    outstanding: Decimal
    outstanding_unknown: int


def invoice_totals(queryset: QuerySet[Invoice], *, outstanding: str = "outstanding") -> list[CurrencyTotal]:
    """Count, amount and outstanding of `queryset` per currency, in one aggregate query.

    Never summed across currencies. Unknown amounts are counted, not treated as zero, so the page
    can say "3 invoices without an amount". For an aging drill-down pass
    `outstanding="aging_outstanding"`: what each invoice owed on the as-of date, as the cell sums.
    """
    rows = (queryset.order_by().values("currency")
            .annotate(n=Count("pk"), amount_sum=Sum("amount"), amount_known=Count("amount"),
                      outstanding_sum=Sum(outstanding), outstanding_known=Count(outstanding))
            .order_by("currency"))
    return [CurrencyTotal(currency=r["currency"], count=r["n"], amount=r["amount_sum"] or Decimal(0),
                          amount_unknown=r["n"] - r["amount_known"], outstanding=r["outstanding_sum"] or Decimal(0),
                          outstanding_unknown=r["n"] - r["outstanding_known"])
            for r in rows]


# -- export ----------------------------------------------------------------------------------

EXPORT_COLUMNS: list[tuple[str, str]] = [
    ("merchant__name", "Merchant"), ("provider", "Gateway"), ("credential__label", "Gateway account"),
    ("number", "Invoice number"), ("external_id", "External id"), ("customer_name", "Customer"),
    ("customer_email", "Customer e-mail"), ("customer_ref", "Customer reference"), ("currency", "Currency"),
    ("amount", "Amount"), ("outstanding", "Outstanding"), ("paid_amount", "Paid amount"), ("status", "Status"),
    ("provider_status", "Gateway status"), ("issued_at", "Issued"), ("due_at", "Due"), ("paid_at", "Paid"),
    ("payment_channel", "Payment channel"), ("checkout_url", "Checkout link"), ("merchant__timezone", "Time zone"),
    ("id", "arbook id"),
]


def export_header(*, owed_then: bool = False) -> list[str]:
    header = [label for _, label in EXPORT_COLUMNS] + ["Days overdue"]
    return header + ["Owed on the as-of date"] if owed_then else header


def export_rows(queryset: QuerySet[Invoice], *, sort: Sort, now: datetime | None = None,
                owed_then: bool = False) -> Iterator[tuple]:
    """Every row of `queryset` in the list's order, lazily, with dates in the merchant's zone.

    Reads through a server-side cursor (`iterator(chunk_size=...)`) over `values_list`, so memory
    holds one chunk whatever the row count. On PostgreSQL the read runs in a transaction so the
    cursor streams (outside one, Django declares it WITH HOLD, which materializes the whole result
    first); SQLite streams without one (a transaction there would block the sync's writes).
    """
    now = now or timezone.now()
    fields = [f for f, _ in EXPORT_COLUMNS] + (["aging_outstanding"] if owed_then else [])
    i_tz = fields.index("merchant__timezone")
    i_status, i_issued, i_due, i_paid = (fields.index(f) for f in ("status", "issued_at", "due_at", "paid_at"))
    i_provider = fields.index("provider")

    def converted(rows):
        for r in rows:
            r = list(r)
            tz = r[i_tz]
            overdue = days_overdue(status=r[i_status], due_at=r[i_due], tz=tz, as_of=now)
            for i in (i_issued, i_due, i_paid):
                r[i] = to_local(r[i], tz)
            r[i_provider] = PROVIDER_LABELS.get(r[i_provider], r[i_provider])
            r[i_status] = STATUS_LABELS.get(r[i_status], r[i_status])
            if owed_then:
                extra = r.pop()
                yield (*r, overdue, extra)
            else:
                yield (*r, overdue)

    def segments():
        for segment in _segments(sort, reverse=False):
            qs = _segment_query(queryset, sort, segment, reverse=False, after=None)
            yield from qs.values_list(*fields).iterator(chunk_size=EXPORT_CHUNK)

    if connection.vendor == "postgresql":
        with transaction.atomic():
            yield from converted(segments())
    else:
        yield from converted(segments())


class _LocalText(Func):
    arg_joiner = " AT TIME ZONE "
    template = "to_char(%(expressions)s, 'YYYY-MM-DD HH24:MI:SS')"
    output_field = CharField()


class _LocalDay(Func):
    arg_joiner = " AT TIME ZONE "
    template = "(%(expressions)s)::date"
    output_field = DateField()


def export_csv_copy(queryset: QuerySet[Invoice], *, sort: Sort, now: datetime | None = None,
                    owed_then: bool = False) -> Iterator[bytes]:
    """The same CSV as `export_rows` + `csv_chunks`, written by PostgreSQL (COPY): ~20x faster.

    Every column is computed in SQL exactly as the Python path does it (labels, the merchant's
    wall-clock time, days overdue in the merchant's calendar, formula neutralization), and the
    tests run both paths against the same expectations.
    """
    now = now or timezone.now()
    tz = F("merchant__timezone")
    text = {"merchant__name", "credential__label", "number", "external_id", "customer_name", "customer_email",
            "customer_ref", "currency", "provider_status", "payment_channel", "checkout_url"}
    columns = []
    for path, _ in EXPORT_COLUMNS:
        if path in text:
            columns.append(safe_text_sql(path))
        elif path == "provider":
            columns.append(Case(*[When(provider=k, then=Value(v)) for k, v in PROVIDER_LABELS.items()],
                                default=F("provider"), output_field=CharField()))
        elif path == "status":
            columns.append(Case(*[When(status=k, then=Value(v)) for k, v in STATUS_LABELS.items()],
                                default=F("status"), output_field=CharField()))
        elif path in ("issued_at", "due_at", "paid_at"):
            columns.append(_LocalText(F(path), tz))
        else:
            columns.append(F(path))
    columns.append(Case(When(Q(status__in=RECEIVABLE, due_at__lt=now),
                             then=ExpressionWrapper(_LocalDay(Value(now, DateTimeField()), tz) - _LocalDay(F("due_at"), tz),
                                                    output_field=IntegerField())),
                        default=None, output_field=IntegerField()))
    if owed_then:
        columns.append(F("aging_outstanding"))
    names = {f"c{i:02d}": expr for i, expr in enumerate(columns)}

    def querysets():
        for segment in _segments(sort, reverse=False):
            qs = _segment_query(queryset, sort, segment, reverse=False, after=None)
            yield qs.annotate(**names).values_list(*names)

    return copy_csv_chunks(querysets(), export_header(owed_then=owed_then))


# -- detail ----------------------------------------------------------------------------------

def invoice_for_user(*, user, pk: int) -> Invoice:
    """The invoice if `user` may see it; 404 otherwise (never 403: that would confirm it exists)."""
    return get_scoped_or_404(Invoice.objects.select_related("merchant", "credential"), user, pk=pk)


def invoice_history(*, invoice: Invoice, limit: int = HISTORY_LIMIT) -> list[InvoiceEvent]:
    """The newest `limit` events, newest first, with the sync run that saw each."""
    return list(invoice.events.select_related("sync_run").order_by("-seen_at", "-id")[:limit])


# -- the list page as a whole ----------------------------------------------------------------

NON_FILTER_PARAMS = {"sort", "size", "after", "before", "last", "_export", "_totals"}


@dataclass
class InvoiceList:
    """Everything the list page (or its export) needs, built from the query string."""

    filterset: Any
    queryset: QuerySet[Invoice]
    sort: Sort
    size: int
    merchants: list
    notices: list[str]
    after: Cursor | None = None
    before: Cursor | None = None
    last: bool = False
    now: datetime | None = None

    @property
    def has_filter_errors(self) -> bool:
        return bool(self.filterset.form.errors)

    @property
    def drilldown(self) -> dict | None:
        return self.filterset.drilldown

    @property
    def is_filtered(self) -> bool:
        data = self.filterset.data
        return any(v for k in data if k not in NON_FILTER_PARAMS for v in data.getlist(k))

    def page(self) -> KeysetPage:
        rows_qs = list_queryset(self.queryset)
        if self.drilldown:
            rows_qs = rows_qs.annotate(owed_then=F("aging_outstanding"))
        return keyset_page(rows_qs, sort=self.sort, size=self.size, after=self.after, before=self.before,
                           last=self.last, fence=self.needs_fence)

    @property
    def needs_fence(self) -> bool:
        """Sort the matches rather than walk the sort column's index (see `_segment_query`).

        When: a date range on another column than the sort key, or a substring search. Due,
        issue and paid dates move together, so "due in January 2025, newest issued first" made
        PostgreSQL walk the issue-date index through every newer invoice to meet the first match
        (6 s at a million rows, measured); a search whose matches the planner overestimates did
        the same (0.35-3 s). Reading the matches through the filter's own index (date B-tree,
        trigram GIN) and sorting them costs in proportion to the number of matches instead:
        tens of ms for a month or a customer, up to ~1 s for a search matching half the table.
        """
        columns = self.filterset.date_range_columns()
        return bool(columns - {self.sort.field}) or self.filterset.substring_search

    def totals(self) -> list[CurrencyTotal]:
        return invoice_totals(self.queryset, outstanding="aging_outstanding" if self.drilldown else "outstanding")

    def export_rows(self) -> Iterator[tuple]:
        return export_rows(self.queryset, sort=self.sort, now=self.now, owed_then=bool(self.drilldown))

    def csv_chunks(self) -> Iterator[bytes]:
        """The CSV bytes: written by PostgreSQL (COPY) when it is the database, else row by row."""
        if connection.vendor == "postgresql":
            return export_csv_copy(self.queryset, sort=self.sort, now=self.now, owed_then=bool(self.drilldown))
        return csv_chunks(self.export_rows(), self.export_header())

    def export_header(self) -> list[str]:
        return export_header(owed_then=bool(self.drilldown))


def invoice_list(*, user, params, now: datetime | None = None) -> InvoiceList:
    """Parse the list's query string: filters (InvoiceFilter), sort, page size and page cursor.

    Nothing here raises on bad input: a malformed or out-of-range value is left out and explained
    in `notices` (and in the filter form's errors); every value is read by `arbook.params`.
    """
    from arbook.filters import InvoiceFilter  # filters import the aging selector lazily; keep load order flat

    now = now or timezone.now()
    notices: list[str] = []
    merchants = merchant_choices(user=user)
    filterset = InvoiceFilter(params, scoped_invoices(user=user, merchant_ids=[m[0] for m in merchants]),
                              merchants=merchants,
                              credentials=credential_choices(user=user), now=now)
    queryset = filterset.qs
    notices += filterset.error_messages() + filterset.notices

    sort_text = params.get("sort") or DEFAULT_SORT
    sort = Sort.parse(sort_text)
    if sort is None:
        notices.append(f"Cannot sort by “{clip(sort_text)}”; sorted by issue date, newest first.")
        sort = DEFAULT
    size_text = params.get("size") or str(DEFAULT_PAGE_SIZE)
    try:
        size = parse_int(size_text, min_value=min(PAGE_SIZES), max_value=max(PAGE_SIZES))
    except ParamError:
        size = None
    if size not in PAGE_SIZES:
        notices.append(f"Page size must be one of {', '.join(map(str, PAGE_SIZES))}; showing {DEFAULT_PAGE_SIZE}.")
        size = DEFAULT_PAGE_SIZE
    after = before = None
    for name in ("after", "before"):
        token = params.get(name)
        if token:
            cursor = Cursor.decode(token, sort)
            if cursor is None:
                notices.append("That page link does not fit the current sort order; showing the first page.")
            elif name == "after":
                after = cursor
            else:
                before = cursor
    if after and before:
        before = None
    last = params.get("last") in ("1", "true", "on") and not (after or before)
    return InvoiceList(filterset=filterset, queryset=queryset, sort=sort, size=size, merchants=merchants,
                       notices=notices, after=after, before=before, last=last, now=now)
