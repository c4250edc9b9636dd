"""Money, dates and payment states as the pages show them: `{% load money %}`.

Conventions (one per currency, written once here; the aging pages use the same filters):

- The amount is prefixed by a fixed marker per currency and grouped the way its users write it:
  IDR ``Rp 1.234.567`` (no decimals: the rupiah has no minor unit in practice; a fraction is
  rounded half-up for display only, the stored Decimal is untouched), DKK ``DKK 1.234,56``
  (the ISO code rather than ``kr.``, which Danish, Norwegian and Swedish crowns share),
  EUR ``EUR 1.234,56``, USD/SGD/... ``USD 1,234.56``. A currency not in the table shows its ISO
  code with two decimals and ``1,234.56`` grouping.
- A negative amount (an unapplied credit) reads ``-Rp 150.000``. An unknown amount (None, e.g.
  Faspay's list has no total) reads ``—`` and never 0.
- Dates and times are shown in the merchant's time zone (``Merchant.timezone``), as
  ``YYYY-MM-DD`` / ``YYYY-MM-DD HH:MM``, with no ambiguity between day and month.

The plain functions (`format_money`, `local_date`, `days_overdue`, ...) are importable for
tables, exports and other Python code.
"""
from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html

from arbook.status import RECEIVABLE, STATUSES

register = template.Library()

UNKNOWN = "—"


@dataclass(frozen=True)
class CurrencyFormat:
    prefix: str
    decimals: int
    group: str  # thousands separator
    point: str  # decimal separator


CURRENCY_FORMATS: dict[str, CurrencyFormat] = {
    "IDR": CurrencyFormat("Rp", 0, ".", ","),
    "DKK": CurrencyFormat("DKK", 2, ".", ","),
    "EUR": CurrencyFormat("EUR", 2, ".", ","),
    "NOK": CurrencyFormat("NOK", 2, ".", ","),
    "SEK": CurrencyFormat("SEK", 2, ".", ","),
    "USD": CurrencyFormat("USD", 2, ",", "."),
    "SGD": CurrencyFormat("SGD", 2, ",", "."),
    "MYR": CurrencyFormat("RM", 2, ",", "."),
    "PHP": CurrencyFormat("PHP", 2, ",", "."),
    "THB": CurrencyFormat("THB", 2, ",", "."),
    "GBP": CurrencyFormat("GBP", 2, ",", "."),
    "JPY": CurrencyFormat("JPY", 0, ",", "."),
    "VND": CurrencyFormat("VND", 0, ".", ","),
}


def currency_format(currency: str | None) -> CurrencyFormat:
    code = (currency or "").upper()
    return CURRENCY_FORMATS.get(code) or CurrencyFormat(code or "?", 2, ",", ".")


def _to_decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):  # never expected for money; converted exactly as printed
        value = repr(value)
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def format_number(value, currency: str | None) -> str:
    """The amount alone, grouped and rounded per currency (``1.234.567``); ``—`` when unknown."""
    amount = _to_decimal(value)
    if amount is None or not amount.is_finite():
        return UNKNOWN
    fmt = currency_format(currency)
    quantum = Decimal(1).scaleb(-fmt.decimals)
    amount = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    whole, _, frac = f"{abs(amount):f}".partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    text = fmt.group.join(groups)
    if fmt.decimals:
        text += fmt.point + frac.ljust(fmt.decimals, "0")[: fmt.decimals]
    return sign + text


def format_money(value, currency: str | None) -> str:
    """``Rp 1.234.567``, ``DKK 1.234,56``, ``-Rp 150.000``; ``—`` when the amount is unknown."""
    number = format_number(value, currency)
    if number == UNKNOWN:
        return UNKNOWN
    prefix = currency_format(currency).prefix
    if number.startswith("-"):
        return f"-{prefix} {number[1:]}"
    return f"{prefix} {number}"


@lru_cache(maxsize=256)
def _zone(name: str | None):
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def to_local(value: datetime | None, tz: str | None) -> datetime | None:
    """An aware datetime converted to the zone `tz` (a merchant's), or None."""
    if value is None:
        return None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, _zone(settings.TIME_ZONE))
    return value.astimezone(_zone(tz))


def local_date(value: datetime | date | None, tz: str | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_local(value, tz).date()
    return value


def days_overdue(*, status: str, due_at: datetime | None, tz: str | None, as_of: datetime | None = None) -> int | None:
    """Whole calendar days past the due date in the merchant's zone, or None when not overdue.

    Overdue is derived (DESIGN.md): a receivable state with `due_at` before the as-of moment.
    An invoice due earlier today is overdue by 0 days ("due today" in the pages).
    """
    if due_at is None or status not in RECEIVABLE:
        return None
    as_of = as_of or timezone.now()
    if due_at >= as_of:
        return None
    return (local_date(as_of, tz) - local_date(due_at, tz)).days


# -- template filters ------------------------------------------------------------------------

@register.filter
def money(value, currency):
    """``{{ invoice.amount|money:invoice.currency }}``"""
    return format_money(value, currency)


@register.filter
def money_number(value, currency):
    """``{{ total|money_number:"IDR" }}``: grouped and rounded, without the currency marker."""
    return format_number(value, currency)


@register.filter
def localdate(value, tz):
    """``{{ invoice.due_at|localdate:invoice.merchant.timezone }}`` → ``2024-05-01``."""
    d = local_date(value, tz)
    return d.isoformat() if d else UNKNOWN


@register.filter
def localdatetime(value, tz):
    """``{{ invoice.paid_at|localdatetime:invoice.merchant.timezone }}`` → ``2024-05-01 14:05``."""
    local = to_local(value, tz) if isinstance(value, datetime) else None
    return local.strftime("%Y-%m-%d %H:%M") if local else UNKNOWN


@register.filter
def overdue_days(invoice):
    """``{{ invoice|overdue_days }}``: days overdue (int) or None; the merchant's zone decides."""
    return days_overdue(status=invoice.status, due_at=invoice.due_at, tz=_merchant_tz(invoice))


def _merchant_tz(invoice) -> str | None:
    merchant = getattr(invoice, "merchant", None)
    return getattr(merchant, "timezone", None)


def status_badge_html(status: str):
    info = STATUSES.get(status)
    if info is None:
        return format_html('<span class="badge badge--black">{}</span>', status or "?")
    return format_html('<span class="badge badge--{}" title="{}">{}</span>', info.colour, info.meaning, info.label)


@register.filter
def status_badge(status):
    """``{{ invoice.status|status_badge }}``: the badge whose colour is defined in arbook.status."""
    return status_badge_html(status)


@register.filter
def status_label(status):
    info = STATUSES.get(status)
    return info.label if info else status
