"""Benchmark of the aging report and the overview at scale (issue 5): server time vs bare SQL.

    bash scripts/with-services.sh .venv/bin/python bench/dashboard_aging.py [ROWS] [--runs N]

Seeds ROWS invoices (default 1,000,000; one InvoiceEvent per paid invoice, so as-of aging has
history to read) into the throwaway PostgreSQL with COPY (bench/seed.py, shared with
bench/dashboard_list.py). Then, through Django's test client signed in as a *member* of every
seeded merchant (so the merchant scoping subquery is part of every query, as for real users;
DEBUG off), it measures the median server time of each page and, next to it, the median time of
the very SQL statements that page ran (captured during one request, re-executed in the same
process), plus the query count.

Target (issue 5): the aging report <= 300 ms, as of today and as of 90 days ago; issue 19: the
same at 10M, and the overview. On PostgreSQL the report reads the aging rollup when its filters
allow; the "scanned" lines tick every status, which it cannot apply, so they show the same report
read from the invoices in the same run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")  # no query log, no debug templates: production-like timings

from bench.seed import seeded_database, setup_django, time_pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each aging query")
    args = parser.parse_args()

    setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from arbook.models import Invoice, InvoiceEvent, Merchant

    total = seeded_database(args.rows)
    user, _ = get_user_model().objects.get_or_create(username="bench-accountant")
    for m in Merchant.objects.all():
        m.members.add(user)
    client = Client()
    client.force_login(user)
    today = timezone.localdate()
    past = (today - dt.timedelta(days=90)).isoformat()
    cutoff = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=89), dt.time.min))
    later_events = InvoiceEvent.objects.filter(seen_at__gte=cutoff).count()

    # Every state ticked: the same invoices, but a filter the aging rollup cannot apply, so these
    # pages scan the invoices as they did before it (the baseline beside the rollup's figures).
    scan = {"status": [s for s, _label in Invoice._meta.get_field("status").choices]}
    cases = [
        ("/aging/", {}, "aging, as of today (due basis)"),
        ("/aging/", scan, "  the same, scanned (no rollup)"),
        ("/aging/", {"as_of": past}, "aging, as of 90 days ago"),
        ("/aging/", {"as_of": past, **scan}, "  the same, scanned (no rollup)"),
        ("/aging/", {"basis": "issued"}, "aging, as of today, issue basis"),
        ("/aging/", {"as_of": past, "basis": "issued"}, "aging, 90 days ago, issue basis"),
        ("/aging/", {"currency": "DKK"}, "aging, one currency (DKK)"),
        ("/aging/", {"group": "provider"}, "aging by gateway"),
        ("/aging/", {"group": "customer"}, "aging by customer (top 50)"),
        ("/aging/", {"group": "customer", "as_of": past}, "aging by customer, 90 days ago"),
        ("/", {}, "overview"),
    ]
    print(f"\naging and overview, {total:,} invoices ({later_events:,} events in the last 90 days), "
          f"median of {args.runs} runs (ms)")
    time_pages(client, cases, args.runs, explain=args.explain)
    print("target: aging <= 300 ms")


if __name__ == "__main__":
    main()
