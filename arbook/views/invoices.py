"""`/invoices/` (list, filters in the query string, `?_export=csv|xlsx`) and `/invoices/<id>/`.

Thin: the query string is read by `arbook.filters` (its values by `arbook.params`), the data by
`arbook.selectors.invoices`; the files are written by `arbook.exports.invoices` and sent by
`arbook.views.downloads`; the page links are built by
`{% page_query %}` (`arbook.templatetags.pager`). A parameter that is malformed or out of range
is left out and the page says so; an export asked with a filter left out answers 400 with that
page rather than a file of something else than was asked for.
"""
from __future__ import annotations

import json

from django.shortcuts import render
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from arbook import filters
from arbook.exports.invoices import invoice_file
from arbook.jsonutil import RawJSONEncoder
from arbook.forms.customers import HoldForm, NoteForm
from arbook.selectors import collections
from arbook.selectors import invoices as selectors
from arbook.selectors.espay import invoice_virtual_accounts
from arbook.selectors.reminders import invoice_reminders
from arbook.tables import InvoiceTable
from arbook.templatetags.money import days_overdue
from arbook.views.downloads import download, export_asked


@require_safe
def invoice_list(request):
    listing = filters.invoice_list(user=request.user, params=request.GET)
    fmt = request.GET.get("_export")
    send, status = export_asked(fmt, rejected=listing.has_filter_errors, notices=listing.notices)
    if send:
        stamp = timezone.localtime(listing.now).strftime("%Y%m%d-%H%M")
        chunks = invoice_file(fmt, listing.queryset, sort=listing.sort, now=listing.now,
                              owed_then=bool(listing.drilldown))
        return download(chunks, fmt, f"invoices-{stamp}")
    if request.GET.get("_totals"):
        # The totals aggregate the whole filtered set (hundreds of ms at a million rows): the page
        # fetches them separately, so its rows show at once (static/arbook/invoices.js).
        return render(request, "arbook/invoices/_totals.html", {"totals": listing.totals(), "listing": listing})
    page = listing.page()
    table = InvoiceTable(page.rows, now=listing.now, show_merchant=len(listing.merchants) != 1)
    table.set_keyset_order(listing.sort.param)
    direction = "descending" if listing.sort.descending else "ascending"
    return render(request, "arbook/invoices/list.html", {
        **listing.filterset.form_context(),
        "listing": listing,
        "filter": listing.filterset,
        "form": listing.filterset.form,
        "table": table,
        "page": page,
        "notices": listing.notices,
        "page_sizes": selectors.PAGE_SIZES,
        "sort_label": f"{selectors.SORT_FIELDS[listing.sort.field].lower()} ({direction})",
        "has_merchants": bool(listing.merchants),
        "sync_list_url": _url("sync_list"),
    }, status=status)


@require_safe
def invoice_detail(request, pk: int):
    invoice = selectors.invoice_for_user(user=request.user, pk=pk)
    vas = invoice_virtual_accounts(invoice=invoice)
    for va in vas:
        va["url"] = _url("espay_batch_detail", va["batch_id"]) if va["batch_id"] else ""
    checkout = invoice.checkout_url if invoice.checkout_url.lower().startswith(("https://", "http://")) else ""
    return render(request, "arbook/invoices/detail.html", {
        "invoice": invoice,
        "tz": invoice.merchant.timezone,
        "days_overdue": days_overdue(status=invoice.status, due_at=invoice.due_at, tz=invoice.merchant.timezone),
        "events": selectors.invoice_history(invoice=invoice),
        "history_limit": selectors.HISTORY_LIMIT,
        "virtual_accounts": vas,
        "raw_pretty": json.dumps(invoice.raw, indent=2, sort_keys=True, ensure_ascii=False, cls=RawJSONEncoder),
        "checkout_url": checkout,
        "notes": collections.invoice_notes(invoice=invoice),
        "holds": collections.invoice_holds(invoice=invoice),
        "reminders": invoice_reminders(invoice=invoice),
        "hold_form": HoldForm(reasons=collections.hold_reasons(merchant=invoice.merchant)) if invoice.customer_id else None,
        "note_form": NoteForm(),
        "now": timezone.now(),
    })


def _url(name: str, *args) -> str:
    """An area's URL when it is routed; blank otherwise (the page then shows plain text)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


urlpatterns = [
    path("invoices/", invoice_list, name="invoice_list"),
    path("invoices/<int:pk>/", invoice_detail, name="invoice_detail"),
]
