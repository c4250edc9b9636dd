"""Benchmark of the customer pages at scale (issue 16): server time vs the bare SQL each page ran.

    bash scripts/with-services.sh .venv/bin/python bench/customers.py [ROWS] [--runs N]

Seeds ROWS invoices (default 1,000,000; bench/seed.py gives each a customer, one per merchant and
pool entry, with the summary the write path keeps), then gives one customer 5,000 invoices and
another 1,000 open ones (moved from others, summaries refreshed). Through Django's test client
with a signed-in member (DEBUG off) it measures the median server time of: the customer list
(first page, a deep page by keyset, sorted by oldest overdue, filtered by currency and sorted by
outstanding, a search), the page of the customer with 5,000 invoices, and the statement PDF of
the one with 1,000 open invoices; next to each, the bare SQL that request ran.

Targets (issue 16): `/customers/` any page <= 150 ms and <= 50 ms above its bare SQL; a customer
page with 5,000 invoices <= 200 ms; the statement PDF of 1,000 open invoices <= 3 s. Aging by
customer (<= 300 ms today and 90 days ago) is measured by bench/dashboard_aging.py.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")

from bench.seed import seeded_database, setup_django, time_pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from arbook.models import Customer, Invoice, Merchant
    from arbook.services.customers import customers_refresh
    from arbook.status import RECEIVABLE

    total = seeded_database(args.rows)
    merchant = Merchant.objects.order_by("id").first()
    user, _ = get_user_model().objects.get_or_create(username="bench-collector")
    for m in Merchant.objects.all():
        m.members.add(user)
    client = Client()
    client.force_login(user)

    def give(customer: Customer, queryset, n: int) -> None:
        """Move n invoices of the merchant to `customer` (once: the bench database is reused)."""
        have = Invoice.objects.filter(customer=customer).count()
        if have >= n:
            return
        ids = list(queryset.exclude(customer=customer).values_list("id", flat=True)[: n - have])
        before = set(Invoice.objects.filter(pk__in=ids).values_list("customer_id", flat=True))
        Invoice.objects.filter(pk__in=ids).update(customer=customer)
        for j in range(0, len(before), 2_000):
            customers_refresh(customer_ids=sorted(before)[j:j + 2_000])
        customers_refresh(customer_ids=[customer.pk])

    mine = Customer.objects.filter(merchant=merchant)
    big, statement_customer = mine.order_by("id")[0], mine.order_by("id")[1]
    give(big, Invoice.objects.filter(merchant=merchant), 5_000)
    give(statement_customer, Invoice.objects.filter(merchant=merchant, status__in=RECEIVABLE, outstanding__gt=0),
         1_000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) arbook_invoice")
        cursor.execute("VACUUM (ANALYZE) arbook_customer")
    customers = Customer.objects.count()

    list_url = reverse("customer_list")
    def next_cursor(params: dict) -> str | None:
        """The page's "Next" cursor, read from its links (DEBUG off: no template context)."""
        found = re.search(r'[?&;]after=([A-Za-z0-9_-]+)', client.get(list_url, params).content.decode())
        return found.group(1) if found else None

    cursor = next_cursor({})
    for _ in range(19):  # walk 20 pages forward by keyset: a "deep" page
        cursor = next_cursor({"after": cursor}) or cursor
    cases = [
        (list_url, {}, "customers, first page"),
        (list_url, {"after": cursor} if cursor else {}, "customers, page 21 (keyset)"),
        (list_url, {"last": "1"}, "customers, last page"),
        (list_url, {"sort": "name"}, "customers, by name"),
        (list_url, {"overdue": "1"}, "customers, overdue only"),
        (list_url, {"currency": "IDR", "sort": "-outstanding"}, "customers, IDR, most owed first"),
        (list_url, {"q": "sentosa"}, "customers, search"),
        (list_url, {"sort": "-invoice_count"}, "customers, most invoices first"),
        (reverse("customer_detail", args=[big.pk]), {}, "customer with 5,000 invoices"),
        (reverse("customer_statement", args=[statement_customer.pk]), {"format": "pdf"},
         "statement PDF, 1,000 open invoices"),
    ]
    print(f"\ncustomer pages, {total:,} invoices, {customers:,} customers, median of {args.runs} runs (ms)")
    time_pages(client, cases, args.runs, width=38)
    print("targets: list <= 150 ms and <= 50 ms above SQL; customer page <= 200 ms; statement PDF <= 3,000 ms")


if __name__ == "__main__":
    main()
