"""The invoice list's filters (django-filter): every filter is a GET parameter, so a view is a URL.

Parameters (all optional, combinable):
  q                  search: number, customer name, e-mail, external id (substring, case-insensitive,
                     from 3 characters; shorter text matches a number or external id exactly)
  customer           exact customer name (the aging report's "group by customer" links use it)
  merchant, credential, provider, currency
  status             normalized state; repeat it for several (`status=open&status=failed`)
  overdue            `1`: only overdue (a receivable state whose due date has passed)
  due_from/due_to, issued_from/issued_to, paid_from/paid_to
                     calendar days (YYYY-MM-DD), inclusive, in each invoice's merchant time zone,
                     from 1900-01-01 to 2999-12-31 (`arbook.params`: the range every page accepts)
  outstanding_min/outstanding_max
                     inclusive, in the invoice's own currency (finite, as precise as the column)
  as_of, basis, bucket, row, tz
                     an aging cell's drill-down; delegated to `arbook.selectors.aging.aging_drilldown`
                     so that the list holds exactly the invoices the cell sums

The rest of the query string says where the list starts and how it is shown: `sort` (a column of
`SORT_FIELDS`, `-` for descending), `size` (one of `PAGE_SIZES`), `after` / `before` (a page
cursor) and `last`; `invoice_list` reads it all into an `InvoiceList`.

A malformed, out-of-range or unknown value is not applied: the form reports it and the page says
which filter was left out (never a 500). Dates, amounts and zones are read by the fields of
`arbook.params`, the one place that bounds what a URL may ask for. The merchant and credential
choices are the user's own, so a foreign id is simply "not one of the available choices".
"""
from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import django_filters as df
from django import forms
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from arbook import params
from arbook.models import PROVIDER_CHOICES, Invoice
from arbook.params import clip
from arbook.selectors.aging import aging_drilldown
from arbook.selectors.collections import held_filter
from arbook.selectors.customers import suspected_duplicates
from arbook.selectors.invoices import (
    DEFAULT,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SORT,
    PAGE_SIZES,
    CurrencyTotal,
    credential_choices,
    invoice_sort,
    invoice_totals,
    list_queryset,
    merchant_choices,
    scoped_invoices,
)
from arbook.selectors.paginator import Cursor, KeysetPage, Sort, keyset_page, read_position
from arbook.status import RECEIVABLE, InvoiceStatus
from arbook.templatetags.money import CURRENCY_LOCALES

#: Below this many characters the search box matches identifiers exactly (a substring search of
#: one or two characters cannot use a trigram index and matches half the table anyway).
SEARCH_MIN_SUBSTRING = 3
DRILLDOWN_FIELDS = ("as_of", "basis", "bucket", "row", "tz")
#: (parameter, input type) of the list's filter form, in display order (besides the search box,
#: the statuses and "overdue"); labels and choices come from the filters.
FORM_FIELDS = [
    ("customer", "text"), ("merchant", "select"), ("credential", "select"), ("provider", "select"),
    ("currency", "text"), ("due_from", "date"), ("due_to", "date"), ("issued_from", "date"), ("issued_to", "date"),
    ("paid_from", "date"), ("paid_to", "date"), ("outstanding_min", "number"), ("outstanding_max", "number"),
]


class CurrencyField(forms.RegexField):
    def __init__(self, **kwargs):
        super().__init__(regex=r"^[A-Za-z]{3}$", error_messages={"invalid": "Use a 3-letter currency code, like IDR."},
                         **kwargs)

    def clean(self, value):
        value = super().clean(value)
        return value.upper() if value else value


class CurrencyFilter(df.CharFilter):
    field_class = CurrencyField


class ZoneFilter(df.CharFilter):
    field_class = params.ZoneField


class DateFilter(df.DateFilter):
    """A calendar day within the range every page accepts (`arbook.params.DateField`)."""

    field_class = params.DateField


class IdFilter(df.NumberFilter):
    """A row id (a positive whole number that fits the id column)."""

    field_class = params.IntegerField

    def filter(self, qs, value):
        if value is not None and value < 1:
            return qs.none()
        return super().filter(qs, value)


class MoneyFilter(df.NumberFilter):
    """An amount as precise as the money columns: finite, 16 digits before the point, 2 after."""

    field_class = params.MoneyField


def _date_input():
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _noop(queryset, name, value):
    """The drill-down parameters are applied together in `filter_queryset`."""
    return queryset


