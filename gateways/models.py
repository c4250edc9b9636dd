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
    #: The payer's phone as the provider wrote it (arbook normalizes it to E.164 for identity).
    customer_phone: str = ""
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
class InvoiceRef:
    """What arbook knows of a stored invoice, handed to `GatewayClient.lookup` (a provider without
    a by-id lookup finds it again from its dates and customer)."""

    external_id: str
    status: str = ""
    issued_at: datetime | None = None
    due_at: datetime | None = None
    customer_ref: str = ""


@dataclass(frozen=True)
class SettledScope:
    """Which settled invoices a full read returns: those whose `field` (`issued_at` or `due_at`)
    lies in [start, end), plus those without that date when `undated`. `field=None` means every
    invoice (a provider read without a window). A stored settled invoice outside the scope that a
    full read did not return has aged out of the window; it is not missing."""

    field: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    undated: bool = True


class Page:
    """One page of a listing.

    `resume` is an opaque, JSON-safe string: pass it back as `iter_pages(resume=...)` to continue
    with the page *after* this one (the sync engine stores it only once this page is committed).

    A client may hand over the page's raw items and their parser instead of parsed invoices
    (`Page(items=..., parse=...)`): `invoices` is then parsed on first access, so the sync's
    reader thread can already fetch the next page while the writer parses this one. A parse
    error (`BadResponseError`) is raised by that first access.

    When an item alone (with the client's code and options, which `salt` stands for) decides its
    parsed invoice, the client also passes `identify`: item -> (external id, the raw payload the
    invoice keeps). The sync then recognises an unchanged invoice from its raw payload and
    parses only the changed ones (`identify` raises `BadResponseError` for an item with no id).

    `ahead` is for the consumer: what it computed from the page before writing it (the sync's
    reader thread fills it), or None.
    """

    __slots__ = ("number", "resume", "identify", "salt", "ahead", "_invoices", "_items", "_parse")

    def __init__(self, invoices: list[RemoteInvoice] | None = None, number: int = 0, resume: str | None = None, *,
                 items: Sequence[Any] = (), parse: Callable[[Any], RemoteInvoice] | None = None,
                 identify: Callable[[Any], tuple[str, dict[str, Any]]] | None = None, salt: str = ""):
        if (invoices is None) == (parse is None):
            raise TypeError("Page needs either invoices or items with their parser")
        if identify is not None and (parse is None or not salt):
            raise TypeError("identify needs lazily parsed items and the client's salt")
        self.number = number
        self.resume = resume
        self.identify, self.salt = identify, salt
        self.ahead: Any = None
        self._invoices = invoices
        self._items, self._parse = items, parse

    @property
    def invoices(self) -> list[RemoteInvoice]:
        if self._invoices is None:
            self._invoices = [self._parse(item) for item in self._items]
            self._items = ()
        return self._invoices

    @property
    def items(self) -> Sequence[Any]:
        """The raw items not parsed yet (empty once `invoices` was read, or for parsed pages)."""
        return self._items

    def parse(self, item: Any) -> RemoteInvoice:
        if self._parse is None:
            raise TypeError("this page holds parsed invoices")
        return self._parse(item)

    def __len__(self) -> int:
        return len(self._invoices) if self._invoices is not None else len(self._items)

    def __repr__(self) -> str:
        return f"Page(number={self.number}, resume={self.resume!r})"
