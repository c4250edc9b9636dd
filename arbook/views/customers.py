"""`/customers/` (list, `?_export=csv|xlsx`), `/customers/<id>/`, `/customers/suggestions/`, the
merge and split POSTs, and `/customers/<id>/statement/` (PDF, CSV or XLSX).

Thin: the list's query string is read by `arbook.filters_customers`, a customer's data by
`arbook.selectors.customer_pages` (and the aging and statement selectors), the decisions made by
`arbook.services.customers`, the files written by `arbook.exports` and sent by
`arbook.views.downloads`. Scoping as everywhere: a customer of a merchant the user may not see
is a 404, for reading and for merging alike. Any member of the merchant may merge and split
(`arbook.forms.customers` says why); the service records who did.
"""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from arbook.exports.customers import HEADER as LIST_HEADER, customer_rows
from arbook.exports.statements import HEADER as STATEMENT_HEADER, statement_pdf, statement_rows
from arbook.filters_customers import customer_list as read_customer_list
from arbook.forms.customers import STATEMENT_FORMATS, HoldForm, MergeForm, NoteForm, SplitForm, statement_options
from arbook.scoping import visible_merchants
from arbook.selectors import collections
from arbook.selectors import customer_pages as selectors
from arbook.selectors.aging import invoice_aging
from arbook.selectors.customers import duplicate_pairs, merge_suggestions
from arbook.selectors.invoices import DEFAULT as INVOICE_DEFAULT_SORT
from arbook.selectors.invoices import PAGE_SIZES, SORT_FIELDS as INVOICE_SORT_FIELDS, invoice_sort, list_queryset
from arbook.selectors.paginator import keyset_page, read_position
from arbook.selectors.statements import customer_statement as statement_of
from arbook.services.customers import customer_merge, customer_split
from arbook.services.reminders import customer_email
from arbook.tables import CustomerTable, InvoiceTable
from arbook.views.downloads import download, export_asked, export_response

INVOICE_PAGE_SIZES = (50,)


@require_safe
def customer_list(request):
    listing = read_customer_list(user=request.user, params=request.GET)
    fmt = request.GET.get("_export")
    send, status = export_asked(fmt, rejected=listing.has_filter_errors, notices=listing.notices)
    if send:
        stamp = timezone.localtime(listing.now).strftime("%Y%m%d-%H%M")
        return export_response(fmt, customer_rows(listing.queryset, sort=listing.sort, now=listing.now),
                               LIST_HEADER, f"customers-{stamp}", sheet_title="Customers")
    page, customers = listing.page()
    table = CustomerTable(customers, now=listing.now, show_merchant=len(listing.merchants) != 1,
                          outstanding_sortable=bool(listing.currency))
    table.set_keyset_order(listing.sort.param)
    return render(request, "arbook/customers/list.html", {
        **listing.filterset.form_context(),
        "listing": listing,
        "table": table,
        "page": page,
        "notices": listing.notices,
        "page_sizes": PAGE_SIZES,
        "sort_label": _sort_label(selectors.SORT_FIELDS, listing.sort),
        "has_merchants": bool(listing.merchants),
        "collectors": collections.collectors(merchant_ids=[m[0] for m in listing.merchants]),
    }, status=status)


@require_safe
def customer_detail(request, pk: int):
    customer = selectors.customer_for_user(user=request.user, pk=pk)
    tz = customer.merchant.timezone
    now = timezone.now()
    zone, today = selectors.merchant_today(customer.merchant, now=now)
    invoices = selectors.customer_invoices(customer=customer)
    notices: list[str] = []
    sort = invoice_sort(request.GET.get("sort") or "-issued_at")
    if sort is None:
        notices.append("Cannot sort the invoices that way; sorted by issue date, newest first.")
        sort = INVOICE_DEFAULT_SORT
    position = read_position(request.GET, sort=sort, sizes=INVOICE_PAGE_SIZES, default_size=INVOICE_PAGE_SIZES[0],
                             notices=notices)
    page = keyset_page(list_queryset(invoices), sort=sort, size=position.size, after=position.after,
                       before=position.before, last=position.last)
    table = InvoiceTable(page.rows, now=now, show_merchant=False)
    table.set_keyset_order(sort.param)
    aging = invoice_aging(queryset=invoices, as_of=today, tz=zone)
    options, _ = statement_options(request.GET, today=today)
    return render(request, "arbook/customers/detail.html", {
        "customer": customer,
        "gateways": selectors.provider_labels(customer.providers),
        "tz": tz,
        "balances": selectors.customer_balances(customer=customer),
        "aging": aging,
        "aging_labels": aging.bucket_labels,
        "table": table,
        "page": page,
        "sort_label": _sort_label(INVOICE_SORT_FIELDS, sort),
        "notices": notices,
        "timeline": selectors.customer_timeline(customer=customer),
        "timeline_limit": selectors.TIMELINE_LIMIT,
        "identities": selectors.customer_identities(customer=customer),
        "identity_limit": selectors.IDENTITY_LIMIT,
        "duplicates": duplicate_pairs(customer=customer, limit=selectors.DUPLICATE_LIMIT),
        "duplicate_limit": selectors.DUPLICATE_LIMIT,
        "candidates": _with_gateways(selectors.merge_candidates(customer=customer)),
        "statement": options,
        "statement_formats": STATEMENT_FORMATS,
        "notes": collections.customer_notes(customer=customer),
        "note_limit": collections.NOTE_LIMIT,
        "holds": collections.customer_holds(customer=customer),
        "promises": collections.customer_promises(customer=customer),
        "reminder_email": customer_email(customer),
        "today": selectors.merchant_today(customer.merchant, now=now)[1],
        "hold_form": HoldForm(reasons=collections.hold_reasons(merchant=customer.merchant)),
        "note_form": NoteForm(),
        "collectors": collections.collectors(merchant_ids=[customer.merchant_id]),
        "audit": collections.customer_audit(customer=customer),
        "now": now,
    })


