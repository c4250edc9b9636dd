"""Benchmark of the invoice list at scale (issue 5): server time vs the bare SQL it needs.

    bash scripts/with-services.sh .venv/bin/python bench/dashboard_list.py [ROWS] [--runs N]

Seeds ROWS invoices (default 1,000,000) into the throwaway PostgreSQL with COPY (bench/seed.py),
then, through Django's test client with a signed-in superuser (DEBUG off), measures the median
server time of each list page and, next to it, the median time of the very SQL statements that
page ran (captured during one request, re-executed in the same process). Then a full CSV export
of every row: wall time, rows, bytes and the peak RSS while streaming.

Targets (issue 5): every list page <= 150 ms, of which <= 50 ms above its bare SQL; the export of
1M rows <= 15 s with flat memory.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")  # no query log, no debug templates: production-like timings

from bench.seed import ensure_superuser, median_ms, seeded_database, setup_django  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args()

    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from arbook.models import GatewayCredential, Invoice, Merchant

    total = seeded_database(args.rows)
    client = Client()
    admin = ensure_superuser()
    client.force_login(admin)
    dkk = Merchant.objects.get(slug="nordisk-rengoring")
    cred = GatewayCredential.objects.filter(provider="xendit").order_by("id").first()
    sample = Invoice.objects.order_by("id").values("customer_name", "number").first()
    name_part = " ".join(sample["customer_name"].split()[1:3])  # e.g. "Sinar Jaya": a common phrase
    rare = sample["customer_name"]  # a full, nearly unique name

    cases = [
        ("first page, unfiltered", {}),
        ("first page, 250 rows", {"size": 250}),
        ("merchant", {"merchant": dkk.pk}),
        ("credential", {"credential": cred.pk}),
        ("provider", {"provider": "munio"}),
        ("status=open", {"status": "open"}),
        ("status=failed,charged_back", {"status": ["failed", "charged_back"]}),
        ("overdue only", {"overdue": "1"}),
        ("due date range (1 month)", {"due_from": "2025-01-01", "due_to": "2025-01-31"}),
        ("issued date range (1 month)", {"issued_from": "2025-01-01", "issued_to": "2025-01-31"}),
        ("paid date range (1 month)", {"paid_from": "2025-01-01", "paid_to": "2025-01-31"}),
        ("outstanding range", {"outstanding_min": "1000000", "outstanding_max": "2000000"}),
        ("currency=DKK", {"currency": "DKK"}),
        ("customer (exact)", {"customer": rare}),
        (f"search q={name_part!r} (common)", {"q": name_part}),
        (f"search q={rare!r} (rare)", {"q": rare}),
        ("search q=invoice number part", {"q": sample["number"][-7:]}),
        ("sorted by due date", {"sort": "due_at"}),
        ("sorted by outstanding desc", {"sort": "-outstanding"}),
        ("last page (the end)", {"last": "1"}),
        ("aging drill-down open 1-30", {"row": "open", "bucket": "1-30", "basis": "due"}),
        ("aging drill-down open 1-30, 90 days ago", {"row": "open", "bucket": "1-30", "basis": "due",
                                                     "as_of": (timezone.localdate() - dt.timedelta(days=90)).isoformat()}),
    ]
    # A page near the end, reached by its "previous" link from the last page.
    from django.http import QueryDict

    from arbook.filters import invoice_list

    last = invoice_list(user=admin, params=QueryDict("last=1")).page()
    cases.append(("page before the last (keyset)", {"before": last.previous_cursor}))

    print(f"\ninvoice list, {total:,} invoices, median of {args.runs} runs (ms); 'page' = the HTML with its rows,")
    print("'totals' = the per-currency totals of the same filters, which the page fetches right after")
    print(f"{'case':40} {'part':6} {'server':>8} {'bare SQL':>9} {'above':>7} {'queries':>8} {'rows':>5}")
    worst = {"page": [0.0, 0.0], "totals": [0.0, 0.0]}
    for name, params in cases:
        for part, extra in (("page", {}), ("totals", {"_totals": "1"})):
            def request(params={**params, **extra}):
                response = client.get("/invoices/", params)
                assert response.status_code == 200, (name, response.status_code)
                return response

            with CaptureQueriesContext(connection) as captured:
                response = request()
            n_rows = response.content.count(b'data-label="Invoice"') if part == "page" else ""
            sqls = [q["sql"] for q in captured.captured_queries]
            server = median_ms(request, args.runs)

            def bare(sqls=sqls):
                with connection.cursor() as cursor:
                    for sql in sqls:
                        cursor.execute(sql)
                        cursor.fetchall()

            sql_ms = median_ms(bare, args.runs)
            worst[part] = [max(worst[part][0], server), max(worst[part][1], server - sql_ms)]
            print(f"{name[:40]:40} {part:6} {server:8.1f} {sql_ms:9.1f} {server - sql_ms:7.1f} {len(sqls):8d} "
                  f"{n_rows:>5}", flush=True)
    for part, (server, above) in worst.items():
        print(f"worst {part}: {server:.1f} ms, {above:.1f} ms above its SQL")
    print("targets: list pages <= 150 ms, <= 50 ms above their bare SQL")

    if args.no_export:
        return
    print("\nfull CSV export (every invoice, default order)")
    before = rss_mb()
    peak = before
    t = time.perf_counter()
    response = client.get("/invoices/", {"_export": "csv"})
    size = lines = 0
    for i, chunk in enumerate(response.streaming_content):
        size += len(chunk)
        lines += chunk.count(b"\n")
        if i % 50 == 0:
            peak = max(peak, rss_mb())
    response.close()
    seconds = time.perf_counter() - t
    peak = max(peak, rss_mb())
    print(f"{lines - 1:,} rows, {size / 2**20:.0f} MiB in {seconds:.1f} s ({(lines - 1) / seconds:,.0f} rows/s); "
          f"RSS {before:.0f} MiB before, peak {peak:.0f} MiB during (+{peak - before:.0f} MiB) (target <= 15 s, flat)")


if __name__ == "__main__":
    main()
