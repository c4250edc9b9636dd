"""Query-string values: the one place where the text of a GET parameter becomes a date, a number,
a moment or a time zone — within the ranges that the code behind the pages can handle, so that no
URL reaches an OverflowError, a NaN or a database range error (issue 14: pages never answer 500).

Every page reads its parameters through these functions or the form fields below (the invoice
list's filters, the aging options, the page cursors of the invoice list and the syncs page, the
page numbers of the Espay batch pages). A value out of range is refused with a message written for
the user, exactly like a malformed one; the page says which parameter it left out.

Ranges, and why:

* **Calendar days**: 1900-01-01 to 2999-12-31 (`MIN_DATE`, `MAX_DATE`). The pages add at most one
  day to a date from a URL (an inclusive "to" date, the end of an as-of day) and subtract at most
  `MAX_AGE_DAYS` (the oldest aging bucket boundary, a century), and take the start of the day in
  a time zone up to ±14 h from UTC. From 1900 back a century is 1800, still far inside what
  Python's `datetime`, SQLite and PostgreSQL represent (years 1 to 9999); asserted below. No
  receivable is dated outside this range, so it refuses nothing a user means (a year typed as
  0202 or 20025 is a typo, and the page says so).
* **Money** (`MoneyField`): finite decimals with at most 16 digits before the point and 2 after —
  the precision of the money columns (`MONEY`). NaN, Infinity, 1e999999 and 1e-999999 are refused:
  PostgreSQL would answer "value overflows numeric format".
* **Whole numbers** (`parse_int`, `IntegerField`): ASCII digits only (no "²", "٣", "1_000", " 1" or "1e3"), at
  most 19 of them, within the caller's bounds.
* **Row ids** (`check_id`): 1 to 2**63 - 1 (the 64-bit id columns; SQLite cannot even bind more).
* **Moments** (`parse_moment`, in page cursors): ISO 8601 with a UTC offset, normalized to UTC
  (PostgreSQL takes offsets up to ±15:59 only), any moment a column can hold.
* **Time zones** (`parse_zone`): a key of the IANA database as Python's `zoneinfo` ships it
  (`zoneinfo.available_timezones()`), never a file path.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator

from arbook.models.invoices import MONEY
from gateways.numbers import NotANumber, parse_decimal as parse_number

MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2999, 12, 31)
#: The most days any page subtracts from a date of a URL (the widest aging bucket boundary).
MAX_AGE_DAYS = 36_500
#: The largest row id (BigAutoField).
MAX_ID = 2 ** 63 - 1
#: Longest parameter text read at all (a cursor is ~100 characters).
MAX_TEXT = 500

DATE_RANGE_MESSAGE = f"Enter a date between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}."

# The margins the ranges promise, checked once: the oldest day minus the widest bucket and a day,
# and the newest plus a day, each at the start of the day in the zones furthest from UTC.
for _day, _offset in ((MIN_DATE - dt.timedelta(days=MAX_AGE_DAYS + 1), 14), (MAX_DATE + dt.timedelta(days=2), -14)):
    dt.datetime.combine(_day, dt.time.min, tzinfo=dt.timezone(dt.timedelta(hours=_offset))).astimezone(dt.timezone.utc)


class ParamError(ValueError):
    """A query-string value that is malformed or out of range; the message is for the user."""


# -- plain parsers (selectors and views call these) ----------------------------------------------

def check_date(day: dt.date) -> dt.date:
    """`day` when it lies in MIN_DATE..MAX_DATE; ParamError otherwise."""
    if isinstance(day, dt.datetime):
        day = day.date()
    if not MIN_DATE <= day <= MAX_DATE:
        raise ParamError(DATE_RANGE_MESSAGE)
    return day


def parse_date(text: Any) -> dt.date:
    """`YYYY-MM-DD` within MIN_DATE..MAX_DATE."""
    text = str(text or "").strip()
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ParamError(f"Enter a date like 2025-06-30 (got “{clip(text)}”).")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ParamError(f"{text} is not a date of the calendar.") from None
    return check_date(day)


_INT = re.compile(r"-?[0-9]{1,19}")


def parse_int(text: Any, *, min_value: int, max_value: int, what: str = "The number") -> int:
    """A whole number written in ASCII digits, within min_value..max_value."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and _INT.fullmatch(text):
        value = int(text)
    else:
        raise ParamError(f"{what} must be a whole number.")
    if not min_value <= value <= max_value:
        raise ParamError(f"{what} must be between {min_value:,} and {max_value:,}.")
    return value


