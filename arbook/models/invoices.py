"""Invoices as last seen at their gateway, and the append-only history of their changes."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import models
from django.db.models import Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Greatest

from arbook.jsonutil import RawJSONEncoder
from arbook.status import RECEIVABLE, InvoiceStatus

from .merchants import PROVIDER_CHOICES, GatewayCredential, Merchant

MONEY = {"max_digits": 18, "decimal_places": 2}
ISSUED_INCLUDE = ["status", "merchant", "currency", "amount", "outstanding", "paid_amount"]
PAID_INCLUDE = ["status", "merchant", "currency", "amount", "paid_amount", "issued_at", "id"]


class Invoice(models.Model):
    """One receivable, unique per (credential, external_id).

    Money is Decimal with `currency` beside it; `amount` may be unknown (Faspay's list has none);
    `outstanding` is what is still owed (negative = an unapplied credit). Overdue is derived
    (a receivable state with `due_at` in the past), never stored.
    """

    # No single-column indexes on the foreign keys: the composite indexes below lead with them
    # (merchant, ...) and (credential, external_id), and every index is paid for on each write.
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="invoices", db_index=False)
    credential = models.ForeignKey(GatewayCredential, on_delete=models.PROTECT, related_name="invoices",
                                   db_index=False)
    provider = models.CharField(max_length=16, choices=PROVIDER_CHOICES)
    external_id = models.CharField(max_length=128)
    number = models.CharField(max_length=128, blank=True)
    customer_name = models.CharField(max_length=255, blank=True)
    customer_email = models.CharField(max_length=255, blank=True)
    customer_ref = models.CharField(max_length=128, blank=True)
    customer_phone = models.CharField(max_length=64, blank=True, default="", db_default="")
    #: The debtor across gateways (`arbook.models.customers`), set on the write path.
    customer = models.ForeignKey("arbook.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="invoices", db_index=False)
    currency = models.CharField(max_length=3, default="IDR")
    amount = models.DecimalField(null=True, blank=True, **MONEY)
    outstanding = models.DecimalField(null=True, blank=True, **MONEY)
    paid_amount = models.DecimalField(null=True, blank=True, **MONEY)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.OPEN)
    provider_status = models.CharField(max_length=64, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    provider_updated_at = models.DateTimeField(null=True, blank=True)
    payment_channel = models.CharField(max_length=128, blank=True)
    checkout_url = models.CharField(max_length=1000, blank=True)
    raw = models.JSONField(default=dict, blank=True, encoder=RawJSONEncoder)
    #: Digest of the normalized fields, so an unchanged invoice is recognised without a rewrite.
    content_hash = models.CharField(max_length=40, blank=True)
    first_seen_at = models.DateTimeField()
    last_synced_at = models.DateTimeField()
    #: Set when a full read no longer returns the invoice (and by which run); nothing is ever
    #: deleted, and the flag clears when the invoice is seen again.
    missing_since = models.DateTimeField(null=True, blank=True)
    missing_since_run = models.ForeignKey("arbook.SyncRun", null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+", db_constraint=False, db_index=False)
    #: `seen_at` of its latest InvoiceEvent (None: none yet), kept by `InvoiceEvent.objects.append()`.
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: The latest of `last_event_at` and `paid_at`: an invoice whose `changed_at` is before a moment
    #: (or null) stood then as it stands now, so as-of aging reads its history only for the others.
    #: Computed by the database, so no writer of `paid_at` can forget it.
    changed_at = models.GeneratedField(
        expression=Greatest(Coalesce("last_event_at", "paid_at"), Coalesce("paid_at", "last_event_at")),
        output_field=models.DateTimeField(null=True, blank=True), db_persist=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["credential", "external_id"], name="invoice_unique_per_credential"),
        ]
        indexes = [
            # The aging aggregate and the status/due filters, scoped by merchant: an index-only scan.
            # (Carrying the customer id too made aging by customer 1.25 -> 0.87 s but the due-basis
            # aging of today 0.21 -> 0.28 s at 1M: left out until aging by customer reads balances.)
            models.Index(fields=["merchant", "status", "due_at"], include=["currency", "outstanding"],
                         name="inv_merchant_status_due"),
            models.Index(fields=["status", "due_at", "id"], include=["currency", "outstanding"],
                         name="inv_status_due"),
            models.Index(fields=["merchant", "-issued_at", "-id"], name="inv_merchant_issued"),
            # Date ranges carry what the overview sums (sales by issue date, collections by paid
            # date) and what the list needs to choose a page's ids: index-only scans (migration 0011).
            models.Index(fields=["issued_at"], include=ISSUED_INCLUDE, name="inv_issued_cover"),
            models.Index(fields=["paid_at"], include=PAID_INCLUDE, name="inv_paid_cover",
                         condition=Q(paid_at__isnull=False)),
            # Overdue only, newest issued first (the collector's list): the receivables in issue
            # order with the filter's columns, tested index-only (the list chooses a filtered
            # page's ids first), not on every newer invoice's table row (migration 0024).
            models.Index(fields=["-issued_at", "-id"], include=["due_at", "merchant", "status"],
                         condition=Q(status__in=RECEIVABLE), name="inv_receivable_issued"),
            models.Index(fields=["customer_name"], name="inv_customer_name"),
            # A customer's page (its invoices newest first, a keyset page), its aging, statement and
            # summary: every invoice of one customer from one index range, index-only for the sums.
            models.Index(fields=["customer", "-issued_at", "-id"],
                         include=["merchant", "status", "due_at", "currency", "outstanding", "last_event_at"],
                         name="inv_customer_issued"),
            models.Index(fields=["number"], name="inv_number"),
            models.Index(fields=["external_id"], name="inv_external_id"),
        ]

    def __str__(self) -> str:
        return self.number or self.external_id


def _advance_last_event_at(latest: dict[int, datetime]) -> None:
    """Move `Invoice.last_event_at` forward to these times (one UPDATE per distinct time: a sync
    batch's events share one); never backwards, and no write when it is already there."""
    by_time: dict = {}
    for invoice_id, seen_at in latest.items():
        by_time.setdefault(seen_at, []).append(invoice_id)
    for seen_at, ids in by_time.items():
        (Invoice.objects.filter(pk__in=ids).filter(Q(last_event_at__isnull=True) | Q(last_event_at__lt=seen_at))
         .update(last_event_at=seen_at))


class InvoiceEventQuerySet(models.QuerySet):
    def append(self, events: Iterable["InvoiceEvent"]) -> list["InvoiceEvent"]:
        """Insert new events, each linked to its invoice's previous event (`prev_seen_at`).

        One query for the invoices' latest events, one insert. An event dated before one already
        stored (a clock step back) relinks that invoice's whole chain, so the links always follow
        (seen_at, id) order.
        """
        events = list(events)
        if not events:
            return events
        latest = dict(self.model.objects.filter(invoice_id__in={e.invoice_id for e in events})
                      .order_by().values("invoice_id").annotate(m=Max("seen_at")).values_list("invoice_id", "m"))
        out_of_order = set()
        for event in events:
            previous = latest.get(event.invoice_id)
            if previous is not None and event.seen_at < previous:
                out_of_order.add(event.invoice_id)
            event.prev_seen_at = previous
            latest[event.invoice_id] = event.seen_at if previous is None else max(previous, event.seen_at)
        created = self.bulk_create(events)
        if out_of_order:
            self.relink(out_of_order)
        _advance_last_event_at({e.invoice_id: latest[e.invoice_id] for e in events})
        return created

    def relink(self, invoice_ids: Iterable[int] | None = None) -> int:
        """Recompute `prev_seen_at` of these invoices' events (all events when None)."""
        earlier = (self.model.objects.filter(invoice_id=OuterRef("invoice_id"))
                   .filter(Q(seen_at__lt=OuterRef("seen_at")) | Q(seen_at=OuterRef("seen_at"), id__lt=OuterRef("id")))
                   .order_by().values("invoice_id").annotate(m=Max("seen_at")).values("m"))
        qs = self.model.objects.all() if invoice_ids is None else self.model.objects.filter(invoice_id__in=invoice_ids)
        return qs.update(prev_seen_at=Subquery(earlier))


class InvoiceEvent(models.Model):
    """One observed change of an invoice's status, outstanding or paid date (append-only).

    The state of an invoice at a past moment is the `*_before` of its first event after that
    moment (or its current state when there is none): that is what as-of aging reads. Insert
    events with `InvoiceEvent.objects.append()` (or `save()`), which keep `prev_seen_at` right.
    """

    class Source(models.TextChoices):
        SYNC = "sync", "Sync"
        NOTIFICATION = "notification", "Notification"
        UPLOAD = "upload", "Upload"

    #: Indexed by event_invoice_seen, which it leads (a second index of its own cost every write).
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events", db_index=False)
    seen_at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.SYNC)
    sync_run = models.ForeignKey("arbook.SyncRun", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="events")
    #: The payment notification that made this change (source = notification).
    #: (A partial index: a sync's events, nearly all of them, have none.)
    notification = models.ForeignKey("arbook.Notification", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="events", db_index=False)
    status_before = models.CharField(max_length=16, choices=InvoiceStatus.choices, blank=True)
    status_after = models.CharField(max_length=16, choices=InvoiceStatus.choices, blank=True)
    outstanding_before = models.DecimalField(null=True, blank=True, **MONEY)
    outstanding_after = models.DecimalField(null=True, blank=True, **MONEY)
    paid_at_before = models.DateTimeField(null=True, blank=True)
    paid_at_after = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=255, blank=True)
    #: `seen_at` of the invoice's previous event (None for its first). It makes "the first event
    #: at or after a moment" a plain join condition (seen_at >= t and (prev null or prev < t)),
    #: which as-of aging joins in one pass instead of one lookup per invoice.
    prev_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = InvoiceEventQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "seen_at", "id"]
        indexes = [models.Index(fields=["invoice", "seen_at"], name="event_invoice_seen"),
                   models.Index(fields=["seen_at"], name="event_seen"),
                   models.Index(fields=["notification"], condition=models.Q(notification__isnull=False),
                                name="event_notification")]

    def __str__(self) -> str:
        return f"{self.invoice}: {self.status_before or '-'} → {self.status_after or '-'}"

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and self.pk is None:
            type(self).objects.append([self])  # links prev_seen_at; bulk_create sets pk and state
            return
        super().save(*args, **kwargs)
