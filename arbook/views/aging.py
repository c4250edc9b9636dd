"""`/aging/`: the aging report, its chart and its CSV/XLSX export.

The view is thin: it reads the options (as-of date, basis, buckets, grouping) and the invoice
list's own filters (`arbook.filters.InvoiceFilter`, so "the same filters as the list" is the same
code), calls `arbook.selectors.aging.invoice_aging`, and gives every cell the URL of the invoice
list filtered to exactly the invoices it sums. A malformed or out-of-range option (dates and
numbers are read by `arbook.params`) is reported on the page and replaced by its default; it never
raises. An export asked with such a parameter answers 400 with the page and its messages instead
of a file that holds something else than what was asked for.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import render
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone

from arbook import params
from arbook.forms.aging import AgingOptionsForm
from arbook.models import Invoice
from arbook.selectors import aging as sel
from arbook.services.exports import EXPORT_FORMATS, export_response
from arbook.status import STATUSES

#: Query parameters of the report itself; everything else is an invoice-list filter.
OPTION_KEYS = ("as_of", "basis", "buckets", "group", "rows", "top", "_export")
#: The list's drill-down parameters: never passed to the list filters from the report page.
DRILLDOWN_KEYS = ("as_of", "basis", "bucket", "row", "tz")
#: List filters the report's form shows; the others stay as hidden inputs.
SHOWN_FILTERS = ("merchant", "provider", "currency", "q")


@dataclass
class Options:
    as_of: dt.date
    basis: str
    bounds: tuple[int, ...]
    group: str
    rows: str
    top: int


def _options(data, *, zone) -> tuple[Options, list[str], AgingOptionsForm]:
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


def filtered_invoices(request) -> tuple[QuerySet[Invoice], object, list[str], dict, list[tuple]]:
    """The user's invoices through the invoice list's FilterSet (without the drill-down keys)."""
    from arbook.filters import InvoiceFilter
    from arbook.selectors.invoices import credential_choices, merchant_choices, scoped_invoices

    user = request.user
    merchants = merchant_choices(user=user)
    credentials = credential_choices(user=user)
    data = request.GET.copy()
    for key in (*OPTION_KEYS, *DRILLDOWN_KEYS):
        data.pop(key, None)
    queryset = scoped_invoices(user=user, merchant_ids=[m[0] for m in merchants])
    filterset = InvoiceFilter(data, queryset=queryset, request=request, merchants=merchants, credentials=credentials)
    qs = filterset.qs
    notes = [*filterset.error_messages(), *filterset.notices]
    applied = {k: v for k, v in data.lists() if any(x != "" for x in v) and k not in filterset.form.errors}
    return qs, filterset, notes, applied, merchants


def _list_url() -> str:
    try:
        return reverse("invoice_list")
    except NoReverseMatch:  # the URL contract (DESIGN.md) fixes it anyway
        return "/invoices/"


def _cell_url(base: dict, **extra) -> str:
    params = [(k, v) for k, values in base.items() for v in values]
    overridden = set(extra)
    params = [(k, v) for k, v in params if k not in overridden]
    params += [(k, v) for k, v in extra.items() if v not in (None, "")]
    return _list_url() + "?" + urlencode(params)


def _attach_links(report: sel.AgingReport, applied: dict) -> None:
    group_param = {"merchant": "merchant", "provider": "provider", "customer": "customer"}.get(report.group)
    common = {"as_of": report.as_of.isoformat(), "basis": report.basis, "tz": str(report.tz)}
    for table in report.tables:
        for line in table.lines:
            for c in [*line.cells, line.total]:
                if line.kind == "others" or not c.count:
                    c.url = ""
                    continue
                extra = {**common, "currency": table.currency, "bucket": c.bucket, "row": c.row}
                if line.kind == "group":
                    extra[group_param] = "" if line.group_value is None else str(line.group_value)
                    if report.group == "customer" and not line.group_value:
                        c.url = ""  # an empty exact-name filter would not be applied: no link
                        continue
                c.url = _cell_url(applied, **extra)


# -- the chart (server-side SVG: no JavaScript, no CDN) ---------------------------------------

CHART_ROWS = (*sel.RECEIVABLE, *sel.APART)


def bucket_chart(table: sel.Table, buckets: list[sel.Bucket], labels: list[str], *, width: int = 640,
                 height: int = 220) -> dict:
    """Stacked bars per bucket of the positive rows (credits are listed in the table, not drawn)."""
    by_row = {line.key: line for line in table.lines if line.kind == "row"}
    bars = []
    totals = []
    for i, _b in enumerate(buckets):
        segs = []
        for row in CHART_ROWS:
            line = by_row.get(row)
            if line and line.cells[i].amount > 0:
                segs.append((row, line.cells[i]))
        totals.append(sum((c.amount for _r, c in segs), Decimal("0")))
        bars.append(segs)
    top = max(totals) if totals and max(totals) > 0 else Decimal("1")
    pad_l, pad_b, pad_t = 10, 34, 18
    slot = (width - pad_l) / max(len(buckets), 1)
    bar_w = slot * 0.62
    plot_h = height - pad_b - pad_t
    out = []
    for i, segs in enumerate(bars):
        x = pad_l + i * slot + (slot - bar_w) / 2
        y = height - pad_b
        rects = []
        for row, cell in segs:
            h = float(cell.amount / top) * plot_h
            y -= h
            rects.append({"x": round(x, 1), "y": round(y, 1), "w": round(bar_w, 1), "h": round(max(h, 0.5), 1),
                          "colour": STATUSES[row].colour, "row": sel.ROW_LABELS[row], "cell": cell})
        out.append({"rects": rects, "label": labels[i], "x": round(x + bar_w / 2, 1), "total": totals[i],
                    "label_y": height - pad_b + 16, "total_y": round(y - 4, 1)})
    return {"width": width, "height": height, "bars": out, "currency": table.currency,
            "legend": [(STATUSES[r].colour, sel.ROW_LABELS[r]) for r in CHART_ROWS]}


# -- the view -----------------------------------------------------------------------------------

def aging(request):
    notes: list[str] = []
    qs, filterset, filter_notes, applied, merchants = filtered_invoices(request)
    notes += filter_notes
    zone = report_zone(merchants, applied.get("merchant", [None])[0] if applied.get("merchant") else None)
    options, option_errors, options_form = _options(request.GET, zone=zone)
    notes = option_errors + notes
    rejected = bool(option_errors or filterset.form.errors)
    report = sel.invoice_aging(queryset=qs, as_of=options.as_of, basis=options.basis, bounds=options.bounds,
                               group=options.group, rows=options.rows, top=options.top, tz=zone)
    _attach_links(report, applied)

    export = request.GET.get("_export", "")
    if export:
        if export not in EXPORT_FORMATS:
            notes.append(f"Unknown export format “{params.clip(export)}”: use csv or xlsx.")
        elif rejected:
            notes.append("Nothing was exported: fix the parameters above first, so the file holds exactly what "
                         "you asked for.")
        else:
            header, rows = export_rows(report)
            stem = f"aging-{report.as_of.isoformat()}-{report.basis}{'-' + report.group if report.group else ''}"
            return export_response(export, rows, header, stem, sheet_title="Aging")

    labels = report.bucket_labels
    charts = [bucket_chart(t, report.buckets, labels) for t in report.tables] if not report.group else []
    context = {
        "report": report,
        "labels": labels,
        "charts": charts,
        "options_form": options_form,
        "filter": filterset,
        "notes": notes,
        "zone": str(zone),
        "is_today": report.as_of == timezone.localdate(timezone=zone),
        "has_merchants": bool(merchants),
        # Filters applied from a list link but not shown in the compact form: kept on resubmit.
        "hidden_filters": [(k, v) for k, values in applied.items() if k not in SHOWN_FILTERS for v in values],
    }
    return render(request, "arbook/aging/report.html", context,
                  status=400 if export in EXPORT_FORMATS and rejected else 200)


def export_rows(report: sel.AgingReport) -> tuple[list[str], list[list]]:
    """One line per table line: amounts per bucket and total, then the invoice count."""
    header = ["Currency", "Group" if report.group else "Row", *report.bucket_labels, "Total", "Invoices",
              "As of", "Basis"]
    rows = []
    for table in report.tables:
        for line in table.lines:
            rows.append([table.currency, line.label, *[c.amount for c in line.cells], line.total.amount,
                         line.total.count, report.as_of, report.basis])
    return header, rows


urlpatterns = [
    path("aging/", aging, name="aging"),
]
