"""Money, dates and payment states as the pages show them: `{% load money %}`.

Money is formatted with Babel from CLDR data (`babel.numbers.format_currency` / `format_decimal`,
always with an explicit locale and explicit minor-unit digits), so every ISO 4217 currency gets
its right number of decimals (JPY ``JPY 1,235``, KWD ``KWD 1,234.568``, CLF four). On top of CLDR,
these display rules are deliberate and written down here (the aging pages use the same filters):

- *Marker*: the ISO code before the amount, ``DKK 1.234,56``, ``USD 1,234.56``, never a symbol
  that several currencies share (``kr.`` is Danish, Norwegian and Swedish; ``$`` and ``¥`` are
  shared too). Only currencies whose local symbol is unambiguous and what their users write show
  it (`SYMBOL_CURRENCIES`): IDR ``Rp 1.234.567``, MYR ``RM 1,234.56``. The marker always comes
  first, followed by one space, whatever the locale's own pattern says (CLDR's Danish is
  ``1.234,56 kr.``), so a column of amounts lines up and reads the same in every currency.
- *Separators*: grouped the way the currency's users write it, from the locale in
  `CURRENCY_LOCALES` (IDR and VND ``1.234.567``, DKK and EUR ``1.234,56``, NOK and SEK
  ``1 234,56`` with a no-break space, USD/SGD/MYR/GBP/JPY/... ``1,234.56``). A currency not in that
  table uses `FALLBACK_LOCALE` (``1,234.56``) with CLDR's digits for it; a code CLDR does not know
  either (``XYZ``) shows that code with two decimals, and a blank one ``?``.
- *Digits*: CLDR's (ISO 4217) minor unit, except `DIGITS_OVERRIDES`: IDR has no decimals (CLDR
  says two, but the rupiah has no minor unit in practice). A fraction beyond the shown digits is
  rounded half-up (not CLDR's half-even) for display only; the stored Decimal is untouched.
- *Sign*: a negative amount (an unapplied credit) reads ``-Rp 150.000``, ``-DKK 1.234,56``: an
  ASCII hyphen-minus before the marker in every locale (CLDR's Norwegian and Swedish minus is
  U+2212). An amount that rounds to zero shows no sign (``Rp 0``, never ``-Rp 0``).
- *Unknown*: an unknown amount (None, e.g. Faspay's list has no total) reads ``—`` and never 0.
- Amounts go to Babel as `Decimal`, never as float (a float, never expected for money, is taken
  at its shortest decimal text first).
- Dates and times are shown in the merchant's time zone (``Merchant.timezone``), as
  ``YYYY-MM-DD`` / ``YYYY-MM-DD HH:MM``, with no ambiguity between day and month.

The plain functions (`format_money`, `format_number`, `local_date`, `days_overdue`, ...) are
importable for tables, exports and other Python code.
"""
from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import NumberPattern, format_currency, format_decimal, get_currency_precision, parse_pattern
from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html

from arbook.status import RECEIVABLE, STATUSES
from arbook.templatetags.badges import badge_html
from gateways.numbers import NotANumber, parse_decimal

register = template.Library()

UNKNOWN = "—"

#: Whose separators each currency is written with: a locale of the people who pay and are paid in
#: it. EUR has no single home; it takes the continental grouping most of the eurozone writes
#: (de_DE; nl and it write the same). The keys are also the currencies the invoice filter suggests.
CURRENCY_LOCALES: dict[str, str] = {
    "IDR": "id_ID",
    "DKK": "da_DK",
    "EUR": "de_DE",
    "NOK": "nb_NO",
    "SEK": "sv_SE",
    "USD": "en_US",
    "SGD": "en_SG",
    "MYR": "ms_MY",
    "PHP": "en_PH",
    "THB": "th_TH",
    "GBP": "en_GB",
    "JPY": "ja_JP",
    "VND": "vi_VN",
}

