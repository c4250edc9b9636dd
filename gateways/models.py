"""Plain dataclasses that cross from `gateways/` into the app."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Sequence


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


class Page:
    """One page of a listing.

    `resume` is an opaque, JSON-safe string: pass it back as `iter_pages(resume=...)` to continue
    with the page *after* this one (the sync engine stores it only once this page is committed).

    A client may hand over the page's raw items and their parser instead of parsed invoices
    (`Page(items=..., parse=...)`): `invoices` is then parsed on first access, so the sync's
    reader thread can already fetch the next page while the writer parses this one. A parse
    error (`BadResponseError`) is raised by that first access.
    """

    __slots__ = ("number", "resume", "_invoices", "_items", "_parse")

    def __init__(self, invoices: list[RemoteInvoice] | None = None, number: int = 0, resume: str | None = None, *,
                 items: Sequence[Any] = (), parse: Callable[[Any], RemoteInvoice] | None = None):
        if (invoices is None) == (parse is None):
            raise TypeError("Page needs either invoices or items with their parser")
        self.number = number
        self.resume = resume
        self._invoices = invoices
        self._items, self._parse = items, parse

    @property
    def invoices(self) -> list[RemoteInvoice]:
        if self._invoices is None:
            self._invoices = [self._parse(item) for item in self._items]
            self._items = ()
        return self._invoices

    def __repr__(self) -> str:
        return f"Page(number={self.number}, resume={self.resume!r})"
