"""Payment notifications, the provider side: what every provider module's `parse_notification`
returns, how it refuses, and the small field readers they share.

`parse_notification(*, headers, content_type, body, secrets, options, now)` (in `espay`, `xendit`,
`faspay`, `farpay`) checks a delivery's signature or token with the credential's secrets and
reads it into a frozen `RemoteNotification`, or raises `NotificationRefused`. It names every
provider field; the app that stores and applies notifications names none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from .base import JAKARTA
from .numbers import NotANumber, parse_decimal

BAD_SIGNATURE = "bad_signature"
MALFORMED = "malformed"
NOT_CONFIGURED = "not_configured"


class NotificationRefused(Exception):
    """A delivery that is not the provider's, not well-formed, or cannot be checked yet.

    `verification` is `BAD_SIGNATURE` (401), `MALFORMED` (400) or `NOT_CONFIGURED` (503: the
    credential lacks the secret to check it with; the provider retries)."""

    def __init__(self, verification: str, reason: str):
        super().__init__(reason)
        self.verification = verification
        self.reason = reason[:255]


@dataclass(frozen=True)
class RemoteNotification:
    """One verified notification, normalized.

    `kind` is "payment" (money moved: `amount`, signed, counts once) or "state" (the invoice's
    state after the event). `event_key` is the signed identity: a delivery with the same key is
    the same event, whatever unsigned fields differ. `vouched`: its facts are the provider's word
    (covered by its signature, or its sender authenticated); `confirm`: its facts are claims to
    check with the provider's own API first (`lookup_hints` are the unsigned ids that API takes).
    `invoice` is the whole invoice when the notification carries one (Xendit).
    """

    external_id: str
    event_id: str
    event_key: str
    event_at: datetime | None
    kind: str
    status: str
    provider_status: str
    match: str = "external_id"  # or "number": the provider names the invoice by its number
    amount: Decimal | None = None
    outstanding: Decimal | None = None
    paid_amount: Decimal | None = None
    invoice_amount: Decimal | None = None
    paid_at: datetime | None = None
    clear_paid_at: bool = False
    currency: str = ""
    payment_channel: str = ""
    vouched: bool = False
    confirm: bool = False
    lookup_hints: Mapping[str, str] = field(default_factory=dict)
    reply_fields: Mapping[str, str] = field(default_factory=dict)
    invoice: Any = None  # a RemoteInvoice


# -- field readers ---------------------------------------------------------------------------------

def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def decimal(value: Any, name: str) -> Decimal | None:
    try:
        return parse_decimal(value)
    except NotANumber:
        raise NotificationRefused(MALFORMED, f"{name} is not a number") from None


def positive(value: Decimal | None, name: str, *, zero: bool = False) -> Decimal | None:
    if value is not None and (value < 0 or (value == 0 and not zero)):
        raise NotificationRefused(MALFORMED, f"{name} must be {'zero or more' if zero else 'positive'}")
    return value


def jakarta(value: Any, name: str, *, required: bool) -> datetime | None:
    """`YYYY-MM-DD hh:mm:ss` (or with a `T`), Asia/Jakarta."""
    raw = text(value)
    if not raw:
        if required:
            raise NotificationRefused(MALFORMED, f"{name} is missing")
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(raw[:19], fmt).replace(tzinfo=JAKARTA)
        except ValueError:
            continue
    raise NotificationRefused(MALFORMED, f"{name} is not YYYY-MM-DD hh:mm:ss")


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError):  # 30,000 "[" nest deeper than Python
        raise NotificationRefused(MALFORMED, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise NotificationRefused(MALFORMED, "the body is not a JSON object")
    return data


def scalars(data: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """The named fields, where present, must be plain values (text or a number), not objects,
    lists or booleans: a provider never nests them, so a nested one is not its payload."""
    for name in names:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, Decimal))):
            raise NotificationRefused(MALFORMED, f"{name} is not a plain value")


def secret(secrets: Mapping[str, Any], name: str) -> str:
    value = text(secrets.get(name))
    if not value:
        raise NotificationRefused(NOT_CONFIGURED, f"the credential has no {name} to verify notifications with")
    return value


def header(headers: Mapping[str, str], name: str) -> str:
    return str(headers.get(name.lower(), "") or "")
