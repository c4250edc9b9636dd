"""The statement of account: figures equal the aging's, payments in the period, how to pay, a real PDF."""
from __future__ import annotations

import datetime as dt
import io
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from pypdf import PdfReader

from arbook.models import Customer, CustomerIdentity, EspayBatch, EspayLine, EspayVirtualAccount, InvoiceEvent
from arbook.selectors import aging
from arbook.selectors.statements import customer_statement
from arbook.exports.statements import statement_pdf, statement_rows
from arbook.templatetags.money import format_money
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory

pytestmark = pytest.mark.django_db
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
NOW = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)


def at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=JKT)


@pytest.fixture
def book():
    with time_machine.travel(NOW, tick=False):
        merchant = MerchantFactory()
        xendit = CredentialFactory(merchant=merchant, provider="xendit")
        espay = CredentialFactory(merchant=merchant, provider="espay")
        customer = Customer.objects.create(merchant=merchant, name="PT Maju")
        CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value="ap@maju.id",
                                        shown="AP@maju.id")
        other = Customer.objects.create(merchant=merchant, name="Someone else")

        def inv(cred, number, due, outstanding, *, who=customer, currency="IDR", status="open", **kw):
            return InvoiceFactory(credential=cred, customer=who, number=number, external_id=number, currency=currency,
                                  amount=kw.pop("amount", outstanding), outstanding=outstanding, status=status,
                                  issued_at=at(due) - dt.timedelta(days=30), due_at=at(due), **kw)

        inv(xendit, "X-1", "2026-10-25", Decimal("100000"), checkout_url="https://checkout.example/x1")  # 7 days
        inv(xendit, "X-2", "2026-08-01", Decimal("250000.50"), status="partially_paid")  # 92 days
        inv(xendit, "X-3", "2026-11-20", Decimal("10.25"), currency="USD")  # not yet due
        inv(xendit, "X-4", "2026-10-01", Decimal("999"), who=other)  # another customer: never on it
        paid = inv(xendit, "X-5", "2026-10-10", Decimal(0), status="paid", amount=Decimal("40000"),
                   paid_amount=Decimal("40000"), paid_at=at("2026-10-12"))
        InvoiceEvent.objects.create(invoice=paid, seen_at=at("2026-10-12"), status_before="open", status_after="paid",
                                    outstanding_before=Decimal("40000"), outstanding_after=Decimal(0),
                                    paid_at_after=at("2026-10-12"))
        e = inv(espay, "E-1", "2026-10-20", Decimal("75000"))
        batch = EspayBatch.objects.create(merchant=merchant, credential=espay, file_name="b.csv", file_content=b"",
                                          file_size=0, file_sha256="0" * 64, file_kind="csv")
        line = EspayLine.objects.create(batch=batch, row_number=2, doc_no=e.external_id, member_code="M1",
                                        amount=Decimal("75000"), total_amount=Decimal("75000"),
                                        number_of_installment=1, installment_amount=Decimal("75000"),
                                        billing_date="05")
        EspayVirtualAccount.objects.create(line=line, bank_code="BCA", va_number="880812345")
        EspayVirtualAccount.objects.create(line=line, bank_code="BNI", va_number="988812345")
        yield customer


def test_statement_figures_equal_the_aging_of_its_invoices(book):
    with time_machine.travel(NOW, tick=False):
        statement = customer_statement(customer=book, as_of=dt.date(2026, 11, 1), start=dt.date(2026, 10, 1),
                                       end=dt.date(2026, 10, 31), tz=JKT)
        report = aging.invoice_aging(queryset=book.invoices.all(), as_of=dt.date(2026, 11, 1), tz=JKT)
    by_currency = {s.currency: s for s in statement.sections}
    assert set(by_currency) == {"IDR", "USD"}
    idr = by_currency["IDR"]
    assert idr.total == Decimal("425000.50") == sum(line.outstanding for line in idr.lines)
    table = next(t for t in report.tables if t.currency == "IDR")
    owed = [line for line in table.lines if line.kind == "row" and line.key in aging.RECEIVABLE]
    assert [a for _l, a in idr.buckets] == [sum(line.cells[i].amount for line in owed) for i in range(len(report.buckets))]
    assert [(line.number, line.days_overdue, line.bucket) for line in idr.lines] == [
        ("X-2", 92, "90+ days"), ("E-1", 12, "1–30 days"), ("X-1", 7, "1–30 days")]
    assert by_currency["USD"].total == Decimal("10.25")
    assert next(line for line in idr.lines if line.number == "E-1").pay == ("VA BCA 880812345", "VA BNI 988812345")
    assert next(line for line in idr.lines if line.number == "X-1").pay == ("https://checkout.example/x1",)
    assert [(p.number, p.amount, p.day) for p in idr.payments] == [("X-5", Decimal("40000"), dt.date(2026, 10, 12))]
    assert idr.paid == Decimal("40000")
    assert statement.contacts == [("email", "AP@maju.id")]


def test_the_pdf_reads_back_with_the_same_figures(book):
    with time_machine.travel(NOW, tick=False):
        statement = customer_statement(customer=book, as_of=dt.date(2026, 11, 1), start=dt.date(2026, 10, 1),
                                       end=dt.date(2026, 10, 31), tz=JKT)
    pdf = statement_pdf(statement)
    assert pdf.startswith(b"%PDF-")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    figures = (format_money(Decimal("425000.50"), "IDR"), format_money(Decimal("40000"), "IDR"),
               format_money(Decimal("10.25"), "USD"), format_money(Decimal("250000.50"), "IDR"))
    assert figures[0] == "Rp 425.001"  # IDR is shown without decimals, rounded half-up
    for expected in ("Statement of account", "PT Maju", "AP@maju.id", "X-2", "E-1", "VA BCA 880812345", *figures):
        assert expected in text, expected
    assert "X-4" not in text  # another customer's invoice


def test_export_rows_cover_lines_totals_and_payments(book):
    with time_machine.travel(NOW, tick=False):
        statement = customer_statement(customer=book, as_of=dt.date(2026, 11, 1), start=dt.date(2026, 10, 1),
                                       end=dt.date(2026, 10, 31), tz=JKT)
    rows = list(statement_rows(statement))
    assert [r[2] for r in rows if r[0] == "Open"] == ["X-2", "E-1", "X-1", "X-3"]
    assert [r[8] for r in rows if r[0] == "Total owed"] == [Decimal("425000.50"), Decimal("10.25")]
    assert [r[8] for r in rows if r[0] == "Payment"] == [Decimal("40000")]