class InvoiceFilter(df.FilterSet):
    q = df.CharFilter(method="filter_search", label="Search", max_length=100,
                      help_text="Invoice number, customer name, e-mail or external id")
    customer = df.CharFilter(field_name="customer_name", lookup_expr="exact", label="Customer (exact name)",
                             max_length=255)
    #: One customer across gateways (the aging report's "group by customer" links and the customer pages).
    customer_id = IdFilter(field_name="customer_id", label="Customer")
    double_billing = df.BooleanFilter(method="filter_double_billing", label="Possible double billing",
                                      widget=forms.CheckboxInput)
    merchant = df.ChoiceFilter(field_name="merchant_id", label="Merchant", empty_label="All merchants")
    credential = df.ChoiceFilter(field_name="credential_id", label="Gateway account", empty_label="All accounts")
    provider = df.ChoiceFilter(choices=PROVIDER_CHOICES, label="Gateway", empty_label="All gateways")
    # distinct=False: no join can duplicate a row, and DISTINCT would cost a sort at a million rows.
    status = df.MultipleChoiceFilter(choices=InvoiceStatus.choices, label="Status", distinct=False,
                                     widget=forms.CheckboxSelectMultiple)
    overdue = df.BooleanFilter(method="filter_overdue", label="Overdue only", widget=forms.CheckboxInput)
    #: Holds and disputes (`arbook.models.Hold`): shown by default, marked in the aging report.
    held = df.ChoiceFilter(method="filter_held", label="On hold", empty_label="With invoices on hold",
                           choices=[("hide", "Without invoices on hold"), ("only", "Only invoices on hold")])
    currency = CurrencyFilter(label="Currency", max_length=3)
    due_from = DateFilter(method="filter_local_day", label="Due from", widget=_date_input())
    due_to = DateFilter(method="filter_local_day", label="Due to", widget=_date_input())
    issued_from = DateFilter(method="filter_local_day", label="Issued from", widget=_date_input())
    issued_to = DateFilter(method="filter_local_day", label="Issued to", widget=_date_input())
    paid_from = DateFilter(method="filter_local_day", label="Paid from", widget=_date_input())
    paid_to = DateFilter(method="filter_local_day", label="Paid to", widget=_date_input())
    outstanding_min = MoneyFilter(field_name="outstanding", lookup_expr="gte", label="Outstanding from",
                                      widget=forms.NumberInput(attrs={"step": "any"}))
    outstanding_max = MoneyFilter(field_name="outstanding", lookup_expr="lte", label="Outstanding to",
                                      widget=forms.NumberInput(attrs={"step": "any"}))
    # The aging report's drill-down (see module docstring).
    as_of = DateFilter(method=_noop, label="Aging as of", widget=_date_input())
    basis = df.ChoiceFilter(method=_noop, choices=[("due", "Due date"), ("issued", "Issue date")], label="Aging basis")
    bucket = df.CharFilter(method=_noop, label="Aging bucket", max_length=20)
    row = df.CharFilter(method=_noop, label="Aging row", max_length=32)
    tz = ZoneFilter(method=_noop, label="Aging time zone", max_length=64)

    DATE_FIELDS = {"due": "due_at", "issued": "issued_at", "paid": "paid_at"}

    @classmethod
    def for_user(cls, data, *, user, request=None, now=None) -> InvoiceFilter:
        """The FilterSet over the invoices `user` may see, with the user's merchants and accounts as choices."""
        merchants = merchant_choices(user=user)
        return cls(data, scoped_invoices(user=user, merchant_ids=[m[0] for m in merchants]), request=request,
                   merchants=merchants, credentials=credential_choices(user=user), now=now)

    def __init__(self, data=None, queryset=None, *, request=None, merchants=(), credentials=(), now=None, **kwargs):
        """`merchants`: (id, name, timezone) the user may see; `credentials`: (id, label) likewise.

        Both are small, already-scoped lists (one query each), so validating a choice costs no query.
        """
        super().__init__(data, queryset, request=request, **kwargs)
        self.merchants = list(merchants)
        self.filters["merchant"].extra["choices"] = [(str(m[0]), m[1]) for m in self.merchants]
        self.filters["credential"].extra["choices"] = [(str(c[0]), c[1]) for c in credentials]
        self.now = now
        self.notices: list[str] = []
        self.drilldown: dict | None = None
        #: Set when the search box ran a substring search (trigram-indexed on PostgreSQL).
        self.substring_search = False

    # -- helpers ---------------------------------------------------------------------------

    @property
    def zone_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for pk, _name, tz in self.merchants:
            groups[tz or "Asia/Jakarta"].append(pk)
        return groups

    def _local_moment_q(self, field: str, lookup: str, day: date) -> Q:
        """`field <lookup> (start of `day` in the merchant's zone)`, one branch per zone in use."""
        groups = self.zone_groups
        if not groups:
            return Q(pk__in=[])

        def moment(tz: str) -> datetime:
            return datetime.combine(day, time.min).replace(tzinfo=zoneinfo.ZoneInfo(tz))

        if len(groups) == 1:
            (tz,) = groups
            return Q(**{f"{field}__{lookup}": moment(tz)})
        q = Q()
        for tz, ids in groups.items():
            q |= Q(merchant_id__in=ids, **{f"{field}__{lookup}": moment(tz)})
        # The exact rule is per zone (an OR no index range can serve); the loosest of the zones'
        # bounds, ANDed beside it, is a plain range that the column's index can.
        moments = [moment(tz) for tz in groups]
        loose = min(moments) if lookup in ("gte", "gt") else max(moments)
        return Q(**{f"{field}__{lookup}": loose}) & q

    # -- filter methods --------------------------------------------------------------------

    def filter_local_day(self, queryset: QuerySet, name: str, value: date) -> QuerySet:
        prefix, _, end = name.partition("_")
        field = self.DATE_FIELDS[prefix]
        if end == "from":
            return queryset.filter(self._local_moment_q(field, "gte", value))
        return queryset.filter(self._local_moment_q(field, "lt", value + timedelta(days=1)))

    def filter_overdue(self, queryset: QuerySet, name: str, value) -> QuerySet:
        if not value:
            return queryset
        return queryset.filter(status__in=RECEIVABLE, due_at__lt=self.now or timezone.now())

    def filter_held(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value not in ("hide", "only"):
            return queryset
        return held_filter(queryset, merchant_ids=[m[0] for m in self.merchants], show=value, now=self.now)

    def filter_double_billing(self, queryset: QuerySet, name: str, value) -> QuerySet:
        """Open invoices of one customer with the same amount, issued within a week of each other."""
        return suspected_duplicates(queryset) if value else queryset

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        text = (value or "").strip()
        if not text:
            return queryset
        if len(text) < SEARCH_MIN_SUBSTRING:
            self.notices.append(f"Searching for “{text}” matches invoice numbers and external ids exactly; "
                                f"type at least {SEARCH_MIN_SUBSTRING} characters to search names and e-mails.")
            return queryset.filter(Q(number=text) | Q(external_id=text))
        self.substring_search = True
        # icontains compiles to UPPER(col::text) LIKE UPPER('%text%') on PostgreSQL, which the
        # trigram GIN indexes of migration `invoices_search_indexes` serve (see its docstring).
        return queryset.filter(Q(number__icontains=text) | Q(customer_name__icontains=text)
                               | Q(customer_email__icontains=text) | Q(external_id__icontains=text))

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        if any(data.get(f) for f in ("as_of", "bucket", "row")) and not any(
                f in self.form.errors for f in DRILLDOWN_FIELDS):
            try:
                queryset = aging_drilldown(queryset, as_of=data.get("as_of"), basis=data.get("basis") or "due",
                                           bucket=data.get("bucket") or "", row=data.get("row") or "",
                                           tz=data.get("tz") or None)
            except ValueError as exc:  # AgingParameterError: its message is written for the user
                self.notices.append(f"The aging selection was not applied: {exc}")
            else:
                self.drilldown = {k: data.get(k) for k in DRILLDOWN_FIELDS}
        return queryset

    def date_range_columns(self) -> set[str]:
        """The date columns a range filter (or an aging bucket) restricts in this request."""
        data = self.form.cleaned_data if self.is_bound and hasattr(self.form, "cleaned_data") else {}
        columns = {self.DATE_FIELDS[name.split("_")[0]] for name in data
                   if data.get(name) and name.split("_")[0] in self.DATE_FIELDS and name.endswith(("_from", "_to"))}
        if self.drilldown and self.drilldown.get("bucket") not in (None, "", "all"):
            columns.add("issued_at" if self.drilldown.get("basis") == "issued" else "due_at")
        return columns

    # -- what the page says about bad parameters ---------------------------------------------

    def error_messages(self) -> list[str]:
        """One readable line per filter that was left out because its value is malformed."""
        out = []
        for name, errors in self.form.errors.items():
            label = self.form.fields[name].label if name in self.form.fields else name
            out.append(f"{label}: {' '.join(str(e) for e in errors)} This filter was not applied.")
        return out

    # -- the filter form as the list page writes it ------------------------------------------

    def form_context(self) -> dict:
        """The filter form's fields as plain values: written out in the template, which is several
        times faster than rendering each widget through Django's form templates."""
        data, errors = self.data, self.form.errors
        fields = []
        for name, kind in FORM_FIELDS:
            extra = self.filters[name].extra
            choices = None
            if kind == "select":
                choices = extra["choices"]
                choices = choices() if callable(choices) else choices
            fields.append({"name": name, "label": self.filters[name].label, "type": kind,
                           "value": (data.get(name) or "")[:200], "choices": choices,
                           "empty": extra.get("empty_label", "") if kind == "select" else "",
                           "errors": errors.get(name, ()), "list": "currencies" if name == "currency" else ""})
        return {
            "text_fields": fields,
            "q_value": (data.get("q") or "")[:100],
            "status_choices": InvoiceStatus.choices,
            "selected_status": set(data.getlist("status")),
            "status_errors": errors.get("status", ()),
            "overdue_checked": data.get("overdue") not in (None, "", "0", "false"),
            "double_billing_checked": data.get("double_billing") not in (None, "", "0", "false"),
            "currencies": sorted(CURRENCY_LOCALES),
            "drilldown_hidden": [(k, data.get(k)) for k in (*DRILLDOWN_FIELDS, "customer_id") if data.get(k)],
        }


# -- the list page as a whole ----------------------------------------------------------------

NON_FILTER_PARAMS = {"sort", "size", "after", "before", "last", "_export", "_totals"}


class FilteredListMixin:
    """What a keyset list page (invoices, customers) says about its FilterSet `filterset`."""

    filterset: df.FilterSet

    @property
    def merchants(self) -> list:
        return self.filterset.merchants

    @property
    def has_filter_errors(self) -> bool:
        return bool(self.filterset.form.errors)

    @property
    def is_filtered(self) -> bool:
        data = self.filterset.data
        return any(v for k in data if k not in NON_FILTER_PARAMS for v in data.getlist(k))


@dataclass
class InvoiceList(FilteredListMixin):
    """Everything the list page (or its export) needs, read from the query string."""

    filterset: InvoiceFilter
    queryset: QuerySet[Invoice]
    sort: Sort
    size: int
    notices: list[str]
    after: Cursor | None = None
    before: Cursor | None = None
    last: bool = False
    now: datetime | None = None

    @property
    def drilldown(self) -> dict | None:
        return self.filterset.drilldown

    def page(self) -> KeysetPage:
        rows_qs = list_queryset(self.queryset)
        if self.drilldown:
            rows_qs = rows_qs.annotate(owed_then=F("aging_outstanding"))
        # Filtered: the page's ids first (`_walk`), so the filters are tested on index entries
        # where a covering index has their columns; unfiltered, the sort index's first rows are the page.
        return keyset_page(rows_qs, sort=self.sort, size=self.size, after=self.after, before=self.before,
                           last=self.last, fence=self.needs_fence, ids_first=self.is_filtered)

    @property
    def needs_fence(self) -> bool:
        """Sort the matches rather than walk the sort column's index (see `segment_query`).

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


def invoice_list(*, user, params, now: datetime | None = None) -> InvoiceList:
    """Read the list's query string: filters (InvoiceFilter), sort, page size and page cursor.

    Nothing here raises on bad input: a malformed or out-of-range value is left out and explained
    in `notices` (and in the filter form's errors); every value is read by `arbook.params`.
    """
    now = now or timezone.now()
    notices: list[str] = []
    filterset = InvoiceFilter.for_user(params, user=user, now=now)
    queryset = filterset.qs
    notices += filterset.error_messages() + filterset.notices

    sort_text = params.get("sort") or DEFAULT_SORT
    sort = invoice_sort(sort_text)
    if sort is None:
        notices.append(f"Cannot sort by “{clip(sort_text)}”; sorted by issue date, newest first.")
        sort = DEFAULT
    position = read_position(params, sort=sort, sizes=PAGE_SIZES, default_size=DEFAULT_PAGE_SIZE, notices=notices)
    return InvoiceList(filterset=filterset, queryset=queryset, sort=sort, size=position.size, notices=notices,
                       after=position.after, before=position.before, last=position.last, now=now)
