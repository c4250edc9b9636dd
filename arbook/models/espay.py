"""Espay batches: an uploaded spreadsheet, its lines, the calls (chunks) that sent them, and the
virtual-account numbers Espay returned per line and bank.

Why chunks are rows of their own: Espay takes at most 500 invoices a call and its only idempotency
key is the caller's `rq_uuid`. Each chunk's `rq_uuid` is written (and committed) *before* the call,
so a call whose outcome is unknown (timeout after sending, worker killed mid-call) is retried with
the same `rq_uuid` and the same lines, never as a new request.
"""
from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.db import models
from django.db.models import Q

from arbook.status import EspayBatchStatus, EspayChunkStatus, EspayLineStatus

from .invoices import MONEY, Invoice
from .merchants import GatewayCredential, Merchant

#: Attribute sizes of the line fields. Espay's sendinvoice page documents sizes only for the
#: request envelope (rq_uuid ANS 255, comm_code AN 32, total_invoices N 3, ...), not for the
#: invoice lines; these are arbook's choices (arbook.services.espay_files) and the upload validation
#: enforces exactly them.
DOC_NO_MAX = 50
MEMBER_CODE_MAX = 50
MEMBER_NAME_MAX = 100
DESCRIPTION_MAX = 255


class EspayBatch(models.Model):
    """One uploaded file for one Espay credential, from validation to per-line results."""

    #: Values, labels and badge colours: arbook.status (the status registry).
    Status = EspayBatchStatus

    #: States in which a batch may still send (or is sending) its lines.
    ACTIVE = (Status.QUEUED, Status.SENDING)
    FINISHED = (Status.DONE, Status.PARTIAL, Status.FAILED)

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="espay_batches")
    credential = models.ForeignKey(GatewayCredential, on_delete=models.PROTECT, related_name="espay_batches")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    currency = models.CharField(max_length=3, default="IDR")

    # The upload, kept as it came (audit; "what exactly did we send?"). In the database rather
    # than on a disk so that more web/worker machines need no shared file system.
    file_name = models.CharField(max_length=255)
    file_content = models.BinaryField()
    file_size = models.PositiveIntegerField()
    file_sha256 = models.CharField(max_length=64)
    file_kind = models.CharField(max_length=8)  # "csv" or "xlsx"
    file_encoding = models.CharField(max_length=32, blank=True)  # csv only: how it was decoded
    file_delimiter = models.CharField(max_length=8, blank=True)

    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: The worker that sends holds the batch until this moment (renewed per chunk); a batch left
    #: SENDING past it by a dead worker may be taken over and resumed.
    lease_until = models.DateTimeField(null=True, blank=True)
    #: Send rounds so far: 1 = the first send, 2+ = "retry failed lines".
    rounds = models.PositiveIntegerField(default=0)

    # Validation outcome: [{"row", "column", "value", "message"}], and notes (e.g. ignored columns).
    problems = models.JSONField(default=list, blank=True)
    problem_count = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)

    # Summary, written at validation and after each chunk (the list and progress read these).
    row_count = models.PositiveIntegerField(default=0)
    customer_count = models.PositiveIntegerField(default=0)
    total_amount = models.DecimalField(default=0, **MONEY)  # sum of `amount`, in `currency`
    chunk_total = models.PositiveIntegerField(default=0)
    chunk_done = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)  # listed: success + already listed
    failed_count = models.PositiveIntegerField(default=0)
    unknown_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Readable; never contains a secret.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="espaybatch_merchant_created")]

    def __str__(self) -> str:
        return f"Espay batch #{self.pk} ({self.file_name})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def pending_count(self) -> int:
        return max(0, self.row_count - self.sent_count - self.failed_count - self.unknown_count)


class EspayChunk(models.Model):
    """One sendinvoice call of ≤ 500 lines; its `rq_uuid` is stored before the call is made."""

    Status = EspayChunkStatus  # values, labels and badge colours: arbook.status

    OPEN = (Status.PLANNED, Status.SENDING, Status.UNKNOWN)

    batch = models.ForeignKey(EspayBatch, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    round = models.PositiveIntegerField(default=1)
    rq_uuid = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED)
    size = models.PositiveIntegerField()
    tries = models.PositiveIntegerField(default=0)
    #: Set once a try of this chunk may have reached Espay without us reading the answer. Only
    #: then does a "0002 Data already listed" mean "listed by our own earlier try".
    maybe_applied = models.BooleanField(default=False)
    rq_datetime = models.DateTimeField(null=True, blank=True)  # of the last try (it is signed)
    error_code = models.CharField(max_length=16, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "number"]
        constraints = [models.UniqueConstraint(fields=["batch", "number"], name="espaychunk_unique_number")]

    def __str__(self) -> str:
        return f"{self.batch_id}/{self.number} {self.rq_uuid}"


