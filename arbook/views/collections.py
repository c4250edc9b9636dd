"""The collector's POSTs (notes, holds, promises, assignment, saved views: `arbook.services.collections`
decides) and `/worklist/`.

Thin, like every view: the form reads the POST, the selectors fetch each object scoped to the
user (another merchant's customer, note or hold is a 404), the service applies its rules and
writes the audit entry; the view answers with a message and a redirect back.
"""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from arbook import params
from arbook.forms.customers import AssignForm, HoldForm, NoteEditForm, NoteForm, PromiseForm, SavedViewForm
from arbook.models import Customer, Invoice
from arbook.scoping import scope, visible_merchants
from arbook.selectors import collections as selectors
from arbook.selectors import worklist as work
from arbook.selectors.customer_pages import customer_for_user
from arbook.services.collections import (
    CollectionsError,
    customers_assign,
    hold_open,
    hold_release,
    note_add,
    note_edit,
    promise_cancel,
    promise_make,
    saved_view_delete,
    saved_view_save,
    saved_view_url,
)


def _back(request, target: str | None, fallback: str) -> str:
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return fallback


def _form_errors(form) -> str:
    return " ".join(e for errors in form.errors.values() for e in errors)


def _invoice(customer: Customer, invoice_id: int | None) -> Invoice | None:
    """The customer's invoice `invoice_id` (a 404 when it is not one of its invoices)."""
    if invoice_id is None:
        return None
    invoice = Invoice.objects.filter(pk=invoice_id, customer=customer).first()
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


def _decide(request, back: str, refused: str, decision, said):
    """Run the service call `decision`; a refusal by its rules becomes the message "`refused`: why."
    and success the message `said(result)`. Either way, back to `back`."""
    try:
        result = decision()
    except CollectionsError as exc:
        messages.error(request, f"{refused}: {exc}.")
        return redirect(back)
    messages.success(request, said(result))
    return redirect(back)


def _invalid(request, back: str, refused: str, form):
    messages.error(request, f"{refused}: {_form_errors(form)}")
    return redirect(back)


@require_POST
def note_create_view(request, pk: int):
    customer = customer_for_user(user=request.user, pk=pk)
    form = NoteForm(request.POST)
    back = _back(request, form.data.get("next"), reverse("customer_detail", args=[customer.pk]))
    if not form.is_valid():
        return _invalid(request, back, "Note not saved", form)
    invoice = _invoice(customer, form.cleaned_data["invoice"])
    return _decide(request, back, "Note not saved",
                   lambda: note_add(customer=customer, author=request.user, text=form.cleaned_data["text"],
                                    invoice=invoice),
                   lambda _note: "Note saved.")


@require_POST
def note_edit_view(request, pk: int):
    note = selectors.note_for_user(user=request.user, pk=pk)
    form = NoteEditForm(request.POST)
    back = _back(request, form.data.get("next"), reverse("customer_detail", args=[note.customer_id]))
    if not form.is_valid():
        return _invalid(request, back, "Note not changed", form)
    return _decide(request, back, "Note not changed",
                   lambda: note_edit(note=note, user=request.user, text=form.cleaned_data["text"]),
                   lambda _note: "Note changed; the earlier text is kept in its history.")


def _held(hold) -> str:
    what = f"Invoice {hold.invoice.number or hold.invoice.external_id}" if hold.invoice else \
        f"Every invoice of {hold.customer}"
    return f"{what} is on hold ({hold.reason})" + (f" until {hold.until}." if hold.until else ".")


@require_POST
def hold_create_view(request, pk: int):
    customer = customer_for_user(user=request.user, pk=pk)
    form = HoldForm(request.POST, reasons=selectors.hold_reasons(merchant=customer.merchant))
    back = _back(request, form.data.get("next"), reverse("customer_detail", args=[customer.pk]))
    if not form.is_valid():
        return _invalid(request, back, "Not held", form)
    data = form.cleaned_data
    invoice = _invoice(customer, data["invoice"])
    return _decide(request, back, "Not held",
                   lambda: hold_open(customer=customer, user=request.user, reason=data["reason"],
                                     detail=data["detail"], until=data["until"], invoice=invoice),
                   _held)


@require_POST
def hold_release_view(request, pk: int):
    hold = selectors.hold_for_user(user=request.user, pk=pk)
    back = _back(request, request.POST.get("next"), reverse("customer_detail", args=[hold.customer_id]))
    return _decide(request, back, "Not released", lambda: hold_release(hold=hold, user=request.user),
                   lambda _hold: "Hold released.")


@require_POST
def customers_assign_view(request):
    form = AssignForm(request.POST)
    back = _back(request, form.data.get("next"), reverse("customer_list"))
    if not form.is_valid():
        return _invalid(request, back, "Nobody assigned", form)
    wanted = set(form.cleaned_data["customer"])
    customers = list(scope(Customer.objects.filter(pk__in=wanted), request.user))
    if len(customers) != len(wanted):
        raise Http404("No such customer.")
    collector = None
    if form.cleaned_data["collector"] is not None:
        collector = selectors.collectors(merchant_ids={c.merchant_id for c in customers}).filter(
            pk=form.cleaned_data["collector"]).first()
        if collector is None:
            messages.error(request, "Nobody assigned: choose a member of these customers' merchants.")
            return redirect(back)
    name = collector.get_username() if collector else "nobody"
    return _decide(request, back, "Nobody assigned",
                   lambda: customers_assign(customers=customers, collector=collector, user=request.user),
                   lambda changed: f"{changed} customer{'s' if changed != 1 else ''} assigned to {name}.")


