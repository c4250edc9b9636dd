"""Money per currency, dates in the merchant's zone, days overdue, status badges (templatetags.money)."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template

from arbook.status import STATUSES
from arbook.templatetags.money import days_overdue, format_money, local_date

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


def test_template_filters():
    out = Template("{% load money %}{{ a|money:'IDR' }}|{{ b|money:'DKK' }}|{{ d|localdate:'Asia/Jakarta' }}|"
                   "{{ d|localdatetime:'Europe/Copenhagen' }}|{{ s|status_badge }}").render(Context({
                       "a": Decimal("2500000"), "b": Decimal("99.9"), "d": datetime(2025, 3, 1, 18, 30, tzinfo=UTC),
                       "s": "failed"}))
    assert out == ('Rp 2.500.000|DKK 99,90|2025-03-02|2025-03-01 19:30|'
                   f'<span class="badge badge--{STATUSES["failed"].colour}" title="{STATUSES["failed"].meaning}">'
                   'Failed</span>')


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
