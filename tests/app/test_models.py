"""Models and constraints."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from arbook.models import Invoice
from arbook.status import STATUSES, InvoiceStatus
from gateways import status as st
from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory

pytestmark = pytest.mark.django_db


def test_invoice_is_unique_per_credential_and_external_id():
    invoice = InvoiceFactory(external_id="A-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceFactory(credential=invoice.credential, external_id="A-1")
    # The same provider id under another credential is another invoice.
    InvoiceFactory(credential=CredentialFactory(merchant=invoice.merchant), external_id="A-1")
    assert Invoice.objects.filter(external_id="A-1").count() == 2


def test_money_round_trips_as_exact_decimal():
    invoice = InvoiceFactory(currency="DKK", amount=Decimal("1234.56"), outstanding=Decimal("-0.01"))
    invoice.refresh_from_db()
    assert invoice.amount == Decimal("1234.56") and isinstance(invoice.amount, Decimal)
    assert invoice.outstanding == Decimal("-0.01")  # a credit stays negative


def test_amount_may_be_unknown():
    invoice = InvoiceFactory(amount=None)
    invoice.refresh_from_db()
    assert invoice.amount is None


def test_status_choices_are_the_normalized_states_with_one_colour_each():
    assert [c for c, _ in InvoiceStatus.choices] == list(st.ALL)
    assert set(STATUSES) == set(st.ALL)
    assert all(info.colour for info in STATUSES.values())


def test_datetimes_are_timezone_aware():
    invoice = InvoiceFactory()
    invoice.refresh_from_db()
    assert invoice.due_at.tzinfo is not None and invoice.issued_at.tzinfo is not None


def test_events_hang_off_their_invoice_in_order():
    invoice = InvoiceFactory()
    first = InvoiceEventFactory(invoice=invoice, status_before="open", status_after="paid")
    second = InvoiceEventFactory(invoice=invoice, status_before="paid", status_after="charged_back")
    assert list(invoice.events.all()) == [first, second]
    assert str(first).endswith("open → paid")


def test_credential_gets_an_unguessable_hook_token():
    a, b = CredentialFactory(), CredentialFactory()
    assert len(a.hook_token) >= 40 and a.hook_token != b.hook_token
