"""Aging by customer groups by the customer across gateways (its id), not by a name string; each
group's link opens the invoice list of exactly that customer; the list filters double billing."""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.utils import timezone

from arbook.models import Customer, GatewayCredential, Invoice, InvoiceEvent
from arbook.selectors import aging
from arbook.status import RECEIVABLE
from arbook.services.customers import customers_refresh
from tests.factories import CredentialFactory, InvoiceFactory

pytestmark = pytest.mark.django_db


def test_groups_are_customers_not_names(signed_in, merchant):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    faspay = CredentialFactory(merchant=merchant, provider="faspay")
    budi = Customer.objects.create(merchant=merchant, name="Budi")
    namesake = Customer.objects.create(merchant=merchant, name="Budi")  # another debtor with the same name
    due = timezone.now() - dt.timedelta(days=10)
    InvoiceFactory(credential=xendit, customer=budi, customer_name="Budi", outstanding=Decimal("100"), due_at=due)
    InvoiceFactory(credential=faspay, customer=budi, customer_name="Budi Santoso", outstanding=Decimal("50"),
                   due_at=due)
    InvoiceFactory(credential=faspay, customer=namesake, customer_name="Budi", outstanding=Decimal("7"), due_at=due)
    page = signed_in.get("/aging/?group=customer")
    assert page.status_code == 200
    report = page.context["report"]
    [table] = report.tables
    groups = {line.group_value: line.total.amount for line in table.lines if line.kind == "group"}
    assert groups == {budi.pk: Decimal("150"), namesake.pk: Decimal("7")}
    line = next(l for l in table.lines if l.group_value == budi.pk)
    assert line.label == "Budi"
    assert f'<a href="/customers/{budi.pk}/">Budi</a>' in page.content.decode()  # the group opens its customer
    link = line.total.url
    assert parse_qs(urlsplit(link).query)["customer_id"] == [str(budi.pk)]
    listed = signed_in.get(link)
    assert sorted(i.outstanding for i in listed.context["page"].rows) == [Decimal("50"), Decimal("100")]


def test_invoice_list_filters_possible_double_billing(signed_in, merchant):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    espay = CredentialFactory(merchant=merchant, provider="espay")
    c = Customer.objects.create(merchant=merchant, name="Siti")
    issued = timezone.now() - dt.timedelta(days=3)
    InvoiceFactory(credential=xendit, customer=c, number="A", amount=Decimal("500000"), issued_at=issued)
    InvoiceFactory(credential=espay, customer=c, number="B", amount=Decimal("500000"),
                   issued_at=issued + dt.timedelta(days=2))
    InvoiceFactory(credential=espay, customer=c, number="C", amount=Decimal("1"), issued_at=issued)
    customers_refresh(customer_ids=[c.pk])
    page = signed_in.get("/invoices/", {"double_billing": "1"})
    assert sorted(i.number for i in page.context["page"].rows) == ["A", "B"]
    assert 'name="double_billing" value="1" id="id_double_billing" checked' in page.content.decode()


@pytest.mark.parametrize("value", ["abc", "-1", "0", "99999999999999999999", "1.5"])
def test_a_bad_customer_id_never_errors(signed_in, value):
    assert signed_in.get("/invoices/", {"customer_id": value}).status_code in (200, 400)


def test_the_invoice_page_links_to_its_customer_and_all_its_invoices(signed_in, merchant):
    c = Customer.objects.create(merchant=merchant, name="Dewi")
    invoice = InvoiceFactory(credential=CredentialFactory(merchant=merchant), customer=c, customer_name="Dewi K.")
    html = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert f'href="/customers/{c.pk}/"' in html and f"?customer_id={c.pk}" in html


# -- the ranking from stored balances equals the plain GROUP BY ---------------------------------

RANK_NOW = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)
STATES = ("open", "partially_paid", "processing", "failed", "charged_back", "expired", "unknown", "paid",
          "cancelled", "draft")


