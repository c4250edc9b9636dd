"""Reminders (dunning): a merchant's sequence of steps relative to the due date, and the outbox.

A `ReminderStep` says "N days after (or, negative, before) the due date, write this". A run
(`arbook.services.reminders`) chooses for each customer the invoices that have reached a step
and not been reminded at it, re-checks them at their gateway, and writes one `ReminderMessage`
per customer and step listing them, with one `ReminderItem` per invoice. An item's
(invoice, step) is unique: an invoice is reminded at most once per step, whatever happens to the
message. The message is written (and committed) before it is handed to SMTP, so a crash between
the two leaves it visibly "unknown", never silently resent. `ReminderDrop` records each invoice
that was chosen and then left out, and why.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from arbook.status import ReminderState

from .customers import Customer
from .invoices import Invoice
from .merchants import Merchant


class ReminderStep(models.Model):
    """One step of a merchant's reminder sequence."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="reminder_steps")
    #: Days after the due date (negative: before it) at which an invoice reaches this step.
    offset_days = models.IntegerField(help_text="Days after the due date (negative: before it), e.g. -3, 7, 30.")
    name = models.CharField(max_length=80, blank=True, help_text="For staff, e.g. “Friendly nudge”.")
    #: Django template source; context: customer, merchant, invoices (each with its ways to pay), step, today.
    subject = models.CharField(max_length=200)
    body = models.TextField()
    attach_statement = models.BooleanField(default=False, help_text="Attach the customer's statement (PDF).")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["merchant", "offset_days", "pk"]
        constraints = [models.UniqueConstraint(fields=["merchant", "offset_days"], name="reminder_step_unique_offset")]

    def __str__(self) -> str:
        when = "on the due date" if self.offset_days == 0 else (
            f"{abs(self.offset_days)} days {'after' if self.offset_days > 0 else 'before'} the due date")
        return f"{self.name or 'Reminder'} ({when})"


class ReminderMessage(models.Model):
    """One e-mail to one customer at one step of one run day: the outbox row."""

    State = ReminderState

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="reminders")
    step = models.ForeignKey(ReminderStep, on_delete=models.PROTECT, related_name="messages")
    #: The run's day in the merchant's zone.
    day = models.DateField()
    to = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: When it was handed to SMTP (state "unknown" from then until SMTP's answer is recorded).
    handed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "step", "day"], name="reminder_unique_per_day")]
        indexes = [models.Index(fields=["customer", "-created_at"], name="reminder_customer_recent"),
                   models.Index(fields=["merchant", "day"], name="reminder_merchant_day"),
                   models.Index(fields=["state"], name="reminder_waiting",
                                condition=Q(state__in=["queued", "unknown"]))]

    def __str__(self) -> str:
        return f"Reminder {self.pk} to {self.to} ({self.get_state_display()})"


class ReminderItem(models.Model):
    """An invoice on a reminder: at most one per (invoice, step), ever."""

    message = models.ForeignKey(ReminderMessage, on_delete=models.CASCADE, related_name="items")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="reminder_items")
    step = models.ForeignKey(ReminderStep, on_delete=models.PROTECT, related_name="+", db_index=False)
    #: What it owed as the e-mail says it (after the live re-check).
    outstanding = models.DecimalField(max_digits=18, decimal_places=2, null=True)
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["invoice", "step"], name="reminder_once_per_step")]


class ReminderDrop(models.Model):
    """An invoice a run chose for a step and then left out, with the reason (the reminder log)."""

    class Reason(models.TextChoices):
        SETTLED = "settled", "Found paid, processing or cancelled at the gateway"
        CHANGED = "changed", "Changed since it was chosen"
        UNREACHABLE = "unreachable", "Gateway unreachable: not chased on stale data"
        HELD = "held", "On hold"
        PROMISED = "promised", "Under an open promise to pay"
        OPTED_OUT = "opted_out", "Customer opted out of reminders"
        NO_EMAIL = "no_email", "No e-mail address for the customer"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="+")
    step = models.ForeignKey(ReminderStep, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=255, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["merchant", "day"], name="reminder_drop_day")]
