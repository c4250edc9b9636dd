"""Money per currency, dates in the merchant's zone, days overdue, status badges (templatetags.money)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template

from arbook.status import STATUSES
from babel.numbers import get_currency_precision, list_currencies

from arbook.templatetags.money import (
    CURRENCY_LOCALES, DIGITS_OVERRIDES, SYMBOL_CURRENCIES, days_overdue, format_money, format_number, local_date,
)

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize("value,currency,expected", [
    (Decimal("1234567"), "IDR", "Rp 1.234.567"),
    (Decimal("1234567.50"), "IDR", "Rp 1.234.568"),  # no decimals; half-up for display only
    (Decimal("999"), "IDR", "Rp 999"),
    (Decimal("-150000"), "IDR", "-Rp 150.000"),  # an unapplied credit
    (Decimal("1234.56"), "DKK", "DKK 1.234,56"),
    (Decimal("0.5"), "DKK", "DKK 0,50"),
    (Decimal("1000000"), "DKK", "DKK 1.000.000,00"),
    (Decimal("1234.5"), "USD", "USD 1,234.50"),
    (Decimal("7"), "XYZ", "XYZ 7.00"),  # unknown currency: its code, two decimals
    (None, "IDR", "—"),  # unknown amount, never 0
    ("1500.25", "dkk", "DKK 1.500,25"),
])
def test_format_money(value, currency, expected):
    assert format_money(value, currency) == expected


@pytest.mark.parametrize("value,currency,expected", [
    # currencies the hand-written table did not know: CLDR's digits, the ISO code, ``1,234.56``
    (Decimal("1234.5678"), "KWD", "KWD 1,234.568"),  # three decimals
    (Decimal("-12.3"), "KWD", "-KWD 12.300"),
    (Decimal("1234.5"), "BHD", "BHD 1,234.500"),
    (Decimal("1234.56"), "ISK", "ISK 1,235"),  # no decimals
    (Decimal("1234.56"), "CHF", "CHF 1,234.56"),
    (Decimal("1.23456"), "CLF", "CLF 1.2346"),  # four
    # JPY and VND have no minor unit
    (Decimal("1234567.5"), "JPY", "JPY 1,234,568"),
    (Decimal("1234.4"), "JPY", "JPY 1,234"),
    (Decimal("-1500"), "JPY", "-JPY 1,500"),
    (Decimal("1234567.4"), "VND", "VND 1.234.567"),
    # EUR and USD
    (Decimal("1234.56"), "EUR", "EUR 1.234,56"),
    (Decimal("-0.5"), "EUR", "-EUR 0,50"),
    (Decimal("1000000"), "USD", "USD 1,000,000.00"),
    (Decimal("-1234.5"), "USD", "-USD 1,234.50"),
    # the crowns: the ISO code, never the shared ``kr.``; Norwegian and Swedish group with a no-break space
    (Decimal("-1234.56"), "DKK", "-DKK 1.234,56"),
    (Decimal("1234.56"), "NOK", "NOK 1\u00a0234,56"),
    (Decimal("-1234567.5"), "SEK", "-SEK 1\u00a0234\u00a0567,50"),  # ASCII minus, not CLDR's U+2212
    # the local symbol where it is unambiguous
    (Decimal("1234.5"), "MYR", "RM 1,234.50"),
    (Decimal("-0.5"), "MYR", "-RM 0.50"),
    # IDR: whole rupiah (CLDR says two decimals), half-up (CLDR rounds half-even)
    (Decimal("0.5"), "IDR", "Rp 1"),
    (Decimal("2.5"), "IDR", "Rp 3"),
    (Decimal("-2.5"), "IDR", "-Rp 3"),
    (Decimal("2.5"), "JPY", "JPY 3"),
    (Decimal("0.125"), "DKK", "DKK 0,13"),
    # what rounds to zero shows no sign
    (Decimal("-0.4"), "IDR", "Rp 0"),
    (Decimal("-0.001"), "DKK", "DKK 0,00"),
    (Decimal("-0"), "USD", "USD 0.00"),
    # unknown amounts, whatever the currency; unknown or blank currencies
    (None, "KWD", "—"),
    ("", "USD", "—"),
    ("not a number", "USD", "—"),
    (Decimal("NaN"), "IDR", "—"),
    (Decimal("-Infinity"), "DKK", "—"),
    (Decimal("7"), None, "? 7.00"),
    (Decimal("-7"), "", "-? 7.00"),
    (Decimal("7"), " kwd ", "KWD 7.000"),
    # not Decimal: an int; a float is taken at its shortest text (1.005 is 1.00499... in binary)
    (1234, "IDR", "Rp 1.234"),
    (1.005, "USD", "USD 1.01"),
    (Decimal("1E+3"), "IDR", "Rp 1.000"),
    (Decimal("-9999999999999999.99"), "IDR", "-Rp 10.000.000.000.000.000"),
])
def test_format_money_through_cldr_and_the_overrides(value, currency, expected):
    assert format_money(value, currency) == expected


def test_the_overrides_differ_from_cldr():
    """If CLDR ever agrees, the override can go."""
    assert get_currency_precision("IDR") == 2 and DIGITS_OVERRIDES == {"IDR": 0}
    assert SYMBOL_CURRENCIES == {"IDR", "MYR"}


@pytest.mark.parametrize("value,currency,expected", [
    (Decimal("1234567.5"), "IDR", "1.234.568"),
    (Decimal("-150000"), "IDR", "-150.000"),
    (Decimal("1234.5"), "DKK", "1.234,50"),
    (Decimal("1234.5678"), "KWD", "1,234.568"),
    (Decimal("1234.5"), "JPY", "1,235"),
    (Decimal("-1234.5"), "NOK", "-1\u00a0234,50"),
    (Decimal("-0.001"), "EUR", "0,00"),
    (None, "IDR", "—"),
])
def test_format_number(value, currency, expected):
    assert format_number(value, currency) == expected


def test_every_iso_currency_shows_its_code_and_its_digits():
    """Every currency CLDR knows: its ISO code (or its own symbol), CLDR's digits, nothing invented."""
    for code in list_currencies():
        digits = DIGITS_OVERRIDES.get(code, get_currency_precision(code))
        out = format_money(Decimal("-1234.5"), code)
        marker = {"IDR": "Rp", "MYR": "RM"}.get(code, code)
        assert out.startswith(f"-{marker} "), out
        if code not in CURRENCY_LOCALES:  # the fallback's separators
            assert out == f"-{code} " + ("1,235" if digits == 0 else "1,234." + "5".ljust(digits, "0")), out
        assert format_money(None, code) == "—"


