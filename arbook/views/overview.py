"""`/`: the overview. Figures per currency, a small aging chart, and how fresh each gateway's data
is; says honestly when nothing has been synced yet."""
from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone

from arbook.charts import bucket_chart
from arbook.dbrouting import replica_status
from arbook.drilldown import attach_figure_links, attach_links
from arbook.selectors.aging import invoice_aging
from arbook.selectors.overview import overview_context


def overview(request):
    context = overview_context(user=request.user)
    zone = timezone.get_current_timezone()
    today = timezone.localdate(context["now"], timezone=zone)
    charts = []
    if context["figures"]:
        report = invoice_aging(queryset=context.pop("invoices"), as_of=today, tz=zone, rollup=context.pop("rollup"))
        attach_links(report, {})
        charts = [bucket_chart(t, report.buckets, report.bucket_labels, width=520, height=170) for t in report.tables]
    attach_figure_links(context["figures"], today=today, zone=zone)
    context["charts"] = charts
    context["replica"] = replica_status()
    context["reads_replica"] = getattr(request, "reads_replica", False)
    return render(request, "arbook/overview.html", context)
