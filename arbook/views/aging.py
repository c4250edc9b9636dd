"""`/aging/`: the aging report, its chart and its CSV/XLSX export.

Declares and delegates: the query string is read by `arbook.forms.aging` (the report's options and
the invoice list's own filters), the report computed by `arbook.selectors.aging.invoice_aging`,
every cell linked to the invoice list filtered to exactly the invoices it sums
(`arbook.drilldown`), the chart drawn by `arbook.charts`, the file written by
`arbook.exports.aging`. A malformed or out-of-range option is reported on the page and replaced by
its default; it never raises. An export asked with such a parameter answers 400 with the page and
its messages instead of a file that holds something else than what was asked for.
"""
from __future__ import annotations

from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from arbook import params
from arbook.charts import bucket_chart
from arbook.drilldown import attach_links
from arbook.exports import EXPORT_FORMATS
from arbook.exports.aging import export_rows, export_stem
from arbook.forms.aging import aging_options, filtered_invoices, merchant_scope, report_zone, rollup_scope
from arbook.selectors.aging import aging_on_hold, invoice_aging, mark_held
from arbook.views.downloads import export_response

#: List filters the report's form shows; the others stay as hidden inputs.
SHOWN_FILTERS = ("merchant", "provider", "currency", "q", "held")


def aging(request):
    notes: list[str] = []
    qs, filterset, filter_notes, applied, merchants = filtered_invoices(request)
    notes += filter_notes
    zone = report_zone(merchants, applied.get("merchant", [None])[0] if applied.get("merchant") else None)
    options, option_errors, options_form = aging_options(request.GET, zone=zone)
    notes = option_errors + notes
    rejected = bool(option_errors or filterset.form.errors)
    report = invoice_aging(queryset=qs, as_of=options.as_of, basis=options.basis, bounds=options.bounds,
                           group=options.group, rows=options.rows, top=options.top, tz=zone,
                           merchant_ids=merchant_scope(merchants, applied), rollup=rollup_scope(filterset, applied))
    attach_links(report, applied)
    on_hold = None
    if applied.get("held", [""])[0] != "hide" and report.tables:
        on_hold = aging_on_hold(queryset=qs, report=report, bounds=options.bounds,
                                merchant_ids=[m[0] for m in merchants])
        if on_hold is not None:
            attach_links(on_hold, {**applied, "held": ["only"]})
    mark_held(report, on_hold)

    export = request.GET.get("_export", "")
    if export:
        if export not in EXPORT_FORMATS:
            notes.append(f"Unknown export format “{params.clip(export)}”: use csv or xlsx.")
        elif rejected:
            notes.append("Nothing was exported: fix the parameters above first, so the file holds exactly what "
                         "you asked for.")
        else:
            header, rows = export_rows(report)
            return export_response(export, rows, header, export_stem(report), sheet_title="Aging")

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


urlpatterns = [
    path("aging/", aging, name="aging"),
]
