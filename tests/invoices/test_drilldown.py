"""The aging drill-down parameters: the list holds exactly what an aging cell sums."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from arbook.scoping import scope
from arbook.models import Invoice
from arbook.selectors.aging import invoice_aging
from tests.factories import InvoiceFactory

from .conftest import notices, totals

pytestmark = pytest.mark.django_db


@pytest.fixture
def population(credential):
    now = timezone.now()
    specs = [
        ("open", 10, "1000000"), ("open", 10, "250000"), ("open", 45, "700000"), ("open", -5, "300000"),
        ("failed", 20, "120000"), ("partially_paid", 75, "999000"), ("processing", 200, "50000"),
        ("expired", 15, "80000"), ("open", 12, "-40000"), ("paid", 30, "0"), ("cancelled", 30, "0"),
    ]
    for i, (status, days_late, outstanding) in enumerate(specs):
        InvoiceFactory(credential=credential, number=f"AG-{i}", status=status, outstanding=Decimal(outstanding),
                       issued_at=now - timedelta(days=days_late + 30), due_at=now - timedelta(days=days_late))
    # Paid 5 days ago, due 20 days ago: owed in the 1-30 bucket as of 10 days ago.
    InvoiceFactory(credential=credential, number="PAID-LATER", status="paid", amount=Decimal("555000"),
                   outstanding=Decimal("0"), paid_amount=Decimal("555000"), paid_at=now - timedelta(days=5),
                   issued_at=now - timedelta(days=50), due_at=now - timedelta(days=20))


def _cells(user, as_of):
    report = invoice_aging(queryset=scope(Invoice.objects.all(), user), as_of=as_of, basis="due")
    (table,) = report.tables
    return {(line.key, cell.bucket): cell for line in table.lines for cell in line.cells}


@pytest.mark.parametrize("row,bucket", [("open", "1-30"), ("open", "31-60"), ("open", "current"), ("failed", "1-30"),
                                        ("partially_paid", "61-90"), ("processing", "91-"), ("expired", "1-30"),
                                        ("credit", "1-30"), ("receivable", "1-30")])
def test_list_totals_equal_the_aging_cell_today(signed_in, user, population, row, bucket):
    today = timezone.localdate()
    cell = _cells(user, today)[(row, bucket)]
    assert cell.count > 0  # the population fills every cell tested
    params = {"as_of": today.isoformat(), "basis": "due", "bucket": bucket, "row": row, "currency": "IDR"}
    response = signed_in.get("/invoices/", params)
    listed = totals(signed_in.get("/invoices/", {**params, "_totals": "1"}))["IDR"]
    assert (listed.count, listed.outstanding) == (cell.count, cell.amount)
    assert len(response.context["page"].rows) == cell.count
    assert response.context["listing"].drilldown["row"] == row


def test_list_totals_equal_the_aging_cell_as_of_a_past_date(signed_in, user, population):
    as_of = timezone.localdate() - timedelta(days=10)
    cell = _cells(user, as_of)[("open", "1-30")]
    params = {"as_of": as_of.isoformat(), "bucket": "1-30", "row": "open"}
    response = signed_in.get("/invoices/", params)
    listed = totals(signed_in.get("/invoices/", {**params, "_totals": "1"}))["IDR"]
    assert "PAID-LATER" in [r.number for r in response.context["page"].rows]
    assert (listed.count, listed.outstanding) == (cell.count, cell.amount)


@pytest.mark.parametrize("row,bucket", [("open", "1-30"), ("open", "31-60"), ("failed", "1-30"), ("expired", "1-30"),
                                        ("credit", "1-30"), ("receivable", "1-30"), ("partially_paid", "61-90"),
                                        ("processing", "91-")])
def test_the_list_equals_the_cell_as_of_a_past_date_for_every_row(signed_in, user, population, credential, row, bucket):
    """Invoices that left the row since (cancelled, paid) and that entered it since are in the list
    exactly when the cell counts them: the list's plain-column prefilter (`_may_be_in`) drops
    only invoices unchanged since whose state now is not the row."""
    from arbook.models import InvoiceEvent

    now = timezone.now()
    was_open = InvoiceFactory(credential=credential, number="WAS-OPEN", status="cancelled", outstanding=Decimal("0"),
                              issued_at=now - timedelta(days=40), due_at=now - timedelta(days=15))
    was_failed = InvoiceFactory(credential=credential, number="WAS-FAILED", status="open", outstanding=Decimal("900"),
                                issued_at=now - timedelta(days=40), due_at=now - timedelta(days=15))
    InvoiceEvent.objects.append([
        InvoiceEvent(invoice=was_open, seen_at=now - timedelta(days=5), source="sync", status_before="open",
                     status_after="cancelled", outstanding_before=Decimal("321000"), outstanding_after=Decimal("0")),
        InvoiceEvent(invoice=was_failed, seen_at=now - timedelta(days=5), source="sync", status_before="failed",
                     status_after="open", outstanding_before=Decimal("900"), outstanding_after=Decimal("900"))])
    as_of = timezone.localdate() - timedelta(days=10)
    cell = _cells(user, as_of)[(row, bucket)]
    params = {"as_of": as_of.isoformat(), "basis": "due", "bucket": bucket, "row": row, "size": 100}
    listed = [r.number for r in signed_in.get("/invoices/", params).context["page"].rows]
    total = totals(signed_in.get("/invoices/", {**params, "_totals": "1"})).get("IDR")
    assert len(listed) == cell.count and (total.count, total.outstanding) == (cell.count, cell.amount) if cell.count \
        else not listed
    assert ("WAS-OPEN" in listed) == (row in ("open", "receivable") and bucket == "1-30")
    assert ("WAS-FAILED" in listed) == (row in ("failed", "receivable") and bucket == "1-30")


def test_a_malformed_bucket_is_explained_not_applied(signed_in, population):
    response = signed_in.get("/invoices/", {"bucket": "lots", "row": "open"})
    assert response.status_code == 200
    assert any("aging" in n.lower() and "lots" in n for n in notices(response))
    assert response.context["listing"].drilldown is None
