"""`arbook.params`: the one reader of dates, numbers, moments and zones from query strings."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from arbook import params
from arbook.params import ParamError


def test_the_date_range_leaves_room_for_every_offset_the_pages_add():
    oldest = params.MIN_DATE - dt.timedelta(days=params.MAX_AGE_DAYS + 1)
    newest = params.MAX_DATE + dt.timedelta(days=1)
    for day, hours in ((oldest, 14), (oldest, -14), (newest, 14), (newest, -14)):
        start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone(dt.timedelta(hours=hours)))
        assert dt.MINYEAR < start.astimezone(dt.timezone.utc).year < dt.MAXYEAR


@pytest.mark.parametrize("text", ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01", "2024-02-30", "20240101",
                                  "2024-1-1", "٢٠٢٤-٠١-٠١", "", "2024-01-01T00:00"])
def test_parse_date_refuses(text):
    with pytest.raises(ParamError):
        params.parse_date(text)


def test_parse_date_accepts_the_edges():
    assert params.parse_date(" 1900-01-01 ") == params.MIN_DATE
    assert params.parse_date("2999-12-31") == params.MAX_DATE


@pytest.mark.parametrize("text", ["²", "٣", "1_000", "1e3", "1.0", "", " ", "0x10", "9" * 20, "NaN", True, 1.0, None])
def test_parse_int_takes_ascii_digits_only(text):
    with pytest.raises(ParamError):
        params.parse_int(text, min_value=-(10 ** 30), max_value=10 ** 30)


def test_parse_int_bounds():
    assert params.parse_int("-25", min_value=-25, max_value=0) == -25
    with pytest.raises(ParamError, match="between 1 and 250"):
        params.parse_int("251", min_value=1, max_value=250)


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf", "1e999999", "1e-999999", "0.001", "1" * 17,
                                   "1e16", 1.5, True, None, "x" * 501, "1,5"])
def test_parse_decimal_refuses(value):
    with pytest.raises(ParamError):
        params.parse_decimal(value)


@pytest.mark.parametrize("value,expected", [("9999999999999999.99", Decimal("9999999999999999.99")),
                                            ("-0.5", Decimal("-0.5")), ("1E+3", Decimal(1000)), (7, Decimal(7))])
def test_parse_decimal_accepts_what_the_column_holds(value, expected):
    assert params.parse_decimal(value) == expected


def test_parse_moment_normalizes_to_utc_and_refuses_what_overflows():
    assert params.parse_moment("2025-06-30T23:30:00-23:59") == dt.datetime(2025, 7, 1, 23, 29, tzinfo=dt.timezone.utc)
    for text in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2025-06-30T00:00:00", "x", 1.0, None):
        with pytest.raises(ParamError):
            params.parse_moment(text)


def test_micros_round_trip_exactly_across_the_calendar():
    for moment in (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, 59, 999_999,
                                                                               tzinfo=dt.timezone.utc),
                   dt.datetime(2025, 6, 30, 12, 0, 0, 123_457, tzinfo=dt.timezone.utc)):
        assert params.parse_micros(str(params.moment_micros(moment))) == moment
    with pytest.raises(ParamError):
        params.parse_micros(str(params.moment_micros(dt.datetime.max.replace(tzinfo=dt.timezone.utc)) + 1))


@pytest.mark.parametrize("key", ["America", "/etc/passwd", "../zoneinfo/UTC", "zone.tab", "UTC/", "UTC\x00", ""])
def test_parse_zone_takes_iana_keys_only(key):
    with pytest.raises(ParamError):
        params.parse_zone(key)
    assert str(params.parse_zone("Pacific/Kiritimati")) == "Pacific/Kiritimati"


@pytest.mark.parametrize("number,shown,note", [
    ("", 1, ""), ("2", 2, ""), ("last", 3, ""), ("3", 3, ""),
    ("4", 3, "Page 4 does not exist; showing page 3 of 3."), ("0", 1, "Page 0 does not exist; showing page 1 of 3."),
    ("NaN", 1, "“NaN” is not a page number; showing page 1 of 3."), ("9" * 5000, 1, "is not a page number"),
])
def test_page_of(number, shown, note):
    page, said = params.page_of(list(range(25)), per_page=10, number=number)
    assert page.number == shown and (note in said if note else said == "")


def test_clip_keeps_messages_printable_and_short():
    assert params.clip("a\x00b" + "x" * 100) == "a\N{REPLACEMENT CHARACTER}b" + "x" * 37 + "…"