@pytest.fixture
def ledger(merchant):
    """A random ledger: 60 customers on two gateways, every state, null/zero/negative outstanding,
    two currencies, and changes since the past as-of dates (events, later payments)."""
    rng = random.Random(16)
    with time_machine.travel(RANK_NOW, tick=False):
        creds = [CredentialFactory(merchant=merchant, provider=p) for p in ("xendit", "faspay")]
        customers = [Customer.objects.create(merchant=merchant, name=f"C{i}") for i in range(60)]
        for i, customer in enumerate(customers):
            for j in range(rng.randint(0, 6)):
                status = rng.choice(STATES)
                amount = Decimal(rng.choice([100, 250, 1000, 5000, 77]) * rng.randint(1, 9))
                outstanding = rng.choice([amount, amount / 2, Decimal(0), None, -amount / 10, amount])
                paid_at = RANK_NOW - dt.timedelta(days=rng.randint(0, 80)) if status == "paid" else None
                inv = InvoiceFactory(credential=rng.choice(creds), customer=customer, currency=rng.choice(["IDR", "USD"]),
                                     status=status, amount=amount, outstanding=outstanding, paid_at=paid_at,
                                     issued_at=RANK_NOW - dt.timedelta(days=rng.randint(50, 200)),
                                     due_at=RANK_NOW - dt.timedelta(days=rng.randint(-20, 150)))
                if rng.random() < 0.3:  # it changed since the as-of dates: its state then was another
                    InvoiceEvent.objects.create(invoice=inv, seen_at=RANK_NOW - dt.timedelta(days=rng.randint(1, 25)),
                                                status_before=rng.choice(RECEIVABLE), status_after=status,
                                                outstanding_before=amount * rng.choice([1, 2, 3]),
                                                outstanding_after=outstanding)
        InvoiceFactory(credential=creds[0], customer=None, outstanding=Decimal("999999"), due_at=RANK_NOW)
        customers_refresh(customer_ids=[c.pk for c in customers])
    return merchant


def _groups(report):
    return [(t.currency, [(l.kind, l.group_value, [(c.amount, c.count) for c in l.cells]) for l in t.lines])
            for t in report.tables]


@pytest.mark.parametrize("days_ago", [0, 30])
@pytest.mark.parametrize("rows", ["receivable", "open", "failed", "all"])
@pytest.mark.parametrize("top", [1, 4, 25, 200])
def test_ranking_from_balances_equals_grouping_every_invoice(ledger, monkeypatch, days_ago, rows, top):
    monkeypatch.setattr(aging, "RANK_BATCH", 3)  # several rounds on this small ledger
    used = []
    real = aging._ranked_customers
    monkeypatch.setattr(aging, "_ranked_customers", lambda *a, **k: used.append(real(*a, **k)) or used[-1])
    with time_machine.travel(RANK_NOW, tick=False):
        as_of = timezone.localdate() - dt.timedelta(days=days_ago)
        for qs in (Invoice.objects.all(), Invoice.objects.filter(provider="faspay")):
            args = dict(queryset=qs, as_of=as_of, group="customer", rows=rows, top=top)
            ranked = aging.invoice_aging(**args, merchant_ids=[ledger.pk])
            plain = aging.invoice_aging(**args)
            assert _groups(ranked) == _groups(plain)
    if rows == "all":
        assert not used  # credits and expired invoices are not in the balance: no bound
    elif top <= 4:
        assert any(r is not None for r in used)  # the ranking answered (not only the fallback)


def test_a_sync_that_has_not_refreshed_balances_yet_makes_the_report_read_invoices(ledger):
    """Stored balances lag a running sync (it refreshes them at its end): while a credential of the
    merchant says so, the report ranks from the invoices, so a grown balance is not missed."""
    with time_machine.travel(RANK_NOW, tick=False):
        late = Customer.objects.create(merchant=ledger, name="Late")
        InvoiceFactory(credential=GatewayCredential.objects.filter(merchant=ledger).first(), customer=late,
                       outstanding=Decimal("10000000"), due_at=RANK_NOW)  # written, balance not refreshed
        args = dict(queryset=Invoice.objects.all(), as_of=timezone.localdate(), group="customer", top=3,
                    merchant_ids=[ledger.pk])
        GatewayCredential.objects.filter(merchant=ledger).update(customers_pending_since=RANK_NOW)
        report = aging.invoice_aging(**args)
        idr = next(t for t in report.tables if t.currency == "IDR")
        assert idr.lines[0].group_value == late.pk
