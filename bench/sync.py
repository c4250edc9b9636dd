"""Sync benchmark: mirror a sandbox population into PostgreSQL and measure it.

    bash scripts/with-services.sh .venv/bin/python bench/sync.py [--size 100000] [--provider xendit]

Prints, for one provider's population of `--size` invoices:
- invoices/second of the first (full) sync, HTTP and parsing included;
- invoices/second of a no-change full resync;
- the SQL statements per page;
- the peak RSS of this process during the syncs (run with --size 1000000 to compare: the
  sync holds one page at a time, so it should stay flat);
- measured in the same run, the rate of a plain `bulk_create(update_conflicts=True)` of the
  same rows (DB write only, rows already in memory), so the sync's overhead shows as a ratio;
- what the aging rollup's triggers, the overdue-list index and the customer link (issue 16:
  the identity probe, the new customers and identities, the summaries at the end of the run)
  cost the first sync: the same first sync of a new merchant's account with each switched off
  and on, in the order off, on, on, off (`--no-overheads` skips it).

The sandbox runs in its own process, as a real provider would, so it does not compete with the
sync for this interpreter's GIL.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbook.settings.development")
os.environ["DEBUG"] = "false"  # DEBUG keeps every SQL string in memory: not what production does


def ensure_database() -> None:
    """with-services gives a server; create the benchmark's own database on it."""
    import environ
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Run under scripts/with-services.sh (or set DATABASE_URL to PostgreSQL).")
    config = environ.Env.db_url_config(url)
    bench_db = "arbook_bench"
    with psycopg.connect(host=config["HOST"], port=config["PORT"], user=config["USER"],
                         password=config.get("PASSWORD") or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {bench_db}")
        conn.execute(f"CREATE DATABASE {bench_db}")
    os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + bench_db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(provider: str, size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateways.sandbox", "--port", str(port), "--size", str(size),
                                "--providers", provider], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/{provider}"


def bench_account(args, base_url: str):
    """(merchant, credential) of the benchmark's account on the sandbox, with `--option`s."""
    from arbook.models import GatewayCredential, Merchant
    from gateways.sandbox import CREDENTIALS, OPTIONS

    merchant = Merchant.objects.create(name="Bench", slug="bench")
    options = dict(OPTIONS.get(args.provider, {}))
    if args.provider == "farpay":
        options["details"] = "never"
    options.update(item.split("=", 1) for item in args.option)
    credential = GatewayCredential.objects.create(merchant=merchant, provider=args.provider, base_url=base_url,
                                                  secrets=dict(CREDENTIALS[args.provider]), options=options)
    return merchant, credential


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--provider", default="xendit", choices=["xendit", "faspay", "munio", "farpay"])
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a credential option (e.g. read_concurrency=1 to read page after page)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the plain-upsert baseline (it holds every row in memory: slow at 1M)")
    parser.add_argument("--part", action="append", choices=list(PARTS), metavar="PART",
                        help=f"measure only this part's cost (repeatable; default all: {', '.join(PARTS)})")
    parser.add_argument("--no-overheads", action="store_true",
                        help="skip the first syncs with the rollup triggers, the overdue-list index and the customer "
                             "link off and on")
    args = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    from arbook.models import SyncRun
    from arbook.services.sync import invoices_sync

    sandbox, base_url = start_sandbox(args.provider, args.size)
    try:
        merchant, credential = bench_account(args, base_url)
        rss_before = peak_rss_mb()
        from arbook.services.credentials import credential_client

        started = time.perf_counter()
        read_only = sum(len(page.invoices) for page in credential_client(credential=credential).iter_pages())
        read_s = time.perf_counter() - started

        statements = 0

        def count(execute, sql, params, many, context):
            nonlocal statements
            statements += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            started = time.perf_counter()
            first = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
            first_s = time.perf_counter() - started
        assert first.status == SyncRun.Status.SUCCEEDED, first.error
        per_page = statements / first.pages

        # A resync runs minutes later in production, after autovacuum has visited the grown
        # table; do that visit now rather than let it compete with the measured resync.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE arbook_invoice")
        started = time.perf_counter()
        again = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
        again_s = time.perf_counter() - started
        assert again.status == SyncRun.Status.SUCCEEDED and again.unchanged == again.fetched, again.error
        sync_peak = peak_rss_mb()

        overheads = None if args.no_overheads else write_path_overheads(merchant, credential,
                                                                        parts=args.part or list(PARTS))
        if args.no_baseline:
            objects, plain_s = [], 0.0
        else:
            objects, plain_s = baseline(credential, merchant, args.provider)
    finally:
        sandbox.terminate()
    report(args, first, first_s, again, again_s, read_only, read_s, per_page, rss_before, sync_peak, objects, plain_s)
    for part, (off, on) in (overheads or {}).items():
        print(f"first sync, {part} off / on (runs off, on, on, off): {' '.join(f'{s:.2f}' for s in off)} s / "
              f"{' '.join(f'{s:.2f}' for s in on)} s  (it costs "
              f"{(statistics.mean(on) / statistics.mean(off) - 1) * 100:+.1f}%, means)")


ROLLUP_TRIGGERS = ("arbook_aging_rollup_insert", "arbook_aging_rollup_update", "arbook_aging_rollup_delete")


def _rollup_triggers(state: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for name in ROLLUP_TRIGGERS:
            cursor.execute(f"ALTER TABLE arbook_invoice {state} TRIGGER {name}")


def _receivable_index(state: str) -> None:
    """Drop (DISABLE) or re-create (ENABLE) migration 0024's overdue-list index."""
    from django.db import connection

    from arbook.models import Invoice

    index = next(i for i in Invoice._meta.indexes if i.name == "inv_receivable_issued")
    with connection.schema_editor() as editor:
        editor.execute(f"DROP INDEX IF EXISTS {index.name}")
        if state == "ENABLE":
            editor.add_index(Invoice, index)


_LINK = {}


def _customer_link(state: str) -> None:
    """Take the customers out of the write path (DISABLE: invoices written without a customer, no
    summary refreshed at the end of the run) or put them back. A measurement only: what the link
    (issue 16) costs a first sync, the rest of the write path unchanged."""
    from arbook.services import invoice_write, sync

    if not _LINK:
        _LINK.update(link=invoice_write._link_customers, settle=sync.customers_settle)
    if state == "DISABLE":
        invoice_write._link_customers = lambda credential, written: [None] * len(written)
        sync.customers_settle = lambda **kwargs: None
    else:
        invoice_write._link_customers, sync.customers_settle = _LINK["link"], _LINK["settle"]


#: The write path's parts whose cost the first sync measures with each off and on.
PARTS = {"rollup triggers": _rollup_triggers, "overdue-list index": _receivable_index,
         "customer link": _customer_link}


def write_path_overheads(merchant, template, rounds: int = 2,
                         parts: list[str] | None = None) -> dict[str, tuple[list[float], list[float]]] | None:
    """Per part of `PARTS`: the first sync of a fresh account with it off and on, `rounds` times
    in the order off, on, on, off (a later run may be slower, its tables larger: this order gives
    both sides the same mean position), into the same table (the earlier accounts' invoices
    removed, the rollups recounted and the table vacuumed before each). Each account is a new
    merchant's, so its customers are all new, as in a real first sync (in one merchant a later
    account would find the earlier ones' customers and create almost none): {part: ([off s], [on s])}."""
    from django.db import connection

    from arbook.models import GatewayCredential, Invoice, Merchant, SyncRun
    from arbook.services.sync import invoices_sync

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regproc('arbook_aging_rollup_rebuild') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return None

    out = {}
    for part in parts or list(PARTS):
        switch = PARTS[part]
        seconds: dict[str, list[float]] = {"DISABLE": [], "ENABLE": []}
        for i, state in enumerate(("DISABLE", "ENABLE", "ENABLE", "DISABLE") * (rounds // 2)):
            _rollup_triggers("DISABLE")
            Invoice.objects.exclude(credential=template).delete()
            Merchant.objects.exclude(pk=merchant.pk).delete()  # the earlier runs' customers and identities
            _rollup_triggers("ENABLE")
            with connection.cursor() as cursor:
                cursor.execute("SELECT arbook_aging_rollup_rebuild(NULL), arbook_day_rollup_rebuild(NULL)")
                for table in ("arbook_invoice", "arbook_customer", "arbook_customeridentity", "arbook_customerbalance"):
                    cursor.execute(f"VACUUM ANALYZE {table}")
            fresh = Merchant.objects.create(name=f"{merchant.name} {part} {i}", slug=f"{merchant.slug}-{len(out)}-{i}",
                                            country=merchant.country)
            credential = GatewayCredential.objects.create(
                merchant=fresh, provider=template.provider, base_url=template.base_url,
                label=f"{part} {i}", secrets=dict(template.secrets), options=dict(template.options))
            switch(state)
            try:
                started = time.perf_counter()
                run = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
                seconds[state].append(time.perf_counter() - started)
            finally:
                switch("ENABLE")
            assert run.status == SyncRun.Status.SUCCEEDED, run.error
        out[part] = (seconds["DISABLE"], seconds["ENABLE"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT arbook_aging_rollup_rebuild(NULL), arbook_day_rollup_rebuild(NULL)")
    return out


def baseline(credential, merchant, provider):
    """The same rows, already in memory, through the ORM's plain upsert (DB write time only)."""
    from django.utils import timezone

    from arbook.models import Invoice
    from arbook.services.credentials import credential_client
    from arbook.services.invoice_write import INVOICE_FIELDS

    rows = [inv for page in credential_client(credential=credential).iter_pages() for inv in page.invoices]
    Invoice.objects.all().delete()
    now = timezone.now()
    objects = [Invoice(merchant=merchant, credential=credential, provider=provider,
                       external_id=r.external_id, first_seen_at=now, last_synced_at=now,
                       **{f: getattr(r, f) for f in INVOICE_FIELDS}) for r in rows]
    started = time.perf_counter()
    Invoice.objects.bulk_create(objects, batch_size=1000, update_conflicts=True,
                                unique_fields=["credential", "external_id"],
                                update_fields=[*INVOICE_FIELDS, "last_synced_at"])
    plain_s = time.perf_counter() - started
    return objects, plain_s


def report(args, first, first_s, again, again_s, read_only, read_s, per_page, rss_before, sync_peak, objects,
           plain_s) -> None:
    n = first.fetched
    first_rate, again_rate = n / first_s, n / again_s
    plain_rate = len(objects) / plain_s if plain_s else 0.0
    print(f"provider={args.provider} invoices={n} pages={first.pages}")
    print(f"read only:            {read_s:7.2f} s  {read_only / read_s:9.0f} invoices/s  (HTTP + parsing, no writes)")
    print(f"first sync:           {first_s:7.2f} s  {first_rate:9.0f} invoices/s  (HTTP + parsing + writes)")
    print(f"no-change resync:     {again_s:7.2f} s  {again_rate:9.0f} invoices/s  ({again_rate / first_rate:.1f}x the first)")
    if plain_rate:
        print(f"plain ORM upsert:     {plain_s:7.2f} s  {plain_rate:9.0f} rows/s  (bulk_create update_conflicts, "
              "batches of 1000)")
        print(f"first sync / plain upsert: {first_rate / plain_rate:.2f}x")
    print(f"SQL statements per page (first sync): {per_page:.1f}")
    print(f"peak RSS: {rss_before:.0f} MB before the syncs, {sync_peak:.0f} MB after them")


if __name__ == "__main__":
    main()
