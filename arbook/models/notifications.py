"""Payment notifications (webhooks) as received: a raw, append-only record of every delivery.

Every request to `/hooks/<provider>/<token>/` becomes one row *before* anything is applied, with
its verification result, so nothing is lost (a bad or unparseable delivery is kept as evidence)
and every status an invoice got from a notification can be traced to the delivery that set it
(`InvoiceEvent.notification`). Rows are never edited except for the apply bookkeeping
(`outcome`, `invoice`, `applied_at`, `attempts`).
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from arbook.status import NotificationOutcome, NotificationVerification

from .invoices import Invoice
from .merchants import GatewayCredential

#: Bodies larger than this are refused (413) and only their first STORED_BODY_MAX bytes kept.
BODY_MAX = 64 * 1024
STORED_BODY_MAX = BODY_MAX


class Notification(models.Model):
    #: Values, labels and badge colours: arbook.status (the status registry).
    Verification = NotificationVerification
    Outcome = NotificationOutcome

    #: Outcomes that settle a provider event: a later delivery of the same event is a duplicate.
    SETTLED = (Outcome.APPLIED, Outcome.UNCHANGED, Outcome.STALE)

    credential = models.ForeignKey(GatewayCredential, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="notifications")
    provider = models.CharField(max_length=16)
    received_at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=8, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    #: Request headers, without secret-bearing ones (x-callback-token, authorization, cookies, ...).
    headers = models.JSONField(default=dict, blank=True)
    #: The body as received (decoded as UTF-8), secret-bearing fields masked, at most STORED_BODY_MAX bytes.
    body = models.TextField(blank=True)
    body_size = models.PositiveIntegerField(default=0, help_text="Bytes received (or announced when refused).")
    body_truncated = models.BooleanField(default=False)

    verification = models.CharField(max_length=16, choices=Verification.choices)
    verification_reason = models.CharField(max_length=255, blank=True, help_text="Never contains a secret.")
    #: The normalized change parsed from the body (`arbook.services.invoice_write.change_of`).
    parsed = models.JSONField(null=True, blank=True)
    event_id = models.CharField(max_length=128, blank=True, help_text="The provider's own id of this event.")
    #: What makes two deliveries the same provider event (dedupe key).
    event_key = models.CharField(max_length=255, blank=True)
    event_at = models.DateTimeField(null=True, blank=True, help_text="The provider's own time of this event.")
    #: How the provider names the invoice: its external id, or (FarPay) the invoice number.
    external_id = models.CharField(max_length=128, blank=True)

    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    outcome_reason = models.CharField(max_length=255, blank=True)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="notifications")
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["-received_at"], name="notif_received"),
            models.Index(fields=["credential", "event_key"], name="notif_cred_event"),
            models.Index(fields=["invoice", "event_at"], name="notif_invoice_event_at"),
            # The sync looks for waiting notifications after every page: keep that lookup tiny.
            models.Index(fields=["credential", "external_id"], name="notif_pending",
                         condition=Q(outcome="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.provider} notification #{self.pk} ({self.verification}, {self.outcome})"
