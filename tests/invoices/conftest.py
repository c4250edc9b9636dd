"""Fixtures for the invoice list and detail: two merchants, A (the user's) and B (someone else's)."""
from __future__ import annotations

import pytest

from tests.factories import CredentialFactory, MerchantFactory


@pytest.fixture
def merchant_b(db):
    return MerchantFactory(name="Other Merchant B")


@pytest.fixture
def credential_b(merchant_b):
    return CredentialFactory(merchant=merchant_b, provider="xendit", label="b-main")


def rows(response) -> list:
    """The invoices on the rendered page, in order."""
    assert response.status_code == 200, response.content[:500]
    return list(response.context["page"].rows)


def numbers(response) -> list[str]:
    return [r.number for r in rows(response)]


def totals(response) -> dict:
    return {t.currency: t for t in response.context["totals"]}


def notices(response) -> list[str]:
    return list(response.context["notices"])
