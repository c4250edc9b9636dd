"""A customer's statement of account as of a date: what it owed then, by age, what it paid in a
period, and how to pay what is open.

The open invoices and the bucket totals come from the aging selector itself (the same drill-down
and the same report the aging page shows), so a statement can never disagree with the aging.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import F, Q

from arbook.models import PROVIDER_CHOICES, Customer, CustomerIdentity, Invoice, InvoiceEvent
from arbook.models.espay import ways_to_pay
from arbook.selectors import aging

#: At most this many open invoices are listed per statement (the totals always cover all of them).
MAX_LINES = 5_000
PROVIDERS = dict(PROVIDER_CHOICES)


@dataclass(frozen=True)
class OpenLine:
    number: str
    provider: str
    issued: dt.date | None
    due: dt.date | None
    days_overdue: int
    bucket: str
    outstanding: Decimal
    #: How to pay it: a checkout link, or the Espay VA number at each bank ("BCA 8808…").
    pay: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaymentLine:
    day: dt.date
    number: str
    provider: str
    amount: Decimal


@dataclass
class Section:
    """Everything of one currency (amounts are never added across currencies)."""

    currency: str
    lines: list[OpenLine] = field(default_factory=list)
    buckets: list[tuple[str, Decimal]] = field(default_factory=list)
    total: Decimal = Decimal(0)
    payments: list[PaymentLine] = field(default_factory=list)
    paid: Decimal = Decimal(0)


@dataclass
class Statement:
    customer: Customer
    merchant_name: str
    as_of: dt.date
    start: dt.date
    end: dt.date
    tz: dt.tzinfo
    contacts: list[tuple[str, str]]
    sections: list[Section]
    truncated: bool = False


def _local(moment: dt.datetime | None, tz) -> dt.date | None:
    return None if moment is None else moment.astimezone(tz).date()


def customer_statement(*, customer: Customer, as_of: dt.date, start: dt.date, end: dt.date, tz,
                       bounds: tuple[int, ...] = aging.DEFAULT_BOUNDS) -> Statement:
    """The statement of `customer` (already scoped by the caller) on `as_of`, payments in [start, end]."""
    invoices = Invoice.objects.filter(customer=customer)
    report = aging.invoice_aging(queryset=invoices, as_of=as_of, basis="due", bounds=bounds, tz=tz)
    labels = report.bucket_labels
    sections: dict[str, Section] = {}
    for table in report.tables:
        section = sections.setdefault(table.currency, Section(table.currency))
        owed = [line for line in table.lines if line.kind == "row" and line.key in aging.RECEIVABLE]
        section.buckets = [(labels[i], sum((line.cells[i].amount for line in owed), Decimal(0)))
                           for i in range(len(labels))]
        section.total = sum((amount for _l, amount in section.buckets), Decimal(0))

    owed_then = (aging.aging_drilldown(invoices, as_of=as_of, basis="due", bucket="all", row="receivable", tz=tz)
                 .order_by(F("due_at").asc(nulls_last=True), "id"))
    rows = list(owed_then[:MAX_LINES + 1])
    truncated = len(rows) > MAX_LINES
    rows = rows[:MAX_LINES]
    ways = ways_to_pay(rows)
    buckets = report.buckets
    for inv in rows:
        due = _local(inv.due_at, tz)
        days = max(0, (as_of - due).days) if due else 0
        bucket = next((labels[i] for i, b in enumerate(buckets)
                       if (b.key == aging.CURRENT and days == 0) or (b.lo and days >= b.lo and (b.hi is None or days <= b.hi))),
                      labels[0])
        section = sections.setdefault(inv.currency, Section(inv.currency))
        section.lines.append(OpenLine(number=inv.number or inv.external_id, provider=inv.get_provider_display(),
                                      issued=_local(inv.issued_at, tz), due=due, days_overdue=days, bucket=bucket,
                                      outstanding=inv.aging_outstanding or Decimal(0), pay=ways.get(inv.pk, ())))

    for payment in customer_payments(customer=customer, start=start, end=end, tz=tz):
        section = sections.setdefault(payment[0], Section(payment[0]))
        section.payments.append(payment[1])
        section.paid += payment[1].amount

    contacts = list(CustomerIdentity.objects.filter(customer=customer, kind__in=("email", "phone"))
                    .order_by("kind", "value").values_list("kind", "shown"))
    return Statement(customer=customer, merchant_name=customer.merchant.name, as_of=as_of, start=start, end=end,
                     tz=tz, contacts=contacts, sections=[sections[c] for c in sorted(sections)], truncated=truncated)


def customer_payments(*, customer: Customer, start: dt.date, end: dt.date, tz) -> list[tuple[str, PaymentLine]]:
    """(currency, payment) received in [start, end]: each recorded drop of an invoice's outstanding
    (a sync, a notification), and the invoices first seen already paid in the period."""
    lo = aging.day_start(start, tz)
    hi = aging.day_start(end + dt.timedelta(days=1), tz)
    out: list[tuple[str, PaymentLine]] = []
    drops = (InvoiceEvent.objects.filter(invoice__customer=customer, seen_at__gte=lo, seen_at__lt=hi,
                                         outstanding_before__gt=F("outstanding_after"))
             .values_list("invoice__currency", "invoice__number", "invoice__external_id", "invoice__provider",
                          "paid_at_after", "seen_at", "outstanding_before", "outstanding_after", "invoice_id")
             .order_by("seen_at", "id"))
    with_event = set()
    for currency, number, external_id, provider, paid_at, seen_at, before, after, invoice_id in drops:
        with_event.add(invoice_id)
        out.append((currency, PaymentLine(day=_local(paid_at or seen_at, tz), number=number or external_id,
                                          provider=PROVIDERS.get(provider, provider), amount=before - after)))
    first_seen_paid = (Invoice.objects.filter(customer=customer, paid_at__gte=lo, paid_at__lt=hi,
                                              paid_amount__gt=0)
                       .exclude(events__outstanding_before__gt=F("events__outstanding_after"))
                       .exclude(pk__in=with_event)
                       .values_list("currency", "number", "external_id", "provider", "paid_at", "paid_amount"))
    for currency, number, external_id, provider, paid_at, amount in first_seen_paid:
        out.append((currency, PaymentLine(day=_local(paid_at, tz), number=number or external_id,
                                          provider=PROVIDERS.get(provider, provider),
                                          amount=amount)))
    out.sort(key=lambda p: (p[1].day, p[1].number))
    return out
