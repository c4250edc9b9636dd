"""The aging report's options (as-of date, basis, buckets, grouping); the list filters are InvoiceFilter's."""
from __future__ import annotations

from django import forms

from arbook import params
from arbook.selectors import aging as sel


class AgingOptionsForm(forms.Form):
    as_of = params.DateField(required=False, label="As of", widget=forms.DateInput(attrs={"type": "date"}),
                             error_messages={"invalid": "The as-of date must be a date like 2025-06-30."})
    basis = forms.ChoiceField(required=False, label="Age by", choices=[("due", "Due date"), ("issued", "Issue date")])
    buckets = forms.CharField(required=False, label="Buckets (days)", max_length=60,
                              widget=forms.TextInput(attrs={"placeholder": "30,60,90", "size": 10}))
    group = forms.ChoiceField(required=False, label="Group by", choices=[
        ("", "Payment state"), ("merchant", "Merchant"), ("provider", "Gateway"), ("customer", "Customer")])
    rows = forms.ChoiceField(required=False, label="Sum of (grouped)", choices=[
        ("receivable", "Receivable states"), *[(r, sel.ROW_LABELS[r]) for r in sel.ROWS], ("all", "Net total")])
    top = params.IntegerField(required=False, label="Groups shown", min_value=1, max_value=sel.MAX_TOP,
                              widget=forms.NumberInput(attrs={"size": 4}))
