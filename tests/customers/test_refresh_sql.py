"""The summary's PostgreSQL statement (`customers_refresh`) against the ORM/Python path SQLite runs
(`_refresh_orm`, `_duplicates`): the same summaries, balances and possible double billings on
the same data, the window's boundary and both directions of each pair included."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from django.db import connection

from arbook.models import Customer, CustomerBalance, DuplicateSuspect, Invoice
from arbook.services import customers as service
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the SQL path is PostgreSQL's")]

#: A Monday 00:00 UTC: a multiple of the 7-day window since the epoch (a bucket boundary of the SQL).
EDGE = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc) - dt.timedelta(
    seconds=dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc).timestamp() % (7 * 86_400))
WEEK = dt.timedelta(days=service.DUPLICATE_WINDOW_DAYS)
US = dt.timedelta(microseconds=1)


def _python_pairs(ids):
    invoices = Invoice.objects.filter(customer_id__in=ids).filter(service._OWED, amount__isnull=False)
    return {(d.customer_id, d.invoice_id, d.other_id) for d in service._duplicates(invoices)}


def _stored():
    customers = set(Customer.objects.values_list("id", "invoice_count", "open_count", "oldest_open_due",
                                                 "last_paid_at", "providers"))
    balances = set(CustomerBalance.objects.values_list("customer_id", "merchant_id", "currency", "outstanding",
                                                       "open_count", "overdue", "overdue_weight"))
    pairs = set(DuplicateSuspect.objects.values_list("customer_id", "invoice_id", "other_id"))
    return customers, balances, pairs


@pytest.fixture
def ledger():
    """Two customers with invoices around the window's edges, in two currencies and states."""
    merchant = MerchantFactory()
    xendit, espay = (CredentialFactory(merchant=merchant, provider=p) for p in ("xendit", "espay"))
    a, b = (Customer.objects.create(merchant=merchant, name=n) for n in ("A", "B"))
    amount = Decimal("500000")

    def inv(customer, issued, credential=xendit, **fields):
        fields.setdefault("amount", amount)
        fields.setdefault("outstanding", fields["amount"])
        return InvoiceFactory(credential=credential, customer=customer, issued_at=issued, **fields)

    made = {
        # exactly the window apart (a pair), a microsecond more (no pair), across bucket boundaries
        "edge": inv(a, EDGE - US), "edge+week": inv(a, EDGE - US + WEEK, credential=espay),
        "edge+week+1us": inv(a, EDGE + WEEK),
        # a chain 5 days apart: neighbours pair, the ends (10 days) do not
        "c1": inv(a, EDGE + 30 * WEEK), "c2": inv(a, EDGE + 30 * WEEK + dt.timedelta(days=5)),
        "c3": inv(a, EDGE + 30 * WEEK + dt.timedelta(days=10)),
        # the same instant twice, in another currency; an unknown outstanding counts by its amount
        "t1": inv(a, EDGE + 60 * WEEK, currency="USD", amount=Decimal("7.50")),
        "t2": inv(a, EDGE + 60 * WEEK, currency="USD", amount=Decimal("7.50"), outstanding=None),
        # never a pair: another amount, paid, nothing left, no amount, no issue date
        "other amount": inv(a, EDGE + dt.timedelta(days=1), amount=Decimal("400000")),
        "paid": inv(a, EDGE + dt.timedelta(days=1), status="paid", outstanding=Decimal(0),
                    paid_at=EDGE + dt.timedelta(days=2)),
        "nothing left": inv(a, EDGE + dt.timedelta(days=1), outstanding=Decimal(0)),
        "no amount": inv(a, EDGE + dt.timedelta(days=1), amount=None, outstanding=Decimal("5")),
        "no issue date": inv(a, None),
        # the other customer: the same amount and day as A's invoices are not A's pairs
        "b1": inv(b, EDGE - US), "b2": inv(b, EDGE + dt.timedelta(days=3), credential=espay),
        "b-paid": inv(b, EDGE, status="paid", outstanding=Decimal(0), paid_at=EDGE),
    }
    return merchant, (a, b), made


def test_sql_pairs_equal_the_python_pairs_at_the_window_edge_and_both_ways(ledger):
    _merchant, (a, b), made = ledger
    ids = [a.pk, b.pk]
    pairs = service.duplicate_pairs_sql(ids)
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == _python_pairs(ids)
    pk = {name: inv.pk for name, inv in made.items()}
    expected_a = {("edge", "edge+week"), ("edge+week", "edge+week+1us"), ("c1", "c2"), ("c2", "c3"), ("t1", "t2")}
    expected_b = {("b1", "b2")}
    expected = ({(a.pk, pk[x], pk[y]) for x, y in expected_a} | {(a.pk, pk[y], pk[x]) for x, y in expected_a}
                | {(b.pk, pk[x], pk[y]) for x, y in expected_b} | {(b.pk, pk[y], pk[x]) for x, y in expected_b})
    assert set(pairs) == expected


def test_sql_refresh_stores_what_the_orm_path_stores(ledger):
    merchant, (a, b), made = ledger
    empty = Customer.objects.create(merchant=merchant, name="No invoices")
    ids = [a.pk, b.pk, empty.pk]
    service.customers_refresh(customer_ids=ids)
    by_sql = _stored()
    service._refresh_orm(ids, timezone.now())
    assert _stored() == by_sql
    assert {(c, i, o) for c, i, o in by_sql[2]} == _python_pairs(ids)
    assert (Customer.objects.get(pk=empty.pk).invoice_count, CustomerBalance.objects.filter(customer=empty).count()) \
        == (0, 0)

    # Changes of every kind: a pair paid, a currency paid off, an amount changed, an invoice moved.
    Invoice.objects.filter(pk=made["edge+week"].pk).update(status="paid", outstanding=Decimal(0))
    Invoice.objects.filter(pk__in=[made["t1"].pk, made["t2"].pk]).update(status="paid", outstanding=Decimal(0))
    Invoice.objects.filter(pk=made["c3"].pk).update(amount=Decimal("400000"), outstanding=Decimal("400000"))
    Invoice.objects.filter(pk__in=[made["c1"].pk, made["c2"].pk]).update(customer=b)
    # Overdue ones (the worklist's weight: amount times the due instant, to the microsecond).
    Invoice.objects.filter(pk__in=[made["c3"].pk, made["c1"].pk]).update(
        due_at=timezone.now() - dt.timedelta(days=3, seconds=1, microseconds=234_567))
    service.customers_refresh(customer_ids=ids)
    by_sql = _stored()
    service._refresh_orm(ids, timezone.now())
    assert _stored() == by_sql
    assert not CustomerBalance.objects.filter(customer=a, currency="USD").exists()
    assert CustomerBalance.objects.filter(overdue__gt=0).count() == 2
    assert {(c, i) for c, i, _o in by_sql[2]} == {(b.pk, made[n].pk) for n in ("b1", "b2", "c1", "c2")}


def _locations():
    with connection.cursor() as cursor:
        found = []
        for model in (Customer, CustomerBalance, DuplicateSuspect):
            cursor.execute(f"SELECT id, ctid::text FROM {model._meta.db_table} ORDER BY id")
            found.append(cursor.fetchall())
        return found


def test_sql_refresh_leaves_right_rows_alone(ledger):
    _merchant, (a, b), _made = ledger
    service.customers_refresh(customer_ids=[a.pk, b.pk])
    before = _locations()
    assert all(before)
    service.customers_refresh(customer_ids=[a.pk, b.pk])
    assert _locations() == before  # nothing rewritten (a row's new version moves) when nothing changed