def test_template_filters():
    out = Template("{% load money %}{{ a|money:'IDR' }}|{{ b|money:'DKK' }}|{{ d|localdate:'Asia/Jakarta' }}|"
                   "{{ d|localdatetime:'Europe/Copenhagen' }}|{{ s|status_badge }}").render(Context({
                       "a": Decimal("2500000"), "b": Decimal("99.9"), "d": datetime(2025, 3, 1, 18, 30, tzinfo=UTC),
                       "s": "failed"}))
    assert out == ('Rp 2.500.000|DKK 99,90|2025-03-02|2025-03-01 19:30|'
                   f'<span class="badge badge--{STATUSES["failed"].colour}" title="{STATUSES["failed"].meaning}">'
                   'Failed</span>')


def test_money_filters_in_a_template():
    out = Template("{% load money %}{{ a|money:'KWD' }}|{{ a|money_number:'KWD' }}|{{ b|money:'JPY' }}|"
                   "{{ c|money:'IDR' }}|{{ n|money:'EUR' }}|{{ n|money_number:'EUR' }}").render(Context({
                       "a": Decimal("1234.5678"), "b": Decimal("-1234.5"), "c": Decimal("-150000"), "n": None}))
    assert out == "KWD 1,234.568|1,234.568|-JPY 1,235|-Rp 150.000|—|—"


def test_local_date_uses_the_merchants_zone():
    moment = datetime(2025, 3, 1, 18, 30, tzinfo=UTC)
    assert local_date(moment, "Asia/Jakarta").isoformat() == "2025-03-02"
    assert local_date(moment, "Europe/Copenhagen").isoformat() == "2025-03-01"


def test_days_overdue_counts_calendar_days_in_the_merchants_zone():
    now = datetime(2025, 3, 10, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta
    due = datetime(2025, 3, 8, 20, 0, tzinfo=UTC)  # 9 March 03:00 in Jakarta, 8 March in Copenhagen
    assert days_overdue(status="open", due_at=due, tz="Asia/Jakarta", as_of=now) == 1
    assert days_overdue(status="open", due_at=due, tz="Europe/Copenhagen", as_of=now) == 2
    assert days_overdue(status="open", due_at=now - timedelta(hours=1), tz="Asia/Jakarta", as_of=now) == 0
    assert days_overdue(status="open", due_at=now + timedelta(hours=1), tz="Asia/Jakarta", as_of=now) is None
    assert days_overdue(status="paid", due_at=due, tz="Asia/Jakarta", as_of=now) is None  # not a receivable
    assert days_overdue(status="expired", due_at=due, tz="Asia/Jakarta", as_of=now) is None  # shown apart
    assert days_overdue(status="open", due_at=None, tz="Asia/Jakarta", as_of=now) is None
