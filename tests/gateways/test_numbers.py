"""The one Decimal parser (gateways.numbers) that every amount reader goes through."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as s

from gateways.numbers import NotANumber, parse_decimal


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("150000", Decimal("150000")), (" 12.50 ", Decimal("12.50")),
    (7, Decimal(7)), (0.1, Decimal("0.1")), (Decimal("-3.25"), Decimal("-3.25")),
])
def test_reads_numbers_exactly(value, expected):
    assert parse_decimal(value) == expected
    if expected is not None:
        assert str(parse_decimal(value)) == str(expected)  # the text's digits, never a binary float


@pytest.mark.parametrize("value", [True, False, "abc", "NaN", "Infinity", "-inf", "1,5", [], {}, Decimal("NaN")])
def test_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(NotANumber):
        parse_decimal(value)


@given(s.decimals(allow_nan=False, allow_infinity=False))
def test_text_round_trips(number):
    assert parse_decimal(str(number)) == number
