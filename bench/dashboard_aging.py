"""Benchmark of the aging report and the overview at scale (issue 5): server time vs bare SQL.

    bash scripts/with-services.sh .venv/bin/python bench/dashboard_aging.py [ROWS] [--runs N]

Seeds ROWS invoices (default 1,000,000; one InvoiceEvent per paid invoice, so as-of aging has
history to read) into the throwaway PostgreSQL with COPY (bench/seed.py, shared with
bench/dashboard_list.py). Then, through Django's test client signed in as a *member* of every
seeded merchant (so the merchant scoping subquery is part of every query, as for real users;
DEBUG off), it measures the median server time of each page and, next to it, the median time of
the very SQL statements that page ran (captured during one request, re-executed in the same
process), plus the query count.

Target (issue 5): the aging report <= 300 ms, as of today and as of 90 days ago.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")  # no query log, no debug templates: production-like timings

from bench.seed import median_ms, seeded_database, setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each aging query")
    args = parser.parse_args()

    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from arbook.models import InvoiceEvent, Merchant

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

    cases = [
        ("/aging/", {}, "aging, as of today (due basis)"),
        ("/aging/", {"as_of": past}, "aging, as of 90 days ago"),
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
    print(f"{'page':36} {'server':>8} {'bare SQL':>9} {'above':>7} {'queries':>8}")
    for url, params, name in cases:
        def request(url=url, params=params):
            response = client.get(url, params)
            assert response.status_code == 200, (name, response.status_code)
            return response

        with CaptureQueriesContext(connection) as captured:
            request()
        sqls = [q["sql"] for q in captured.captured_queries]
        server = median_ms(request, args.runs)

        def bare(sqls=sqls):
            with connection.cursor() as cursor:
                for sql in sqls:  # including BEGIN / SET LOCAL / COMMIT of `reporting_query`
                    cursor.execute(sql)
                    if cursor.description is not None:
                        cursor.fetchall()

        sql_ms = median_ms(bare, args.runs)
        print(f"{name[:36]:36} {server:8.1f} {sql_ms:9.1f} {server - sql_ms:7.1f} {len(sqls):8d}", flush=True)
        if args.explain:
            slowest = max((q for q in sqls if q.lstrip().upper().startswith("SELECT")), key=len)
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest)
                print("\n".join(r[0] for r in cursor.fetchall()))
    print("target: aging <= 300 ms")


if __name__ == "__main__":
    main()