def check_id(value: Any) -> int:
    """A row id from a cursor's JSON: an int (not a bool, not a float) in 1..MAX_ID."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ParamError("Not a row id.")
    return value


def parse_decimal(value: Any, *, max_digits: int = MONEY["max_digits"],
                  decimal_places: int = MONEY["decimal_places"]) -> Decimal:
    """A finite decimal that fits a column of this precision (text or int; never a float)."""
    if isinstance(value, float) or (isinstance(value, str) and len(value) > MAX_TEXT):
        raise ParamError("Enter a number.")
    try:
        number = parse_number(value)
    except NotANumber:
        raise ParamError("Enter a number.") from None
    if number is None:
        raise ParamError("Enter a number.")
    _sign, digits, exponent = number.as_tuple()
    places = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    if places > decimal_places:
        raise ParamError(f"Use at most {decimal_places} decimal places.")
    if whole > max_digits - decimal_places:
        raise ParamError(f"Use at most {max_digits - decimal_places} digits before the decimal point.")
    return number


def parse_moment(value: Any) -> dt.datetime:
    """An ISO 8601 moment with a UTC offset, as an aware datetime in UTC."""
    if not isinstance(value, str) or len(value) > 64:
        raise ParamError("Not a moment.")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ParamError("Not a moment.") from None
    if moment.utcoffset() is None:
        raise ParamError("A moment needs its UTC offset.")
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+05:00 is in year 0 in UTC
        raise ParamError("Not a moment a date column can hold.") from None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MIN_MICROS = (dt.datetime.min.replace(tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime.max.replace(tzinfo=dt.timezone.utc) - _EPOCH) // dt.timedelta(microseconds=1)


def moment_micros(moment: dt.datetime) -> int:
    """Microseconds since 1970 (UTC), exactly (no float on the way)."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def parse_micros(text: Any) -> dt.datetime:
    """The aware UTC moment `moment_micros` wrote."""
    micros = parse_int(text, min_value=_MIN_MICROS, max_value=_MAX_MICROS, what="The moment")
    return _EPOCH + dt.timedelta(microseconds=micros)


@lru_cache(maxsize=1)
def _zone_keys() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_zone(text: Any) -> zoneinfo.ZoneInfo:
    key = str(text or "").strip()
    if key not in _zone_keys():
        raise ParamError("Unknown time zone.")
    return zoneinfo.ZoneInfo(key)


def clip(text: Any, length: int = 40) -> str:
    """A parameter's text as a message may quote it: printable, short."""
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in str(text)[:length + 1])
    return text if len(text) <= length else text[:length] + "…"


# -- Django page numbers (the Espay batch pages) --------------------------------------------------

LAST = "last"


def page_of(object_list, *, per_page: int, number: str | None) -> tuple[Page, str]:
    """The page `?page=` asks for, and a note for the user when it is not one of the pages.

    `number`: 1..num_pages, or `last`; empty = the first page. A malformed or out-of-range number
    shows the nearest page (the first, or the last when it is past the end) and says so.
    """
    paginator = Paginator(object_list, per_page)
    text = (number or "").strip()
    if not text:
        return paginator.page(1), ""
    if text == LAST:
        return paginator.page(paginator.num_pages), ""
    try:
        wanted = parse_int(text, min_value=-MAX_ID, max_value=MAX_ID)
    except ParamError:
        return paginator.page(1), f"“{clip(text)}” is not a page number; showing page 1 of {paginator.num_pages}."
    if wanted < 1:
        return paginator.page(1), f"Page {wanted:,} does not exist; showing page 1 of {paginator.num_pages}."
    if wanted > paginator.num_pages:
        return (paginator.page(paginator.num_pages),
                f"Page {wanted:,} does not exist; showing page {paginator.num_pages} of {paginator.num_pages}.")
    return paginator.page(wanted), ""


# -- form fields (filters and forms use these) ----------------------------------------------------

def validate_date_range(value: dt.date) -> None:
    try:
        check_date(value)
    except ParamError as exc:
        raise ValidationError(str(exc), code="date_range") from None


class DateField(forms.DateField):
    """A calendar day (YYYY-MM-DD and Django's other input formats) within MIN_DATE..MAX_DATE."""

    default_validators = [validate_date_range]

    def to_python(self, value):
        try:
            return super().to_python(value)
        except OverflowError:  # a date format whose year overflows
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class MoneyField(forms.DecimalField):
    """An amount as the money columns hold it (`parse_decimal`: finite, 16 digits before the point,
    2 after), with one message saying what is wrong."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_decimal(value if isinstance(value, (str, Decimal)) else str(value))
        except ParamError as exc:
            raise ValidationError(str(exc), code="invalid") from None


class IntegerField(forms.IntegerField):
    """A whole number in ASCII digits (`parse_int`); `min_value` / `max_value` as in Django's field."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_int(str(value).strip(), min_value=-MAX_ID, max_value=MAX_ID)
        except ParamError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class ZoneField(forms.CharField):
    """An IANA time zone key (`parse_zone`)."""

    def clean(self, value):
        value = super().clean(value)
        if value:
            try:
                parse_zone(value)
            except ParamError as exc:
                raise ValidationError(str(exc), code="zone") from None
        return value
