"""The aging report's query string: its options (as-of date, basis, buckets, grouping) and the
invoice list's own filters (`arbook.filters.InvoiceFilter`, so "the same filters as the list" is
the same code).

A malformed or out-of-range option (dates and numbers are read by `arbook.params`) is reported
and replaced by its default; nothing here raises.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from arbook import params
from arbook.filters import DRILLDOWN_FIELDS, InvoiceFilter
from arbook.models import Invoice
from arbook.selectors import aging as sel
from arbook.selectors.aging_rollup import RollupScope, scope_for

#: Query parameters of the report itself; everything else is an invoice-list filter.
OPTION_KEYS = ("as_of", "basis", "buckets", "group", "rows", "top", "_export")


class AgingOptionsForm(forms.Form):
    as_of = params.DateField(required=False, label="As of", widget=forms.DateInput(attrs={"type": "date"}),
                             error_messages={"invalid": "The as-of date must be a date like 2025-06-30."})
    basis = forms.ChoiceField(required=False, label="Age by", choices=[("due", "Due date"), ("issued", "Issue date")])
    buckets = forms.CharField(required=False, label="Buckets (days)", max_length=60,
                              widget=forms.TextInput(attrs={"placeholder": "30,60,90", "size": 10}))
    group = forms.ChoiceField(required=False, label="Group by", choices=[
        ("", "Payment state"), ("merchant", "Merchant"), ("provider", "Gateway"), ("customer", "Customer")])
    rows = forms.ChoiceField(required=False, label="Sum of (grouped)", choices=[
        ("receivable", "Receivable states"), *[(r, sel.ROW_LABELS[r]) for r in sel.ROWS], ("all", "Net total")])
    top = params.IntegerField(required=False, label="Groups shown", min_value=1, max_value=sel.MAX_TOP,
                              widget=forms.NumberInput(attrs={"size": 4}))


@dataclass
class Options:
    as_of: dt.date
    basis: str
    bounds: tuple[int, ...]
    group: str
    rows: str
    top: int


def aging_options(data, *, zone) -> tuple[Options, list[str], AgingOptionsForm]:
    """The report options; each malformed one is reported and replaced by its default."""
    form = AgingOptionsForm(data)
    form.is_valid()
    errors = [f"{form.fields[name].label}: {' '.join(msgs)} Showing the default instead."
              for name, msgs in form.errors.items()]
    clean = form.cleaned_data
    today = timezone.localdate(timezone=zone)
    as_of = clean.get("as_of") or today
    if as_of > today:
        errors.append("The as-of date is in the future; aging can only be shown up to today.")
        as_of = today
    try:
        bounds = sel.parse_bounds(clean.get("buckets") or data.get("buckets"))
    except sel.AgingParameterError as exc:
        errors.append(f"{exc} Showing 30,60,90 instead.")
        bounds = sel.DEFAULT_BOUNDS
    return Options(as_of=as_of, basis=clean.get("basis") or "due", bounds=bounds, group=clean.get("group") or "",
                   rows=clean.get("rows") or "receivable", top=clean.get("top") or sel.DEFAULT_TOP), errors, form


def report_zone(merchants: list[tuple], merchant_filter: str | None) -> zoneinfo.ZoneInfo:
    """Days are counted in the merchants' zone when they share one, else in the server's."""
    zones = {tz for pk, _n, tz in merchants if not merchant_filter or str(pk) == str(merchant_filter)}
    name = zones.pop() if len(zones) == 1 else settings.TIME_ZONE
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def merchant_scope(merchants: list[tuple], applied: dict) -> list[int]:
    """The ids of the merchants the report's invoices are within: the user's, or those the merchant
    filter chose among them (aging by customer ranks those merchants' customers)."""
    chosen = {str(v) for v in applied.get("merchant", ())}
    return [pk for pk, *_rest in merchants if not chosen or str(pk) in chosen]


def filtered_invoices(request) -> tuple[QuerySet[Invoice], InvoiceFilter, list[str], dict, list[tuple]]:
    """The user's invoices through the invoice list's FilterSet (without the report's own keys),
    the notes on filters left out, the filters applied (for the cells' links) and the merchants."""
    data = request.GET.copy()
    for key in (*OPTION_KEYS, *DRILLDOWN_FIELDS):
        data.pop(key, None)
    filterset = InvoiceFilter.for_user(data, user=request.user, request=request)
    qs = filterset.qs
    notes = [*filterset.error_messages(), *filterset.notices]
    applied = {k: v for k, v in data.lists() if any(x != "" for x in v) and k not in filterset.form.errors}
    return qs, filterset, notes, applied, filterset.merchants


def rollup_scope(filterset: InvoiceFilter, applied: dict) -> RollupScope | None:
    """The report's invoices in the aging rollup's terms, or None when the filters applied
    (a search, a status, a date range, one it rejected) make it read the invoices themselves."""
    if filterset.form.errors:
        return None
    return scope_for(merchants=filterset.merchants, applied=applied, cleaned=filterset.form.cleaned_data,
                     filters=filterset.filters)
