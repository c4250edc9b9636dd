"""The customer list's filters (django-filter) and query string, with the invoice list's conventions.

Parameters (all optional, combinable):
  q                  search: part of the name (from 3 characters), or an identity: part of an
                     e-mail or reference, or a phone in any form (read as E.164 in the
                     merchants' countries, so "0812 3456 7890" finds "+6281234567890")
  provider           has invoices on this gateway
  currency           owes something in this currency (a `CustomerBalance` of it)
  overdue            `1`: owes an invoice whose due day is before today in the merchant's zone
  outstanding_min/outstanding_max
                     inclusive, on what it owes in the chosen currency (needs a currency unless
                     the merchants' customers owe in just one)
  merchant           one of the user's merchants (offered when there are several)

`sort` (a key of `SORT_FIELDS`; `outstanding` only with a currency, or when there is just one),
`size`, `after` / `before` / `last` (the page cursor) as on the invoice list. Sorted by
outstanding, the list is a walk of the chosen currency's balances (`balance_sort` index) whose
customers pass the other filters; otherwise a walk of the customers. A bad value is left out and
the page says so (never a 500).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import django_filters as df
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from arbook.filters import CurrencyFilter, FilteredListMixin, MoneyFilter
from arbook.models import PROVIDER_CHOICES, Customer, CustomerBalance, CustomerIdentity
from arbook.params import clip
from arbook.selectors import customer_pages as selectors
from arbook.selectors.invoices import DEFAULT_PAGE_SIZE, PAGE_SIZES
from arbook.selectors.paginator import Cursor, KeysetPage, Sort, keyset_page, read_position
from arbook.services.customers import normalize_email, normalize_phone
from arbook.templatetags.money import CURRENCY_LOCALES

SEARCH_MIN_SUBSTRING = 3
#: (parameter, input type) of the filter form, in display order (besides search and "overdue").
FORM_FIELDS = [("merchant", "select"), ("provider", "select"), ("currency", "text"),
               ("outstanding_min", "number"), ("outstanding_max", "number")]


def _balance_param(queryset, name, value):
    """Currency and the outstanding range are applied together, on one balance (`CustomerList`)."""
    return queryset


class CustomerFilter(df.FilterSet):
    q = df.CharFilter(method="filter_search", label="Search", max_length=100,
                      help_text="Name, e-mail, phone or gateway reference")
    merchant = df.ChoiceFilter(field_name="merchant_id", label="Merchant", empty_label="All merchants")
    provider = df.ChoiceFilter(choices=PROVIDER_CHOICES, method="filter_provider", label="Gateway",
                               empty_label="All gateways")
    currency = CurrencyFilter(method=_balance_param, label="Currency", max_length=3)
    overdue = df.BooleanFilter(method="filter_overdue", label="Has overdue invoices", widget=forms.CheckboxInput)
    outstanding_min = MoneyFilter(method=_balance_param, label="Outstanding from",
                                  widget=forms.NumberInput(attrs={"step": "any"}))
    outstanding_max = MoneyFilter(method=_balance_param, label="Outstanding to",
                                  widget=forms.NumberInput(attrs={"step": "any"}))

    class Meta:
        model = Customer
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, merchants=(), now=None, **kwargs):
        """`merchants`: (id, name, timezone, country) the user may see (`selectors.merchant_rows`)."""
        super().__init__(data, queryset, **kwargs)
        self.merchants = list(merchants)
        self.filters["merchant"].extra["choices"] = [(str(m[0]), m[1]) for m in self.merchants]
        self.now = now or timezone.now()
        self.notices: list[str] = []

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Part of the name, or an identity. A whole e-mail or phone is looked up exactly, as the
        identity rules normalize it, on the identities' unique index (~10 ms at 100k customers);
        other text of 3 characters or more matches part of the name, an e-mail or a reference
        (scans: ~70-100 ms at 100k customers and 150k identities, with no trigram index on them)."""
        text = (value or "").strip()
        if not text:
            return queryset
        Kind = CustomerIdentity.Kind
        merchant_ids = [m[0] for m in self.merchants]
        email = normalize_email(text)
        phones = {p for p in (normalize_phone(text, m[3]) for m in self.merchants) if p}
        exact = Q(kind=Kind.REF, value=text)
        if email:
            exact |= Q(kind=Kind.EMAIL, value=email)
        if phones:
            exact |= Q(kind=Kind.PHONE, value__in=sorted(phones))
        keys = exact if email or phones or len(text) < SEARCH_MIN_SUBSTRING else exact | Q(value__icontains=text)
        if len(text) < SEARCH_MIN_SUBSTRING:
            self.notices.append(f"Searching for “{text}” matches an e-mail, phone or reference exactly; type at "
                                f"least {SEARCH_MIN_SUBSTRING} characters to search names.")
        # Not correlated: PostgreSQL reads the matching identities once (a hashed subplan).
        identity = CustomerIdentity.objects.filter(keys, merchant_id__in=merchant_ids).values("customer_id")
        if email or phones:  # not a name: the identities' index alone answers (no scan of the names)
            return queryset.filter(pk__in=identity)
        by_name = Q(name__icontains=text) if len(text) >= SEARCH_MIN_SUBSTRING else Q(pk__in=[])
        return queryset.filter(by_name | Q(pk__in=identity))

    def filter_provider(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # `providers` is a comma-separated list in a fixed order ("faspay,xendit").
        return queryset.filter(Q(providers=value) | Q(providers__startswith=f"{value},")
                               | Q(providers__endswith=f",{value}") | Q(providers__contains=f",{value},"))

    def filter_overdue(self, queryset: QuerySet, name: str, value) -> QuerySet:
        if not value:
            return queryset
        return queryset.filter(selectors.day_start_q("oldest_open_due", merchants=self.merchants,
                                                     day_of=lambda zone: self.now.astimezone(zone).date()))

    def error_messages(self) -> list[str]:
        return [f"{self.form.fields[n].label if n in self.form.fields else n}: {' '.join(map(str, errors))} "
                "This filter was not applied." for n, errors in self.form.errors.items()]

    def form_context(self) -> dict:
        """The form's fields as plain values, in the shape of the invoice list's (`_filter_fields.html`)."""
        data, errors = self.data, self.form.errors
        fields = []
        for name, kind in FORM_FIELDS:
            if name == "merchant" and len(self.merchants) < 2:
                continue
            extra = self.filters[name].extra
            fields.append({"name": name, "label": self.filters[name].label, "type": kind,
                           "value": (data.get(name) or "")[:200],
                           "choices": extra["choices"] if kind == "select" else None,
                           "empty": extra.get("empty_label", "") if kind == "select" else "",
                           "errors": errors.get(name, ()), "list": "currencies" if name == "currency" else ""})
        return {"text_fields": fields, "q_value": (data.get("q") or "")[:100], "currencies": sorted(CURRENCY_LOCALES),
                "overdue_checked": data.get("overdue") not in (None, "", "0", "false")}


@dataclass
class CustomerList(FilteredListMixin):
    """What the customer list (or its export) needs, read from the query string."""

    filterset: CustomerFilter
    customers: QuerySet[Customer]
    sort: Sort
    size: int
    notices: list[str]
    currency: str = ""
    balance_q: Q = field(default_factory=Q)
    after: Cursor | None = None
    before: Cursor | None = None
    last: bool = False
    now: datetime | None = None

    @property
    def by_balance(self) -> bool:
        return self.sort.model is CustomerBalance

    @property
    def queryset(self) -> QuerySet:
        """The rows in list order's model: the customers, or (sorted by outstanding) their balances."""
        if self.by_balance:
            return (CustomerBalance.objects.filter(self.balance_q, customer__in=self.customers)
                    .select_related("customer__merchant")
                    .only("id", "customer_id", "currency", "outstanding",
                          *(f"customer__{c}" for c in selectors.LIST_COLUMNS)))
        if self.balance_q:
            balances = CustomerBalance.objects.filter(self.balance_q, customer_id=OuterRef("pk"))
            return selectors.list_queryset(self.customers.filter(Exists(balances)))
        return selectors.list_queryset(self.customers)

    def page(self) -> tuple[KeysetPage, list[Customer]]:
        """The page, and its customers with `balances` (every currency it owes in) attached."""
        page = keyset_page(self.queryset, sort=self.sort, size=self.size, after=self.after, before=self.before,
                           last=self.last)
        customers = [r.customer for r in page.rows] if self.by_balance else list(page.rows)
        balances = selectors.balances_of([c.pk for c in customers])
        for c in customers:
            c.balances_shown = balances.get(c.pk, [])
        return page, customers


def customer_list(*, user, params, now: datetime | None = None) -> CustomerList:
    """Read the list's query string; nothing raises on bad input (it becomes a notice)."""
    now = now or timezone.now()
    merchants = selectors.merchant_rows(user=user)
    ids = [m[0] for m in merchants]
    filterset = CustomerFilter(params, selectors.scoped_customers(user=user, merchant_ids=ids),
                               merchants=merchants, now=now)
    customers = filterset.qs
    notices = filterset.error_messages() + filterset.notices
    data = filterset.form.cleaned_data

    currency = data.get("currency") or ""
    lo, hi = data.get("outstanding_min"), data.get("outstanding_max")
    only = None
    wants_outstanding = (params.get("sort") or "").lstrip("-").strip() == "outstanding"
    if not currency and ids and (lo is not None or hi is not None or wants_outstanding):
        span = selectors.balance_currencies(merchant_ids=ids)
        only = span[0] if span and span[0] == span[1] else None
    balance_q = Q(merchant_id__in=ids) if currency or only else Q()
    if currency or only:
        balance_q &= Q(currency=currency or only)
    if lo is not None or hi is not None:
        if currency or only:
            balance_q &= Q(**({"outstanding__gte": lo} if lo is not None else {}),
                           **({"outstanding__lte": hi} if hi is not None else {}))
        else:
            notices.append("Choose a currency to filter by the outstanding amount (amounts in different currencies "
                           "are not compared); that filter was not applied.")

    sort_text = params.get("sort") or selectors.DEFAULT_SORT
    sort = selectors.customer_sort(sort_text)
    if sort is None:
        notices.append(f"Cannot sort by “{clip(sort_text)}”; sorted by the oldest overdue invoice.")
        sort = selectors.DEFAULT
    elif sort.model is CustomerBalance and not (currency or only):
        notices.append("Choose a currency to sort by the outstanding amount; sorted by the oldest overdue invoice.")
        sort = selectors.DEFAULT
    position = read_position(params, sort=sort, sizes=PAGE_SIZES, default_size=DEFAULT_PAGE_SIZE, notices=notices)
    return CustomerList(filterset=filterset, customers=customers, sort=sort, size=position.size, notices=notices,
                        currency=currency or only or "", balance_q=balance_q, after=position.after,
                        before=position.before, last=position.last, now=now)
