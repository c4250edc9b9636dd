"""Reads for the Espay batch pages, exports, and the VA numbers of an invoice.

Everything a page shows goes through `arbook.scoping`, so a batch of another merchant is simply
not found (404).
"""
from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Case, IntegerField, Prefetch, QuerySet, Sum, Value, When
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from arbook.models import EspayBatch, EspayLine, EspayVirtualAccount, GatewayCredential, Invoice
from arbook.scoping import get_scoped_or_404, scope
from arbook.services.espay_batch import espay_batch_is_stalled
from arbook.services.espay_files import CHUNK_SIZE, bank_label

#: Errors first on the results page: failed and unknown lines, then the rest in sheet order.
_ERRORS_FIRST = Case(
    When(status__in=[EspayLine.Status.FAILED, EspayLine.Status.UNKNOWN], then=Value(0)),
    When(status=EspayLine.Status.PENDING, then=Value(1)),
    When(status=EspayLine.Status.SUPERSEDED, then=Value(2)),
    default=Value(3), output_field=IntegerField(),
)
LINE_FILTERS = {
    "problems": [EspayLine.Status.FAILED, EspayLine.Status.UNKNOWN],
    "sent": list(EspayLine.LISTED),
    "waiting": [EspayLine.Status.PENDING],
}


def espay_credentials(*, user) -> QuerySet[GatewayCredential]:
    """The active Espay credentials of the merchants the user is a member of."""
    return (scope(GatewayCredential.objects.filter(provider="espay", is_active=True), user)
            .select_related("merchant").order_by("merchant__name", "label", "pk"))


def espay_batches(*, user) -> QuerySet[EspayBatch]:
    return (scope(EspayBatch.objects.all(), user).defer("file_content", "problems")
            .select_related("merchant", "credential", "uploaded_by", "confirmed_by").order_by("-created_at", "-pk"))


def espay_batch_for(*, user, pk: int, with_file: bool = False) -> EspayBatch:
    """The batch, if the user may see it; otherwise 404."""
    queryset = EspayBatch.objects.select_related("merchant", "credential", "uploaded_by", "confirmed_by")
    if not with_file:
        queryset = queryset.defer("file_content")
    return get_scoped_or_404(queryset, user, pk=pk)


def batch_lines(*, batch: EspayBatch, show: str = "") -> QuerySet[EspayLine]:
    """Lines with their VA numbers, errors first, then sheet order."""
    lines = batch.lines.all()
    if show in LINE_FILTERS:
        lines = lines.filter(status__in=LINE_FILTERS[show])
    return (lines.annotate(error_rank=_ERRORS_FIRST).order_by("error_rank", "row_number")
            .prefetch_related(Prefetch("virtual_accounts", queryset=EspayVirtualAccount.objects.order_by("bank_code"))))


def batch_bank_codes(*, batch: EspayBatch) -> list[str]:
    return list(EspayVirtualAccount.objects.filter(line__batch=batch).values_list("bank_code", flat=True)
                .distinct().order_by("bank_code"))


