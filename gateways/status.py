"""The normalized payment states (DESIGN.md), shared by the clients and the Django app.

Plain strings so that `gateways/` stays free of Django; `arbook.models` builds its choices,
labels and badge colours from this one list.
"""
from __future__ import annotations

DRAFT = "draft"
OPEN = "open"
PARTIALLY_PAID = "partially_paid"
PROCESSING = "processing"
FAILED = "failed"
CHARGED_BACK = "charged_back"
PAID = "paid"
EXPIRED = "expired"
CANCELLED = "cancelled"
UNKNOWN = "unknown"

ALL = (DRAFT, OPEN, PARTIALLY_PAID, PROCESSING, FAILED, CHARGED_BACK, PAID, EXPIRED, CANCELLED, UNKNOWN)

#: States that are still owed and age in the aging report's main rows.
RECEIVABLE = (OPEN, PARTIALLY_PAID, PROCESSING, FAILED, CHARGED_BACK)
#: States shown apart in aging (often still owed, or not understood).
APART = (EXPIRED, UNKNOWN)
#: States a full sync mirrors whatever the invoice's age (DESIGN.md): everything that may still be
#: owed or may still move (drafts become bills). Only settled history (paid, cancelled) is bounded
#: by the full-sync window.
UNSETTLED = (DRAFT, *RECEIVABLE, *APART)
SETTLED = (PAID, CANCELLED)