@require_safe
def customer_statement(request, pk: int):
    customer = selectors.customer_for_user(user=request.user, pk=pk)
    zone, today = selectors.merchant_today(customer.merchant)
    options, errors = statement_options(request.GET, today=today)
    if errors:
        return render(request, "arbook/customers/statement_error.html", {
            "customer": customer, "statement_errors": errors, "statement": options,
            "statement_formats": STATEMENT_FORMATS}, status=400)
    statement = statement_of(customer=customer, as_of=options.as_of, start=options.start, end=options.end, tz=zone)
    stem = f"statement-{customer.name or customer.pk}-{options.as_of.isoformat()}"
    if options.fmt == "pdf":
        return download([statement_pdf(statement)], "pdf", stem)
    return export_response(options.fmt, statement_rows(statement), STATEMENT_HEADER, stem, sheet_title="Statement")


@require_safe
def customer_suggestions(request):
    merchant_ids = list(visible_merchants(request.user).values_list("pk", flat=True))
    suggestions = merge_suggestions(merchant_ids=merchant_ids) if merchant_ids else []
    for s in suggestions:
        _with_gateways(s.customers)
    return render(request, "arbook/customers/suggestions.html", {
        "suggestions": suggestions, "has_merchants": bool(merchant_ids), "limit": len(suggestions)})


@require_POST
def customer_merge_view(request, pk: int):
    target = selectors.customer_for_user(user=request.user, pk=pk)
    form = MergeForm(request.POST)
    back = _next(request, form.data.get("next"), target)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(back)
    wanted = {i for i in form.cleaned_data["other"] if i != target.pk}
    others = selectors.customers_for_merge(user=request.user, target=target, ids=wanted)
    if len(others) != len(wanted):
        raise Http404("No such customer.")
    if not others:
        messages.error(request, "Choose another customer than the one kept.")
        return redirect(back)
    names = ", ".join(str(c) for c in others)
    moved = customer_merge(target=target, others=others, user=request.user)
    messages.success(request, f"Merged {names} into {target}: {moved} invoice{'s' if moved != 1 else ''} moved.")
    return redirect(back)


@require_POST
def customer_split_view(request, pk: int):
    customer = selectors.customer_for_user(user=request.user, pk=pk)
    form = SplitForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(reverse("customer_detail", args=[customer.pk]))
    try:
        new = customer_split(customer=customer, identity_ids=form.cleaned_data["identity"],
                             name=form.cleaned_data["name"], user=request.user)
    except ValueError as exc:  # the service's rule, written for the user
        messages.error(request, f"Not split: {exc}.")
        return redirect(reverse("customer_detail", args=[customer.pk]))
    messages.success(request, f"Split {new} off {customer}.")
    return redirect(reverse("customer_detail", args=[new.pk]))


def _with_gateways(customers: list) -> list:
    """`customers`, each with `gateways`: its gateways as the pages name them."""
    for c in customers:
        c.gateways = selectors.provider_labels(c.providers)
    return customers


def _sort_label(fields: dict[str, str], sort) -> str:
    return f"{fields[sort.field].lower()} ({'descending' if sort.descending else 'ascending'})"


def _next(request, target: str | None, customer) -> str:
    """Where a form goes back to: its `next` when it is on this site, else the customer's page."""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return reverse("customer_detail", args=[customer.pk])


urlpatterns = [
    path("customers/", customer_list, name="customer_list"),
    path("customers/suggestions/", customer_suggestions, name="customer_suggestions"),
    path("customers/<int:pk>/", customer_detail, name="customer_detail"),
    path("customers/<int:pk>/statement/", customer_statement, name="customer_statement"),
    path("customers/<int:pk>/merge/", customer_merge_view, name="customer_merge"),
    path("customers/<int:pk>/split/", customer_split_view, name="customer_split"),
]
