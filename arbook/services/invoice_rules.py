"""Money rules no notification can break, checked before a notification changes an invoice.

A notification is the hostile channel: anyone can POST to a hook URL, and even a genuine one
carries fields its signature does not cover. Whatever it says, the invoice it leaves must obey:

- its amount, when known, is positive (credit notes, the documented negative amounts, come only
  from a provider's list read, never from a notification);
- `paid_amount` is never negative;
- `outstanding` is never above the amount, except for a charge-back (money owed again on top);
- a final state (paid, cancelled) goes back to an owed one only when the notification's facts are
  vouched for: covered by its signature or confirmed by the provider's own API.

A sync read is the provider's own statement of the invoice and is not second-guessed here.
"""
from __future__ import annotations

from decimal import Decimal

from gateways import status as st

FINAL = st.SETTLED


def money_rule_violations(*, amount: Decimal | None, outstanding: Decimal | None, paid_amount: Decimal | None,
                          status: str) -> list[str]:
    """The rules an invoice state breaks (empty when it is sound)."""
    broken = []
    if amount is not None and amount <= 0:
        broken.append(f"the amount {amount} is not positive")
    if paid_amount is not None and paid_amount < 0:
        broken.append(f"the paid amount {paid_amount} is negative")
    if (amount is not None and outstanding is not None and amount > 0 and outstanding > amount
            and status != st.CHARGED_BACK):
        broken.append(f"the outstanding {outstanding} is above the amount {amount}")
    return broken


def is_regression(before: str, after: str) -> bool:
    """A final state turning back into one that is still owed or open."""
    return before in FINAL and after not in FINAL
