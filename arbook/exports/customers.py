"""The customer list's export: one row per customer and currency it owes in (one row, without a
currency, for a customer that owes nothing), in the list's order, dates in the merchant's zone.

Balances are read per chunk of customers (one query per `EXPORT_CHUNK`), so a list of 100,000
customers streams in a few dozen queries and one chunk of memory.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from arbook.dbrouting import report_db
from arbook.models import CustomerBalance
from arbook.selectors.customer_pages import balances_of, provider_labels
from arbook.selectors.paginator import Sort, ordered
from arbook.templatetags.money import days_overdue, local_date

EXPORT_CHUNK = 2000
HEADER = ["Merchant", "Customer", "Currency", "Outstanding", "Open invoices in currency", "Oldest open due",
          "Days overdue", "Last payment", "Gateways", "Invoices", "Open invoices", "arbook id"]


def customer_rows(queryset: QuerySet, *, sort: Sort, now: datetime | None = None) -> Iterator[list]:
    """Every row of the export, lazily: `queryset` is the list's (customers with their merchant, or
    sorted by outstanding the chosen currency's balances with their customer), read in `sort`."""
    now = now or timezone.now()

    def chunks():
        for qs in ordered(queryset, sort):
            rows = (r.customer if isinstance(r, CustomerBalance) else r for r in qs.iterator(chunk_size=EXPORT_CHUNK))
            while chunk := list(islice(rows, EXPORT_CHUNK)):
                yield chunk

    def lines():
        for chunk in chunks():
            balances = balances_of([c.pk for c in chunk])
            for c in chunk:
                tz = c.merchant.timezone
                common = [local_date(c.oldest_open_due, tz),
                          days_overdue(status="open", due_at=c.oldest_open_due, tz=tz, as_of=now),
                          local_date(c.last_paid_at, tz),
                          provider_labels(c.providers),
                          c.invoice_count, c.open_count, c.pk]
                for b in balances.get(c.pk) or [None]:
                    yield [c.merchant.name, c.name, b.currency if b else None, b.outstanding if b else None,
                           b.open_count if b else None, *common]

    if connection.vendor == "postgresql":  # a streaming server-side cursor needs a transaction there
        with transaction.atomic(using=report_db()):
            yield from lines()
    else:
        yield from lines()
