"""The normalized payment states with their labels and badge colours, defined once.

The values come from `gateways.status` (shared with the clients); everything the pages need to
show a state (label, colour, whether it ages) lives in this one table.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from gateways import status as st


@dataclass(frozen=True)
class StatusInfo:
    value: str
    label: str
    colour: str  # a CSS class suffix: badge--<colour>, defined in static/arbook/app.css
    in_aging: str  # "yes", "no", or "apart"
    meaning: str


STATUSES: dict[str, StatusInfo] = {
    s.value: s
    for s in (
        StatusInfo(st.DRAFT, "Draft", "grey", "no", "not yet a receivable (draft, proforma)"),
        StatusInfo(st.OPEN, "Open", "blue", "yes", "issued, unpaid"),
        StatusInfo(st.PARTIALLY_PAID, "Partially paid", "teal", "yes", "some paid, some still owed"),
        StatusInfo(st.PROCESSING, "Processing", "purple", "yes", "a payment is scheduled or in progress"),
        StatusInfo(st.FAILED, "Failed", "red", "yes", "a payment attempt failed; still owed"),
        StatusInfo(st.CHARGED_BACK, "Charged back", "orange", "yes", "money was reversed; owed again"),
        StatusInfo(st.PAID, "Paid", "green", "no", "settled in full"),
        StatusInfo(st.EXPIRED, "Expired", "amber", "apart", "the payment link/VA expired unpaid"),
        StatusInfo(st.CANCELLED, "Cancelled", "grey", "no", "voided"),
        StatusInfo(st.UNKNOWN, "Unknown", "black", "apart", "a provider value arbook does not know"),
    )
}
assert tuple(STATUSES) == st.ALL


class InvoiceStatus(models.TextChoices):
    DRAFT = st.DRAFT, "Draft"
    OPEN = st.OPEN, "Open"
    PARTIALLY_PAID = st.PARTIALLY_PAID, "Partially paid"
    PROCESSING = st.PROCESSING, "Processing"
    FAILED = st.FAILED, "Failed"
    CHARGED_BACK = st.CHARGED_BACK, "Charged back"
    PAID = st.PAID, "Paid"
    EXPIRED = st.EXPIRED, "Expired"
    CANCELLED = st.CANCELLED, "Cancelled"
    UNKNOWN = st.UNKNOWN, "Unknown"


RECEIVABLE = st.RECEIVABLE
APART = st.APART
