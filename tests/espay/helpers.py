"""Building upload files for the Espay batch tests and benchmark."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from arbook.services.espay_files import COLUMN_NAMES


def row(doc_no: str, member_code: str = "M-001", amount: Any = "150000", **extra: Any) -> dict[str, Any]:
    values = {"doc_no": doc_no, "member_code": member_code, "member_name": f"Customer {member_code}",
              "amount": amount, "total_amount": amount, "number_of_installment": "1", "installment_amount": amount,
              "balance_payment_amount": "", "description": "October dues", "billing_date": "05"}
    values.update(extra)
    return values


def rows(n: int, prefix: str = "INV", start: int = 1, **extra: Any) -> list[dict[str, Any]]:
    return [row(f"{prefix}-{i:05d}", member_code=f"M{i % 997:04d}", **extra) for i in range(start, start + n)]


def csv_bytes(data: Iterable[dict[str, Any]], header: Sequence[str] = COLUMN_NAMES, *, delimiter: str = ",",
              encoding: str = "utf-8", bom: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    keys = [h if h in COLUMN_NAMES else COLUMN_NAMES[i] for i, h in enumerate(header)]
    for item in data:
        writer.writerow([item.get(k, "") for k in keys])
    raw = buffer.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + raw) if bom else raw


def xlsx_bytes(data: Iterable[dict[str, Any]] | Iterable[Sequence[Any]], header: Sequence[str] = COLUMN_NAMES) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("invoices")
    sheet.append(list(header))
    for item in data:
        sheet.append([item.get(k) for k in header] if isinstance(item, dict) else list(item))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def make_batch(credential, *, user=None, lines: int = 0, status: str = "done", created_at=None):
    """A batch straight in the database (no upload, no sandbox): `lines` lines, all sent.

    For the pages that only read batches (list, detail, pagers, the parameter fuzz)."""
    from decimal import Decimal

    from arbook.models import EspayBatch, EspayLine

    batch = EspayBatch.objects.create(
        merchant=credential.merchant, credential=credential, status=status, file_name="made.csv", file_content=b"",
        file_size=0, file_sha256="0" * 64, file_kind="csv", uploaded_by=user, row_count=lines,
        sent_count=lines if status == "done" else 0, total_amount=Decimal(150000) * lines)
    if created_at is not None:
        EspayBatch.objects.filter(pk=batch.pk).update(created_at=created_at)
    line_status = EspayLine.Status.SENT if status == "done" else EspayLine.Status.PENDING
    EspayLine.objects.bulk_create([
        EspayLine(batch=batch, row_number=i + 2, doc_no=f"DOC-{i + 1:05d}", member_code=f"M{i % 997:04d}",
                  member_name=f"Customer {i}", amount=Decimal(150000), total_amount=Decimal(150000),
                  number_of_installment=1, installment_amount=Decimal(150000), billing_date="05", status=line_status)
        for i in range(lines)], batch_size=1000)
    return batch
