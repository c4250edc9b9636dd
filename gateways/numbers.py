"""The one Decimal parser: every amount, from a gateway, a webhook, a URL or a spreadsheet, is read here.

It lives on the bottom floor so both `gateways/` and `arbook/` can use it. A float is read at its
shortest decimal text (`repr`), never at its binary value, and a bool is never a number. Callers
turn `NotANumber` into their own error (a bad response, a refused notification, a form error).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


class NotANumber(ValueError):
    """The value is not a finite decimal number."""


def parse_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a Decimal, int, float or text; None or "" is None (unknown)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise NotANumber("a boolean is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            raise NotANumber(f"{value[:40]!r} is not a number") from None
    else:
        raise NotANumber(f"a {type(value).__name__} is not a number")
    if not number.is_finite():
        raise NotANumber(f"{value!r} is not a finite number")
    return number
