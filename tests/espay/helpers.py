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