class EspayLine(models.Model):
    """One row of the upload and what Espay said about it."""

    Status = EspayLineStatus  # values, labels and badge colours: arbook.status

    LISTED = (Status.SENT, Status.ALREADY_LISTED)

    batch = models.ForeignKey(EspayBatch, on_delete=models.CASCADE, related_name="lines")
    chunk = models.ForeignKey(EspayChunk, null=True, blank=True, on_delete=models.SET_NULL, related_name="lines")
    row_number = models.PositiveIntegerField(help_text="Row in the uploaded sheet (the header is row 1).")
    doc_no = models.CharField(max_length=DOC_NO_MAX)
    member_code = models.CharField(max_length=MEMBER_CODE_MAX)
    member_name = models.CharField(max_length=MEMBER_NAME_MAX, blank=True)
    amount = models.DecimalField(**MONEY)
    total_amount = models.DecimalField(**MONEY)
    number_of_installment = models.PositiveIntegerField()
    installment_amount = models.DecimalField(**MONEY)
    balance_payment_amount = models.DecimalField(null=True, blank=True, **MONEY)
    description = models.CharField(max_length=DESCRIPTION_MAX, blank=True)
    billing_date = models.CharField(max_length=2)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    result_code = models.CharField(max_length=16, blank=True)
    result_message = models.CharField(max_length=255, blank=True)
    doc_ref_no = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Earliest VA expiry.")
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    #: Set when a try that carried this line may have reached Espay unanswered (timeout after
    #: sending, garbled answer, line missing from the answer). Only then does a later
    #: "0002 Data already listed" mean "listed by us", i.e. success, not a failure.
    maybe_listed = models.BooleanField(default=False)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="espay_lines")

    class Meta:
        ordering = ["batch", "row_number"]
        constraints = [models.UniqueConstraint(fields=["batch", "doc_no"], name="espayline_unique_doc_no")]
        indexes = [
            models.Index(fields=["batch", "status", "row_number"], name="espayline_batch_status"),
            # "doc_no already sent for this merchant" looks lines up by doc_no.
            models.Index(fields=["doc_no"], name="espayline_doc_no",
                         condition=~Q(status__in=["failed", "superseded"])),
        ]

    def __str__(self) -> str:
        return f"{self.doc_no} (row {self.row_number})"


class EspayVirtualAccount(models.Model):
    """A VA number Espay issued for one line at one bank, with its expiry."""

    line = models.ForeignKey(EspayLine, on_delete=models.CASCADE, related_name="virtual_accounts")
    bank_code = models.CharField(max_length=8)
    va_number = models.CharField(max_length=64)
    expires_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["line", "bank_code"]
        constraints = [models.UniqueConstraint(fields=["line", "bank_code"], name="espayva_unique_bank")]
        # Payment notifications name the VA number that was paid (credit_to).
        indexes = [models.Index(fields=["va_number"], name="espayva_number")]

    def __str__(self) -> str:
        return f"{self.bank_code} {self.va_number}"


def ways_to_pay(invoices: list) -> dict[int, tuple[str, ...]]:
    """Checkout links (Xendit, Munio) and Espay VA numbers per bank, by invoice id (one query): what
    a statement and a reminder tell the customer to pay with."""
    ways: dict[int, list[str]] = defaultdict(list)
    espay: dict[tuple[int, str], int] = {}
    for inv in invoices:
        if inv.checkout_url:
            ways[inv.pk].append(inv.checkout_url)
        if inv.provider == "espay":
            espay[(inv.credential_id, inv.external_id)] = inv.pk
    if espay:
        condition = Q()
        for credential_id, doc_no in espay:
            condition |= Q(line__batch__credential_id=credential_id, line__doc_no=doc_no)
        vas = (EspayVirtualAccount.objects.filter(condition)
               .values_list("line__batch__credential_id", "line__doc_no", "bank_code", "va_number")
               .order_by("line__doc_no", "bank_code", "-line_id").distinct())
        seen = set()
        for credential_id, doc_no, bank, number in vas:
            key = (credential_id, doc_no, bank)
            if key not in seen:
                seen.add(key)
                ways[espay[(credential_id, doc_no)]].append(f"VA {bank} {number}")
    return {k: tuple(v) for k, v in ways.items()}
