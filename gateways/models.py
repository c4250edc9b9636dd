"""Plain dataclasses that cross from `gateways/` into the app."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class RemoteInvoice:
    """One invoice as a provider reports it, normalized to DESIGN.md's `Invoice` fields.

    `amount`/`outstanding`/`paid_amount` are None where the provider does not say (Faspay's list
    has no total amount). Datetimes are timezone-aware; `status` is one of `gateways.status.ALL`
    and `provider_status` keeps the provider's own value verbatim.
    """

    external_id: str
    status: str
    provider_status: str
    currency: str = "IDR"
    number: str = ""
    customer_name: str = ""
    customer_email: str = ""
    customer_ref: str = ""
    amount: Decimal | None = None
    outstanding: Decimal | None = None
    paid_amount: Decimal | None = None
    issued_at: datetime | None = None
    due_at: datetime | None = None
    paid_at: datetime | None = None
    #: The provider's own last-change timestamp, when it has one (orders notifications vs syncs).
    provider_updated_at: datetime | None = None
    payment_channel: str = ""
    checkout_url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Page:
    """One page of a listing.

    `resume` is an opaque, JSON-safe string: pass it back as `iter_pages(resume=...)` to continue
    with the page *after* this one (the sync engine stores it only once this page is committed).
    """

    invoices: list[RemoteInvoice]
    number: int
    resume: str | None = None
