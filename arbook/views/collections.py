"""The collector's POSTs: notes, holds and assignment (`arbook.services.collections` decides).

Thin, like every view: the form reads the POST, the selectors fetch each object scoped to the
user (another merchant's customer, note or hold is a 404), the service applies its rules and
writes the audit entry; the view answers with a message and a redirect back.
"""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from arbook.forms.customers import AssignForm, HoldForm, NoteEditForm, NoteForm
from arbook.models import Customer, Invoice
from arbook.scoping import scope
from arbook.selectors import collections as selectors
from arbook.selectors.customer_pages import customer_for_user
from arbook.services.collections import (
    CollectionsError,
    customers_assign,
    hold_open,
    hold_release,
    note_add,
    note_edit,
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


urlpatterns = [
    path("customers/<int:pk>/notes/", note_create_view, name="note_create"),
    path("customers/<int:pk>/holds/", hold_create_view, name="hold_create"),
    path("customers/assign/", customers_assign_view, name="customers_assign"),
    path("notes/<int:pk>/edit/", note_edit_view, name="note_edit"),
    path("holds/<int:pk>/release/", hold_release_view, name="hold_release"),
]
