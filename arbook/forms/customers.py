"""The customer pages' forms: merge, split, and the statement's dates and format.

Who may merge or split: any member of the customer's merchant (the person who chases a debtor
knows best that two records are one), not only staff; the service records who decided
(`CustomerIdentity.decided_by`), so a decision is traceable and a later sync never undoes it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django import forms

from arbook import params

STATEMENT_FORMATS = (("pdf", "PDF"), ("csv", "CSV"), ("xlsx", "Excel (XLSX)"))
#: The statement's default payment period: the last 30 days up to the as-of date.
DEFAULT_PERIOD_DAYS = 30


class IdsField(forms.MultipleChoiceField):
    """Row ids as a POST sends them (checked ids: the view scopes them; an id it cannot see is a 404)."""

    def valid_value(self, value) -> bool:
        try:
            params.parse_int(str(value), min_value=1, max_value=params.MAX_ID)
        except params.ParamError:
            return False
        return True

    def clean(self, value):
        return [int(v) for v in super().clean(value)]


class MergeForm(forms.Form):
    other = IdsField(label="Customers merged into this one", error_messages={
        "required": "Choose at least one customer to merge into this one."})
    next = forms.CharField(required=False, max_length=500)


class SplitForm(forms.Form):
    identity = IdsField(label="Identities moved to the new customer", error_messages={
        "required": "Choose the identities (e-mail, phone, reference) that belong to the new customer."})
    name = forms.CharField(label="Name of the new customer", max_length=255, required=False)


@dataclass(frozen=True)
class StatementOptions:
    as_of: dt.date
    start: dt.date
    end: dt.date
    fmt: str


def statement_options(query, *, today: dt.date) -> tuple[StatementOptions, list[str]]:
    """`as_of`, `from`, `to` and `format` of the statement link (`arbook.params` reads the dates).

    Defaults: as of `today`, payments of the 30 days up to the as-of date, PDF. Each value that
    is malformed or out of range gives a message (the view answers 400 with them, never a file)."""
    errors: list[str] = []

    def day(name: str, label: str, default: dt.date) -> dt.date:
        text = (query.get(name) or "").strip()
        if not text:
            return default
        try:
            return params.parse_date(text)
        except params.ParamError as exc:
            errors.append(f"{label}: {exc}")
            return default

    as_of = day("as_of", "As of", today)
    end = day("to", "Payments to", as_of)
    start = day("from", "Payments from", end - dt.timedelta(days=DEFAULT_PERIOD_DAYS - 1))
    if start > end:
        errors.append("Payments from: the period starts after it ends.")
    fmt = (query.get("format") or "pdf").strip().lower()
    if fmt not in dict(STATEMENT_FORMATS):
        errors.append(f"Format: “{params.clip(fmt)}” is not one of pdf, csv or xlsx.")
        fmt = "pdf"
    return StatementOptions(as_of=as_of, start=start, end=end, fmt=fmt), errors


# -- the collector's records (notes, holds, assignment) ------------------------------------------

class NoteForm(forms.Form):
    text = forms.CharField(label="Note", max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}),
                           error_messages={"required": "Write something in the note."})
    #: An invoice of the customer the note is about (optional; the view checks it is the customer's).
    invoice = forms.IntegerField(required=False, min_value=1, max_value=params.MAX_ID, widget=forms.HiddenInput)
    next = forms.CharField(required=False, max_length=500)


class NoteEditForm(forms.Form):
    text = forms.CharField(label="Note", max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}),
                           error_messages={"required": "A note cannot be emptied; write what it should say."})
    next = forms.CharField(required=False, max_length=500)


class HoldForm(forms.Form):
    """Open a hold: one of the merchant's reasons, words of one's own, and until when (optional)."""

    reason = forms.ChoiceField(label="Reason", error_messages={"invalid_choice": "Choose one of the listed reasons.",
                                                               "required": "Choose a reason."})
    detail = forms.CharField(label="Details", required=False, max_length=2_000,
                             widget=forms.Textarea(attrs={"rows": 2}))
    until = forms.DateField(label="Until (inclusive; empty: until released)", required=False,
                            widget=forms.DateInput(attrs={"type": "date"}),
                            error_messages={"invalid": "Give the end date as YYYY-MM-DD."})
    invoice = forms.IntegerField(required=False, min_value=1, max_value=params.MAX_ID, widget=forms.HiddenInput)
    next = forms.CharField(required=False, max_length=500)

    def __init__(self, *args, reasons=(), **kwargs):
        """`reasons`: the labels offered (the merchant's list)."""
        super().__init__(*args, **kwargs)
        self.fields["reason"].choices = [(label, label) for label in reasons]


class AssignForm(forms.Form):
    """Bulk assignment from the customer list: the ticked customers, and who collects them."""

    customer = IdsField(label="Customers", error_messages={"required": "Tick the customers to assign."})
    #: A user id, or empty for "nobody".
    collector = forms.IntegerField(required=False, min_value=1, max_value=params.MAX_ID,
                                   error_messages={"invalid": "Choose a collector from the list."})
    next = forms.CharField(required=False, max_length=500)


class PromiseForm(forms.Form):
    """A promise to pay: how much, in which currency, by when, on which invoices (none: any of the
    customer's in that currency, oldest first)."""

    amount = forms.DecimalField(label="Amount", max_digits=16, decimal_places=2, min_value=Decimal("0.01"),
                                error_messages={"required": "Give the promised amount.",
                                                "invalid": "Give the amount as a number, e.g. 1500000.00.",
                                                "min_value": "A promise is for an amount above zero.",
                                                "max_digits": "That amount is too large.",
                                                "max_decimal_places": "Give at most two decimals."})
    currency = forms.RegexField(label="Currency", regex=r"^[A-Za-z]{3}$", max_length=3,
                                error_messages={"required": "Choose the currency.",
                                                "invalid": "A currency is a three-letter code (IDR, USD)."})
    promised_for = forms.DateField(label="By (inclusive)", widget=forms.DateInput(attrs={"type": "date"}),
                                   error_messages={"required": "Give the day the customer will pay by.",
                                                   "invalid": "Give the day as YYYY-MM-DD."})
    invoice = IdsField(label="Invoices", required=False)
    detail = forms.CharField(label="Details", required=False, max_length=2_000,
                             widget=forms.Textarea(attrs={"rows": 2}))
    next = forms.CharField(required=False, max_length=500)

    def clean_promised_for(self):
        try:
            return params.check_date(self.cleaned_data["promised_for"])
        except params.ParamError as exc:
            raise forms.ValidationError(str(exc)) from None


class SavedViewForm(forms.Form):
    """Save the page being looked at (its path and query string) under a name."""

    name = forms.CharField(label="Name", max_length=80, error_messages={"required": "Give the view a name."})
    url = forms.CharField(max_length=2000, widget=forms.HiddenInput,
                          error_messages={"required": "Nothing to save: open a list first."})
    #: A merchant id to share the view with its members; empty: private.
    share = forms.IntegerField(required=False, min_value=1, max_value=params.MAX_ID,
                               error_messages={"invalid": "Choose a merchant from the list."})
    next = forms.CharField(required=False, max_length=500)


class ReminderSettingsForm(forms.Form):
    opt_out = forms.BooleanField(label="No reminders for this customer", required=False)
    email = forms.EmailField(label="Send reminders to", required=False, max_length=255,
                             error_messages={"invalid": "Give a valid e-mail address (or leave it empty)."})
