"""`/`: the overview. Figures per currency, a small aging chart, and how fresh each gateway's data
is; says honestly when nothing has been synced yet."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.shortcuts import render
from django.utils import timezone

from arbook.selectors.aging import invoice_aging
from arbook.selectors.overview import overview_context
from arbook.status import RECEIVABLE
from arbook.views.aging import _attach_links, _list_url, bucket_chart


def overview(request):
    context = overview_context(user=request.user)
    zone = timezone.get_current_timezone()
    today = timezone.localdate(context["now"], timezone=zone)
    charts = []
    if context["figures"]:
        report = invoice_aging(queryset=context.pop("invoices"), as_of=today, tz=zone)
        _attach_links(report, {})
        charts = [bucket_chart(t, report.buckets, report.bucket_labels, width=520, height=170) for t in report.tables]
    base = _list_url()
    drill = {"as_of": today.isoformat(), "basis": "due", "tz": str(zone)}
    for f in context["figures"]:
        f.outstanding_url = base + "?" + urlencode({"currency": f.currency, "row": "receivable", "bucket": "all", **drill})
        f.overdue_url = base + "?" + urlencode({"currency": f.currency, "row": "receivable", "bucket": "1-", **drill})
        f.due_soon_url = base + "?" + urlencode([("currency", f.currency), *[("status", s) for s in RECEIVABLE],
                                                 ("due_from", today.isoformat()),
                                                 ("due_to", (today + dt.timedelta(days=7)).isoformat())])
        f.collected_url = base + "?" + urlencode(
            {"currency": f.currency, "paid_from": (today - dt.timedelta(days=30)).isoformat(), "paid_to": today.isoformat()})
    context["charts"] = charts
    return render(request, "arbook/overview.html", context)
