"""Aging numbers on a crafted population: both bases, as of today and a past date, grouping."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from arbook.models import Invoice
from arbook.scoping import scope
from arbook.selectors.aging import AgingParameterError, aging_drilldown, invoice_aging, parse_bounds
from tests.aging.population import PAST5_DUE, TODAY_DUE, build

pytestmark = pytest.mark.django_db


@pytest.fixture
def pop(user):
    return build(user)


def cells(report, currency="IDR"):
    table = next(t for t in report.tables if t.currency == currency)
    out = {}
    for line in table.lines:
        if line.kind != "row":
            continue
        for c in line.cells:
            if c.count:
                out[(line.key, c.bucket)] = c.amount
    return out, table


def test_today_due_basis(pop, user):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=timezone.localdate())
    got, table = cells(report)
    assert got == TODAY_DUE
    assert [t.currency for t in report.tables] == ["IDR", "USD"]  # one table per currency, never summed
    usd, _ = cells(report, "USD")
    assert usd == {("open", "1-30"): Decimal("10.50")}
    receivable = next(l for l in table.lines if l.kind == "subtotal")
    assert receivable.total.amount == Decimal("1100") + 200 + 300 + 50 + 70 + 150 + 60
    total = next(l for l in table.lines if l.kind == "total")
    assert total.total.amount == sum(TODAY_DUE.values())
    assert "9999" not in str(total.total.amount)  # merchant B's invoice is not counted


def test_past_date_reads_history_and_paid_dates(pop, user):
    as_of = timezone.localdate() - dt.timedelta(days=5)
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=as_of)
    got, _ = cells(report)
    assert got == PAST5_DUE
    usd, _ = cells(report, "USD")
    assert usd == {("open", "current"): Decimal("10.50")}


def test_issue_date_basis(pop, user):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=timezone.localdate(), basis="issued")
    got, _ = cells(report)
    assert got == {
        ("open", "91-"): Decimal("600"), ("open", "1-30"): Decimal("1000"), ("partially_paid", "91-"): Decimal("50"),
        ("failed", "91-"): Decimal("70"), ("expired", "91-"): Decimal("80"), ("unknown", "91-"): Decimal("90"),
        ("credit", "91-"): Decimal("-25"), ("processing", "91-"): Decimal("150"),
        ("charged_back", "91-"): Decimal("60"),
    }


def test_custom_buckets(pop, user):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=timezone.localdate(), bounds=(15, 50))
    assert [b.key for b in report.buckets] == ["current", "1-15", "16-50", "51-"]
    got, _ = cells(report)
    assert got[("open", "1-15")] == Decimal("200")
    assert got[("open", "16-50")] == Decimal("300")
    assert got[("expired", "51-")] == Decimal("80")


@pytest.mark.parametrize("group", ["merchant", "provider", "customer"])
def test_grouping(pop, user, group):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=timezone.localdate(), group=group)
    _, table = cells(report)
    groups = {l.label: l.total.amount for l in table.lines if l.kind == "group"}
    receivable = Decimal("1100") + 200 + 300 + 50 + 70 + 150 + 60
    assert sum(groups.values()) == receivable
    if group == "merchant":
        assert groups == {"Alpha Trading": receivable}
    elif group == "provider":
        assert groups == {"Faspay Billing": receivable - 300, "Xendit": Decimal("300")}
    else:
        assert groups == {"Customer Main": receivable - 200, "Customer Two": Decimal("200")}


def test_customer_grouping_shows_top_n_and_others(pop, user):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=timezone.localdate(),
                           group="customer", top=1)
    _, table = cells(report)
    kinds = [(l.kind, l.label, l.total.amount) for l in table.lines]
    assert kinds[0][:2] == ("group", "Customer Main")
    assert ("others", "All others", Decimal("200")) in kinds
    assert kinds[-1][0] == "total"


@pytest.mark.parametrize("as_of_days,basis", [(0, "due"), (5, "due"), (0, "issued"), (5, "issued")])
def test_each_cell_equals_its_drilldown(pop, user, as_of_days, basis):
    as_of = timezone.localdate() - dt.timedelta(days=as_of_days)
    base = scope(Invoice.objects.all(), user)
    report = invoice_aging(queryset=base, as_of=as_of, basis=basis)
    checked = 0
    for table in report.tables:
        for line in table.lines:
            for c in [*line.cells, line.total]:
                qs = aging_drilldown(base.filter(currency=table.currency), as_of=as_of, basis=basis,
                                     bucket=c.bucket, row=c.row)
                agg = qs.aggregate(s=Sum("aging_outstanding"))
                assert (agg["s"] or 0) == c.amount, (table.currency, line.key, c.bucket)
                assert qs.count() == c.count
                checked += 1
    assert checked > 50


def test_bad_parameters_raise_readable_errors():
    for text in ("abc", "30,20", "0,30", ",".join(str(i) for i in range(1, 20))):
        with pytest.raises(AgingParameterError):
            parse_bounds(text)
    with pytest.raises(AgingParameterError):
        aging_drilldown(Invoice.objects.all(), as_of="2024-13-45", basis="due", bucket="1-30", row="open")
    with pytest.raises(AgingParameterError):
        aging_drilldown(Invoice.objects.all(), as_of="", basis="sideways", bucket="1-30", row="open")
    with pytest.raises(AgingParameterError):
        aging_drilldown(Invoice.objects.all(), as_of="", basis="due", bucket="x", row="open")
    with pytest.raises(AgingParameterError):
        aging_drilldown(Invoice.objects.all(), as_of="", basis="due", bucket="1-30", row="paid")


def test_past_date_reads_the_first_event_after_it(user):
    """Several events before and after the as-of date: the state then is the `*_before` of the
    first event after it (an event before it, or a later one, must not be read instead)."""
    from tests.aging.population import day
    from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory, MerchantFactory

    merchant = MerchantFactory()
    merchant.members.add(user)
    D = Decimal
    invoice = InvoiceFactory(credential=CredentialFactory(merchant=merchant), status="paid", outstanding=D("0"),
                             amount=D("100"), paid_amount=D("100"), paid_at=day(1), issued_at=day(60), due_at=day(50))
    for seen, before, after, out_before, out_after in [
        (day(20), "open", "processing", "100", "100"),  # before the as-of date (10 days ago)
        (day(5), "processing", "failed", "100", "100"),  # the first after it: failed... was processing then
        (day(3), "failed", "partially_paid", "100", "40"),
        (day(1), "partially_paid", "paid", "40", "0"),
    ]:
        InvoiceEventFactory(invoice=invoice, seen_at=seen, status_before=before, status_after=after,
                            outstanding_before=D(out_before), outstanding_after=D(out_after))
    queryset = scope(Invoice.objects.all(), user)
    for days_ago, expected in [(10, ("processing", "31-60", D("100"))), (4, ("failed", "31-60", D("100"))),
                               (2, ("partially_paid", "31-60", D("40")))]:
        report = invoice_aging(queryset=queryset, as_of=timezone.localdate() - dt.timedelta(days=days_ago))
        got, _ = cells(report)
        assert got == {expected[:2]: expected[2]}, days_ago
        drill = aging_drilldown(queryset, as_of=timezone.localdate() - dt.timedelta(days=days_ago), basis="due",
                                bucket=expected[1], row=expected[0])
        assert [(i.pk, i.aging_outstanding) for i in drill] == [(invoice.pk, expected[2])]


def test_past_date_splits_changed_invoices_exactly_at_the_cutoff(user):
    """As of a past date the report sums invoices unchanged since the cutoff in their current
    state and reads history only for the changed ones (`changed_at`); an event or a payment
    exactly at the cutoff is "after" it, one a second earlier is not."""
    from arbook.selectors.aging import day_start
    from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory, MerchantFactory

    merchant = MerchantFactory()
    merchant.members.add(user)
    credential = CredentialFactory(merchant=merchant)
    as_of = timezone.localdate() - dt.timedelta(days=10)
    cutoff = day_start(as_of + dt.timedelta(days=1), timezone.get_current_timezone())
    second = dt.timedelta(seconds=1)
    D = Decimal
    common = {"credential": credential, "issued_at": cutoff - dt.timedelta(days=40),
              "due_at": cutoff - dt.timedelta(days=20)}  # 20 days late then: bucket 1-30
    at_cutoff = InvoiceFactory(status="processing", outstanding=D("10"), **common)
    InvoiceEventFactory(invoice=at_cutoff, seen_at=cutoff, status_before="open", status_after="processing",
                        outstanding_before=D("10"), outstanding_after=D("10"))
    before = InvoiceFactory(status="failed", outstanding=D("20"), **common)
    InvoiceEventFactory(invoice=before, seen_at=cutoff - second, status_before="open", status_after="failed",
                        outstanding_before=D("20"), outstanding_after=D("20"))
    InvoiceFactory(status="paid", outstanding=D("0"), amount=D("30"), paid_amount=D("30"), paid_at=cutoff, **common)
    InvoiceFactory(status="paid", outstanding=D("0"), amount=D("40"), paid_amount=D("40"), paid_at=cutoff - second,
                   **common)
    InvoiceFactory(status="open", outstanding=D("50"), **common)  # never changed
    InvoiceFactory(status="paid", outstanding=D("-6"), amount=D("60"), paid_amount=D("66"), paid_at=cutoff - second,
                   **common)  # an unapplied credit, paid before the cutoff

    queryset = scope(Invoice.objects.all(), user)
    report = invoice_aging(queryset=queryset, as_of=as_of)
    got, table = cells(report)
    assert got == {("open", "1-30"): D("90"), ("failed", "1-30"): D("20"), ("credit", "1-30"): D("-6")}
    for line in table.lines:
        for c in [*line.cells, line.total]:
            drill = aging_drilldown(queryset, as_of=as_of, basis="due", bucket=c.bucket, row=c.row)
            assert (drill.aggregate(s=Sum("aging_outstanding"))["s"] or 0, drill.count()) == (c.amount, c.count)