#: The separators of every other currency (``1,234.56``), as before the table used CLDR.
FALLBACK_LOCALE = "en"

#: Minor-unit digits shown instead of CLDR's: the rupiah is shown whole (CLDR: 2; cash: 0).
DIGITS_OVERRIDES: dict[str, int] = {"IDR": 0}

#: Currencies shown with their local symbol (CLDR's, in the currency's locale) instead of the ISO
#: code, because that symbol is theirs alone and is what their users write: ``Rp``, ``RM``.
SYMBOL_CURRENCIES = frozenset({"IDR", "MYR"})

#: The marker of an amount whose currency is blank.
NO_CURRENCY = "?"


@dataclass(frozen=True)
class CurrencyFormat:
    """How one currency is shown (built once per code by `currency_format`)."""

    code: str  # upper-case ISO code, or ``?`` when blank
    locale: Locale  # whose separators
    decimals: int  # minor-unit digits shown
    number_pattern: NumberPattern  # ``#,##0.00``: the amount alone
    money_pattern: NumberPattern  # ``¤¤ #,##0.00`` (ISO code) or ``¤ #,##0`` (local symbol)

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)


def currency_format(currency: str | None) -> CurrencyFormat:
    return _currency_format((currency or "").strip().upper() or NO_CURRENCY)


@lru_cache(maxsize=512)
def _currency_format(code: str) -> CurrencyFormat:
    decimals = DIGITS_OVERRIDES.get(code)
    if decimals is None:
        decimals = get_currency_precision(code)  # 2 for a code CLDR does not know
    number = "#,##0" + ("." + "0" * decimals if decimals else "")
    marker = "¤" if code in SYMBOL_CURRENCIES else "¤¤"
    return CurrencyFormat(code=code, locale=Locale.parse(CURRENCY_LOCALES.get(code, FALLBACK_LOCALE)),
                          decimals=decimals, number_pattern=parse_pattern(number),
                          money_pattern=parse_pattern(f"{marker} {number}"))


def _to_decimal(value) -> Decimal | None:
    """The amount to show, or None when it is unknown or not a number (shown as a dash)."""
    try:
        return parse_decimal(value if isinstance(value, (Decimal, int, float, str, type(None))) else str(value))
    except NotANumber:
        return None


def _rounded(value, fmt: CurrencyFormat) -> Decimal | None:
    """The amount rounded half-up to the shown digits, or None when unknown (or not finite)."""
    amount = _to_decimal(value)
    if amount is None or not amount.is_finite():
        return None
    return amount.quantize(fmt.quantum, rounding=ROUND_HALF_UP)


def format_number(value, currency: str | None) -> str:
    """The amount alone, grouped and rounded per currency (``1.234.567``); ``—`` when unknown."""
    fmt = currency_format(currency)
    amount = _rounded(value, fmt)
    if amount is None:
        return UNKNOWN
    text = format_decimal(abs(amount), format=fmt.number_pattern, locale=fmt.locale)
    return f"-{text}" if amount < 0 else text


def format_money(value, currency: str | None) -> str:
    """``Rp 1.234.567``, ``DKK 1.234,56``, ``-Rp 150.000``; ``—`` when the amount is unknown."""
    fmt = currency_format(currency)
    amount = _rounded(value, fmt)
    if amount is None:
        return UNKNOWN
    text = format_currency(abs(amount), fmt.code, format=fmt.money_pattern, locale=fmt.locale,
                           currency_digits=False)
    return f"-{text}" if amount < 0 else text


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
    """An invoice status badge: the registry's (`arbook.templatetags.badges`)."""
    return badge_html("invoice", status)


@register.filter
def status_badge(status):
    """``{{ invoice.status|status_badge }}``: the badge whose colour is defined in arbook.status."""
    return status_badge_html(status)


@register.filter
def status_label(status):
    info = STATUSES.get(status)
    return info.label if info else status
