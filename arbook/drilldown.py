"""Drill-down links: from a figure (an aging cell, an overview figure) to the invoice list
filtered to exactly the invoices it sums (`arbook.filters` reads these parameters back).

Used by the aging report and the overview, so both link the same way.
"""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.urls import NoReverseMatch, reverse

from arbook.selectors.aging import AgingReport
from arbook.selectors.overview import CurrencyFigures
from arbook.status import RECEIVABLE

#: The list filter that selects one group of a grouped report.
GROUP_PARAMS = {"merchant": "merchant", "provider": "provider", "customer": "customer_id"}


def list_url() -> str:
    try:
        return reverse("invoice_list")
    except NoReverseMatch:  # the URL contract (DESIGN.md) fixes it anyway
        return "/invoices/"


def cell_url(base: dict, **extra) -> str:
    """The list URL with the filters of `base` (name: list of values), `extra` replacing them."""
    params = [(k, v) for k, values in base.items() for v in values]
    overridden = set(extra)
    params = [(k, v) for k, v in params if k not in overridden]
    params += [(k, v) for k, v in extra.items() if v not in (None, "")]
    return list_url() + "?" + urlencode(params)


def attach_links(report: AgingReport, applied: dict) -> None:
    """Give every cell of `report` (`c.url`) the list of the invoices it sums, under `applied` filters."""
    group_param = GROUP_PARAMS.get(report.group)
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
                c.url = cell_url(applied, **extra)


def attach_figure_links(figures: list[CurrencyFigures], *, today: dt.date, zone) -> None:
    """The overview's figures link to the invoices they count: outstanding and overdue (the aging
    drill-down as of today), due in the next 7 days, collected in the last 30."""
    base = list_url()
    drill = {"as_of": today.isoformat(), "basis": "due", "tz": str(zone)}
    for f in figures:
        f.outstanding_url = base + "?" + urlencode({"currency": f.currency, "row": "receivable", "bucket": "all", **drill})
        f.overdue_url = base + "?" + urlencode({"currency": f.currency, "row": "receivable", "bucket": "1-", **drill})
        f.due_soon_url = base + "?" + urlencode([("currency", f.currency), *[("status", s) for s in RECEIVABLE],
                                                 ("due_from", today.isoformat()),
                                                 ("due_to", (today + dt.timedelta(days=7)).isoformat())])
        f.collected_url = base + "?" + urlencode(
            {"currency": f.currency, "paid_from": (today - dt.timedelta(days=30)).isoformat(), "paid_to": today.isoformat()})
