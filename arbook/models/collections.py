"""The collector's records: notes, holds (disputes), promises to pay, saved views, and the audit of
every decision staff make.

A note or a hold belongs to a customer, and optionally to one of its invoices (a hold without an
invoice holds the whole customer). Notes keep every earlier text (`NoteRevision`); holds are
never deleted, only released, and expire by themselves at the end of their `until` day (in the
merchant's zone), so what was held when stays readable. `AuditEntry` is the trail: who did what,
when, to which object, written by the services in the same transaction as the change.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from arbook.status import PromiseState

from .customers import Customer
from .invoices import Invoice
from .merchants import Merchant


class Note(models.Model):
    """What a collector wrote about a customer (or one of its invoices): a call, an e-mail, a fact."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notes")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    #: When the author last changed the text (None: never); the earlier texts are its revisions.
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "-created_at", "-id"], name="note_customer_recent"),
                   models.Index(fields=["invoice", "-created_at", "-id"], name="note_invoice_recent",
                                condition=Q(invoice__isnull=False))]

    def __str__(self) -> str:
        return f"Note {self.pk} on {self.customer_id}"


class NoteRevision(models.Model):
    """A note's text before one edit (the note holds the current text)."""

    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="revisions")
    text = models.TextField()
    #: When that text was written (the note's creation or its previous edit).
    written_at = models.DateTimeField()
    replaced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-replaced_at", "-id"]


class HoldReason(models.Model):
    """One entry of a merchant's list of reasons to hold (dispute) an invoice or a customer."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="hold_reasons")
    label = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True, help_text="Offered for new holds (existing ones keep it).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "label"], name="hold_reason_unique_label")]
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class Hold(models.Model):
    """A dispute or a hold: while active, its invoices (or all of its customer's) leave the
    worklists and the reminders, and are marked in the aging report."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="holds")
    #: None: the whole customer is held.
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.CASCADE, related_name="holds")
    reason = models.ForeignKey(HoldReason, on_delete=models.PROTECT, related_name="+")
    detail = models.TextField(blank=True)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)
    #: The hold ends by itself at the end of this day (the merchant's zone); None: until released.
    until = models.DateField(null=True, blank=True)
    #: The instant `until` ends (stored, so "active now" is one comparison in SQL).
    ends_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "-opened_at"], name="hold_customer_recent"),
                   models.Index(fields=["invoice"], name="hold_invoice", condition=Q(invoice__isnull=False)),
                   # The holds that may be active: the aging report and the worklist read only these.
                   models.Index(fields=["merchant", "ends_at"], name="hold_open",
                                condition=Q(released_at__isnull=True))]

    def __str__(self) -> str:
        return f"Hold {self.pk} ({self.reason})"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.released_at is None and (self.ends_at is None or self.ends_at > now)

    @staticmethod
    def active_q(now, prefix: str = "") -> Q:
        """Holds active at `now` (`is_active` in SQL): not released, not past their `until` day."""
        return Q(**{f"{prefix}released_at__isnull": True}) & (
            Q(**{f"{prefix}ends_at__isnull": True}) | Q(**{f"{prefix}ends_at__gt": now}))


class Promise(models.Model):
    """A customer's promise to pay an amount in one currency by a day: on given invoices, or (none
    given) on any of its invoices in that currency, oldest first.

    Its progress (`paid`) is what payments recorded by the invoices' write path (a sync read, a
    notification, a live check) took off those invoices after the promise was made, paid by the
    end of its day in the merchant's zone (`deadline`). `arbook.services.collections` keeps the
    state: kept as soon as the payments cover it; once the day is over, partly kept or broken."""

    State = PromiseState

    #: The states a payment can still move (a late sync read may bring a payment made in time).
    OBSERVED = (State.OPEN, State.PARTLY_KEPT, State.BROKEN)

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="promises")
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3)
    promised_for = models.DateField()
    #: The end of `promised_for` in the merchant's zone: payments by then count.
    deadline = models.DateTimeField()
    #: Empty: any of the customer's invoices in `currency`, oldest first.
    invoices = models.ManyToManyField(Invoice, blank=True, related_name="promises")
    detail = models.TextField(blank=True)
    made_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    made_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    paid = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    #: When the state last became final-looking (kept, partly kept, broken, cancelled).
    settled_at = models.DateTimeField(null=True, blank=True)
    #: When someone acted on a broken or partly kept promise (a note, a new promise): it leaves the
    #: worklist's top.
    followed_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "-made_at"], name="promise_customer_recent"),
                   # What payments may still move, and what the day's end turns into broken promises.
                   models.Index(fields=["merchant", "deadline"], name="promise_observed",
                                condition=Q(state__in=["open", "partly_kept", "broken"]))]
        permissions = [("manage_collections", "Can see every collector's worklist")]

    def __str__(self) -> str:
        return f"Promise {self.pk}: {self.currency} {self.amount} by {self.promised_for}"

    @property
    def remaining(self):
        return max(self.amount - self.paid, 0)


class SavedView(models.Model):
    """A list, aging, customer-list or worklist URL kept under a name, private to its owner or
    shared with the members of one merchant. Opening it runs the page again with the viewer's own
    scope: a shared view carries filters, never data."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    #: Path and query string (`/invoices/?status=open`): only arbook's own list pages.
    url = models.CharField(max_length=2000)
    #: Shared with this merchant's members; None: private.
    shared_with = models.ForeignKey(Merchant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["shared_with"], name="savedview_shared",
                                condition=Q(shared_with__isnull=False))]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="savedview_unique_name")]

    def __str__(self) -> str:
        return self.name


class AuditEntry(models.Model):
    """One decision by a person, as it was made (written with the change, in its transaction)."""

    class Action(models.TextChoices):
        NOTE_ADDED = "note_added", "Note added"
        NOTE_EDITED = "note_edited", "Note edited"
        HOLD_OPENED = "hold_opened", "Hold opened"
        HOLD_RELEASED = "hold_released", "Hold released"
        COLLECTOR_ASSIGNED = "collector_assigned", "Collector assigned"
        PROMISE_MADE = "promise_made", "Promise recorded"
        PROMISE_SETTLED = "promise_settled", "Promise settled"
        PROMISE_CANCELLED = "promise_cancelled", "Promise cancelled"
        VIEW_SAVED = "view_saved", "View saved"
        VIEW_DELETED = "view_deleted", "View deleted"
        REMINDERS_SET = "reminders_set", "Reminder settings changed"

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=32, choices=Action.choices)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 db_index=False)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                db_index=False)
    #: The object the decision made or changed ("note:12", "hold:3", "customer:9").
    target = models.CharField(max_length=64)
    #: What was decided, in words, for the log; `data` holds the values.
    summary = models.CharField(max_length=255)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "-at"], name="audit_merchant_recent"),
                   models.Index(fields=["customer", "-at"], name="audit_customer_recent",
                                condition=Q(customer__isnull=False))]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.get_action_display()}: {self.summary}"