def batch_summary(*, batch: EspayBatch) -> dict[str, Any]:
    """Figures for the preview: rows, customers, amounts in the batch currency, calls needed."""
    agg = batch.lines.aggregate(amount=Sum("amount"), total=Sum("total_amount"))
    lines = batch.row_count if batch.status != EspayBatch.Status.INVALID else 0
    return {
        "rows": batch.row_count, "customers": batch.customer_count, "currency": batch.currency,
        "amount": agg["amount"] or Decimal(0), "total_amount": agg["total"] or Decimal(0),
        "calls": -(-lines // CHUNK_SIZE), "chunk_size": CHUNK_SIZE,
    }


def batch_progress(*, batch: EspayBatch) -> dict[str, Any]:
    """What the results page polls while sending (JSON-ready)."""
    done = batch.sent_count + batch.failed_count + batch.unknown_count
    return {
        "id": batch.pk, "status": batch.status, "status_label": batch.get_status_display(),
        "finished": batch.status in EspayBatch.FINISHED, "active": batch.status in EspayBatch.ACTIVE,
        "stalled": espay_batch_is_stalled(batch=batch),
        "rows": batch.row_count, "sent": batch.sent_count, "failed": batch.failed_count,
        "unknown": batch.unknown_count, "pending": batch.pending_count, "done": done,
        "chunks_done": batch.chunk_done, "chunks_total": batch.chunk_total,
        "percent": int(100 * batch.chunk_done / batch.chunk_total) if batch.chunk_total else (
            100 if batch.status in EspayBatch.FINISHED else 0),
    }


# -- export: one row per customer invoice (line), one column per bank ---------------------------------

def _local(moment: datetime | None, tz) -> datetime | None:
    return timezone.localtime(moment, tz).replace(tzinfo=None) if moment else None


def batch_export(*, batch: EspayBatch) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) for the results export, in sheet order, times in the merchant's zone.

    One row per line (a customer's invoice) with a VA-number column per bank, so it can be handed
    to customers or mail-merged as is."""
    tz = zoneinfo.ZoneInfo(batch.merchant.timezone or "Asia/Jakarta")
    banks = batch_bank_codes(batch=batch)
    header = ["row", "doc_no", "member_code", "member_name", "currency", "amount", "total_amount", "billing_date",
              "status", "result_code", "result_message", "doc_ref_no", f"va_expires ({tz.key})",
              *[f"VA {bank_label(code)}" for code in banks]]

    def rows() -> Iterator[list[Any]]:
        # Plain tuples, not model instances: a 10,000-line batch has 40,000 VA numbers.
        numbers: dict[int, dict[str, str]] = {}
        for line_id, code, number in EspayVirtualAccount.objects.filter(line__batch=batch).values_list(
                "line_id", "bank_code", "va_number").iterator(chunk_size=5000):
            numbers.setdefault(line_id, {})[code] = number
        labels = dict(EspayLine.Status.choices)
        fields = ("pk", "row_number", "doc_no", "member_code", "member_name", "amount", "total_amount",
                  "billing_date", "status", "result_code", "result_message", "doc_ref_no", "expires_at")
        for (pk, row_number, doc_no, member_code, member_name, amount, total_amount, billing_date, status, code,
             message, doc_ref_no, expires_at) in batch.lines.order_by("row_number").values_list(*fields).iterator(
                chunk_size=2000):
            vas = numbers.get(pk, {})
            yield [row_number, doc_no, member_code, member_name, batch.currency, amount, total_amount, billing_date,
                   labels.get(status, status), code, message, doc_ref_no, _local(expires_at, tz),
                   *[vas.get(bank, "") for bank in banks]]

    return header, rows()


def batch_problem_rows(*, batch: EspayBatch) -> tuple[list[str], list[list[Any]]]:
    return ["row", "column", "value", "problem"], [
        [p.get("row"), p.get("column"), p.get("value"), p.get("message")] for p in (batch.problems or [])]


# -- for the invoice detail page ----------------------------------------------------------------------

def invoice_virtual_accounts(*, invoice: Invoice) -> list[dict[str, Any]]:
    """The VA numbers of an Espay invoice, one dict per bank: bank_code, bank (label), va_number,
    expires_at (aware datetime or None), expires_text (as Espay wrote it, when not a date),
    description, batch_id and source ("batch #N" or "payload"). Empty for other providers, and
    for a line Espay confirmed only as "already listed" (Espay did not repeat its numbers).

    Reads the batch lines' VA rows; falls back to `invoice.raw["list_va"]` (what the upload stored
    on the invoice) so the numbers show even if the batch was deleted."""
    if invoice.provider != "espay":
        return []
    rows = list(EspayVirtualAccount.objects.filter(line__invoice=invoice).order_by("-line__sent_at", "bank_code")
                .values("bank_code", "va_number", "expires_at", "description", "line_id", "line__batch_id"))
    if rows:
        newest = rows[0]["line_id"]
        return [{"bank_code": r["bank_code"], "bank": bank_label(r["bank_code"]), "va_number": r["va_number"],
                 "expires_at": r["expires_at"], "expires_text": "", "description": r["description"],
                 "batch_id": r["line__batch_id"], "source": f"batch #{r['line__batch_id']}"}
                for r in sorted((r for r in rows if r["line_id"] == newest), key=lambda r: r["bank_code"])]
    list_va = (invoice.raw or {}).get("list_va") or {}
    result = []
    if isinstance(list_va, dict):
        for code, item in sorted(list_va.items()):
            if not isinstance(item, dict) or not item.get("va_number"):
                continue
            expires = item.get("expired")
            expires_at = parse_datetime(expires) if isinstance(expires, str) else None
            result.append({"bank_code": str(item.get("bank_code") or code), "bank": bank_label(str(code)),
                           "va_number": str(item["va_number"]), "expires_at": expires_at,
                           "expires_text": expires if isinstance(expires, str) else "",
                           "description": str(item.get("description") or ""), "batch_id": None,
                           "source": "payload"})
    return result