@require_POST
def promise_create_view(request, pk: int):
    customer = customer_for_user(user=request.user, pk=pk)
    form = PromiseForm(request.POST)
    back = _back(request, form.data.get("next"), reverse("customer_detail", args=[customer.pk]))
    if not form.is_valid():
        return _invalid(request, back, "Promise not recorded", form)
    data = form.cleaned_data
    invoices = [_invoice(customer, pk) for pk in data["invoice"]]
    return _decide(request, back, "Promise not recorded",
                   lambda: promise_make(customer=customer, user=request.user, amount=data["amount"],
                                        currency=data["currency"], promised_for=data["promised_for"],
                                        invoices=invoices, detail=data["detail"]),
                   lambda p: f"Promise recorded: {p.currency} {p.amount:,.2f} by {p.promised_for:%d %b %Y}.")


@require_POST
def promise_cancel_view(request, pk: int):
    promise = selectors.promise_for_user(user=request.user, pk=pk)
    back = _back(request, request.POST.get("next"), reverse("customer_detail", args=[promise.customer_id]))
    return _decide(request, back, "Not cancelled", lambda: promise_cancel(promise=promise, user=request.user),
                   lambda _p: "Promise cancelled.")


def worklist_view(request):
    """The signed-in collector's customers to act on today (a manager picks any collector's)."""
    merchants = list(visible_merchants(request.user).order_by("name", "id"))
    notices = []
    chosen = request.GET.get("merchant", "")
    if chosen:
        try:
            wanted = params.parse_int(chosen, min_value=1, max_value=params.MAX_ID, what="The merchant")
        except params.ParamError as exc:
            notices.append(str(exc))
        else:
            if not any(m.pk == wanted for m in merchants):
                raise Http404("No such merchant.")
            merchants = [m for m in merchants if m.pk == wanted]
    choices = work.collector_choices(user=request.user, merchant_ids=[m.pk for m in merchants])
    collector = request.GET.get("collector", "me")
    if collector not in {value for value, _ in choices}:
        notices.append("That worklist is not one you may open: showing yours.")
        collector = "me"
    try:
        page = params.parse_int(request.GET.get("page", "1"), min_value=1, max_value=10_000, what="The page")
    except params.ParamError as exc:
        notices.append(str(exc))
        page = 1
    currency = (request.GET.get("currency") or "").upper()[:3] or None
    listing = work.worklist(user=request.user, merchants=merchants, collector=collector, currency=currency,
                            page=page)
    return render(request, "arbook/collections/worklist.html", {
        "worklist": listing, "choices": choices, "notices": notices, "all_merchants": len(merchants) > 1,
        "merchant_id": chosen if not notices or chosen.isdigit() else "",
        "page_size": work.PAGE_SIZE, "is_manager": work.may_manage(request.user),
    })


@require_http_methods(["GET", "HEAD", "POST"])
def saved_view_create_view(request):
    """GET: the form to name (and share) the page `?url=`; POST: save it."""
    merchants = list(visible_merchants(request.user).order_by("name", "id").values_list("pk", "name"))
    if request.method != "POST":
        url = request.GET.get("url", "")
        try:
            url = saved_view_url(url)
        except CollectionsError as exc:
            messages.error(request, f"Nothing to save: {exc}.")
            return redirect(reverse("overview"))
        return render(request, "arbook/collections/save_view.html", {"url": url, "merchants": merchants})
    form = SavedViewForm(request.POST)
    back = _back(request, form.data.get("url"), reverse("overview"))
    if not form.is_valid():
        return _invalid(request, back, "View not saved", form)
    data = form.cleaned_data
    shared_with = None
    if data["share"] is not None:
        shared_with = visible_merchants(request.user).filter(pk=data["share"]).first()
        if shared_with is None:
            raise Http404("No such merchant.")
    return _decide(request, back, "View not saved",
                   lambda: saved_view_save(user=request.user, name=data["name"], url=data["url"],
                                           shared_with=shared_with),
                   lambda v: f"View \u201c{v.name}\u201d saved" + (f", shared with {shared_with}'s members."
                                                                  if shared_with else " (only you see it)."))


@require_POST
def saved_view_delete_view(request, pk: int):
    view = selectors.saved_view_for_user(user=request.user, pk=pk)
    back = _back(request, request.POST.get("next"), reverse("overview"))
    return _decide(request, back, "View not deleted", lambda: saved_view_delete(view=view, user=request.user),
                   lambda _v: "View deleted.")


urlpatterns = [
    path("worklist/", worklist_view, name="worklist"),
    path("customers/<int:pk>/promises/", promise_create_view, name="promise_create"),
    path("promises/<int:pk>/cancel/", promise_cancel_view, name="promise_cancel"),
    path("views/", saved_view_create_view, name="saved_view_create"),
    path("views/<int:pk>/delete/", saved_view_delete_view, name="saved_view_delete"),
    path("customers/<int:pk>/notes/", note_create_view, name="note_create"),
    path("customers/<int:pk>/holds/", hold_create_view, name="hold_create"),
    path("customers/assign/", customers_assign_view, name="customers_assign"),
    path("notes/<int:pk>/edit/", note_edit_view, name="note_edit"),
    path("holds/<int:pk>/release/", hold_release_view, name="hold_release"),
]
