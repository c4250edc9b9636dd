"""The customer summary (balances per currency, oldest due, gateways), possible double billing,
and merge suggestions by folded name."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from arbook.models import Customer, CustomerBalance
from arbook.selectors.customers import duplicate_pairs, merge_suggestions, suspected_duplicates
from arbook.services.customers import customers_refresh, name_key
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 10, 1, 5, tzinfo=dt.timezone.utc)


def test_summary_and_balances_per_currency():
    merchant = MerchantFactory()
    xendit, faspay = (CredentialFactory(merchant=merchant, provider=p) for p in ("xendit", "faspay"))
    c = Customer.objects.create(merchant=merchant, name="Budi")
    InvoiceFactory(credential=faspay, customer=c, outstanding=Decimal("100"), amount=Decimal("100"),
                   due_at=T0 + dt.timedelta(days=5))
    InvoiceFactory(credential=xendit, customer=c, outstanding=Decimal("50.50"), amount=Decimal("60"),
                   status="partially_paid", due_at=T0)
    InvoiceFactory(credential=xendit, customer=c, currency="USD", outstanding=Decimal("7"), amount=Decimal("7"),
                   due_at=T0 + dt.timedelta(days=40))
    InvoiceFactory(credential=xendit, customer=c, status="paid", outstanding=Decimal(0), paid_amount=Decimal("9"),
                   paid_at=T0 + dt.timedelta(days=2), due_at=T0 - dt.timedelta(days=90))
    assert customers_refresh(customer_ids=[c.pk]) == 1
    c.refresh_from_db()
    assert (c.invoice_count, c.open_count, c.oldest_open_due, c.last_paid_at, c.providers) == (
        4, 3, T0, T0 + dt.timedelta(days=2), "faspay,xendit")
    assert dict(CustomerBalance.objects.filter(customer=c).values_list("currency", "outstanding")) == {
        "IDR": Decimal("150.50"), "USD": Decimal("7.00")}


def test_possible_double_billing_same_amount_within_seven_days_on_any_gateway():
    merchant = MerchantFactory()
    xendit, espay = (CredentialFactory(merchant=merchant, provider=p) for p in ("xendit", "espay"))
    c = Customer.objects.create(merchant=merchant, name="Siti")
    a = InvoiceFactory(credential=xendit, customer=c, amount=Decimal("500000"), issued_at=T0)
    b = InvoiceFactory(credential=espay, customer=c, amount=Decimal("500000"), issued_at=T0 + dt.timedelta(days=6))
    InvoiceFactory(credential=espay, customer=c, amount=Decimal("500000"), issued_at=T0 + dt.timedelta(days=20))
    InvoiceFactory(credential=xendit, customer=c, amount=Decimal("500000"), currency="USD", issued_at=T0)
    InvoiceFactory(credential=xendit, customer=c, amount=Decimal("400000"), issued_at=T0)
    InvoiceFactory(credential=xendit, customer=c, amount=Decimal("500000"), status="paid", issued_at=T0)
    customers_refresh(customer_ids=[c.pk])
    assert [(x.pk, y.pk) for x, y in duplicate_pairs(customer=c)] == [(a.pk, b.pk)]
    assert set(suspected_duplicates(c.invoices.all()).values_list("pk", flat=True)) == {a.pk, b.pk}
    b.status = "paid"
    b.save()
    customers_refresh(customer_ids=[c.pk])
    assert duplicate_pairs(customer=c) == []


def test_similar_names_are_suggested_never_merged():
    merchant, other = MerchantFactory(), MerchantFactory()
    names = ["PT. Maju Jaya", "maju jaya, PT", "Maju Jaya Abadi", "Budi"]
    made = [Customer.objects.create(merchant=merchant, name=n, name_key=name_key(n)) for n in names]
    Customer.objects.create(merchant=other, name="Maju Jaya", name_key=name_key("Maju Jaya"))
    [suggestion] = merge_suggestions(merchant_ids=[merchant.pk])
    assert {c.pk for c in suggestion.customers} == {made[0].pk, made[1].pk}
    assert merge_suggestions(merchant_ids=[other.pk]) == []
