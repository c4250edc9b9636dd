"""First sync bound by the gateway, not by waiting on it: a full read in slices read at once.

    bash scripts/with-services.sh .venv/bin/python bench/sync_slices.py [--size 100000] [--latency 0.2]
        [--provider xendit|faspay|farpay] [--option details=never ...]

The sandbox (its own process) answers every call after `--latency` seconds, as a real gateway
does (100-500 ms a page). In one run it mirrors the same population twice into PostgreSQL, each
time as a new credential:
- sliced: the default, `read_concurrency` (8) slices read at once (Xendit: creation-date ranges;
  Faspay: invoice-date windows, each walking its status codes; FarPay: due-date windows, each
  walking its statuses and its N/A difference, the details read by the slice's thread);
- sequential: `read_concurrency=1`, page after page (what the sync did before).
It prints both times, the calls each made, whether the sliced mirror equals the sequential one
row for row (status, amounts, dates, content hash), and the peak RSS around each run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbook.settings.development")
os.environ["DEBUG"] = "false"

from sync import ensure_database, peak_rss_mb, start_sandbox  # noqa: E402  (bench/sync.py)


def control(base_url: str, path: str, payload: dict | None = None) -> dict:
    origin = base_url.rsplit("/", 1)[0]
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{origin}/_sandbox/{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the sandbox waits before each answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-sequential", action="store_true", help="skip the page-after-page run")
    parser.add_argument("--provider", default="xendit", choices=["xendit", "faspay", "farpay"])
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a credential option for both runs (e.g. details=never for FarPay)")
    args = parser.parse_args()
    provider = args.provider
    extra = dict(item.split("=", 1) for item in args.option)

    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from arbook.models import GatewayCredential, Invoice, Merchant, SyncRun
    from arbook.services.sync import invoices_sync
    from gateways.sandbox import CREDENTIALS, OPTIONS

    sandbox, base_url = start_sandbox(provider, args.size)
    results = {}
    try:
        merchant = Merchant.objects.create(name="Bench", slug="bench")
        plans = [("sliced", args.concurrency)] + ([] if args.no_sequential else [("sequential", 1)])
        for name, concurrency in plans:
            credential = GatewayCredential.objects.create(
                merchant=merchant, provider=provider, label=name, base_url=base_url,
                secrets=dict(CREDENTIALS[provider]),
                options={**OPTIONS.get(provider, {}), **extra, "read_concurrency": concurrency})
            control(base_url, "faults", {"provider": provider, "kind": "latency", "seconds": args.latency,
                                         "times": 10_000_000})
            calls_before = control(base_url, "stats").get(provider, 0)
            rss_before = peak_rss_mb()
            started = time.perf_counter()
            run = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
            seconds = time.perf_counter() - started
            assert run.status == SyncRun.Status.SUCCEEDED, run.error
            urllib.request.urlopen(urllib.request.Request(base_url.rsplit("/", 1)[0] + "/_sandbox/faults",
                                                          method="DELETE"), timeout=10).close()
            results[name] = {"credential": credential, "run": run, "seconds": seconds,
                             "calls": control(base_url, "stats").get(provider, 0) - calls_before,
                             "rss": (rss_before, peak_rss_mb())}
    finally:
        sandbox.terminate()

    sliced = results["sliced"]
    print(f"{provider} first sync of {sliced['run'].fetched} invoices, {args.latency * 1000:.0f} ms per call"
          + (f", options {extra}" if extra else ""))
    for name, r in results.items():
        run = r["run"]
        print(f"{name:>10}: {r['seconds']:7.1f} s  {run.fetched / r['seconds']:7.0f} invoices/s  "
              f"{r['calls']} calls  pages={run.pages} created={run.created}  "
              f"peak RSS {r['rss'][0]:.0f} -> {r['rss'][1]:.0f} MB")
    if "sequential" in results:
        seq = results["sequential"]
        print(f"sliced / sequential: {seq['seconds'] / sliced['seconds']:.1f}x faster")
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT count(*) FROM (
                     (SELECT external_id, status, outstanding, amount, paid_amount, issued_at, due_at, paid_at, content_hash
                        FROM arbook_invoice WHERE credential_id = %s
                      EXCEPT SELECT external_id, status, outstanding, amount, paid_amount, issued_at, due_at, paid_at, content_hash
                        FROM arbook_invoice WHERE credential_id = %s)
                     UNION ALL
                     (SELECT external_id, status, outstanding, amount, paid_amount, issued_at, due_at, paid_at, content_hash
                        FROM arbook_invoice WHERE credential_id = %s
                      EXCEPT SELECT external_id, status, outstanding, amount, paid_amount, issued_at, due_at, paid_at, content_hash
                        FROM arbook_invoice WHERE credential_id = %s)) d""",
                [sliced["credential"].pk, seq["credential"].pk, seq["credential"].pk, sliced["credential"].pk])
            differing = cursor.fetchone()[0]
        counts = [Invoice.objects.filter(credential=r["credential"]).count() for r in (sliced, seq)]
        print(f"mirror: sliced {counts[0]} rows, sequential {counts[1]} rows, {differing} rows differ "
              f"({'exact' if differing == 0 and counts[0] == counts[1] else 'NOT EXACT'})")


if __name__ == "__main__":
    main()
