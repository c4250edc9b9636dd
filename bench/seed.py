"""Seed a large, realistic invoice population fast (PostgreSQL COPY), for the benchmarks.

    from bench.seed import setup_django; setup_django()
    from bench.seed import seed_invoices
    summary = seed_invoices(1_000_000)            # 4 merchants, 9 credentials, ~1M invoices

Deterministic for a given `seed`. Rows are written in COPY text format straight into
`arbook_invoice` (ids assigned here, the sequence moved past them), plus one `InvoiceEvent`
per settled invoice (open → paid at its paid date) so that as-of aging has history to read.
On SQLite (no COPY) it falls back to `bulk_create`, which is fine for small n.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

#: (name, slug, time zone, currency, providers)
DEFAULT_MERCHANTS = [
    ("Toko Sejahtera", "toko-sejahtera", "Asia/Jakarta", "IDR", ("faspay", "xendit", "espay")),
    ("Nusantara Logistik", "nusantara-logistik", "Asia/Jakarta", "IDR", ("faspay", "munio")),
    ("Nordisk Rengøring ApS", "nordisk-rengoring", "Europe/Copenhagen", "DKK", ("farpay",)),
    ("Bali Resorts", "bali-resorts", "Asia/Makassar", "IDR", ("xendit", "espay", "munio")),
]

STATUS_WEIGHTS = [
    ("open", 33), ("paid", 40), ("partially_paid", 5), ("processing", 3), ("failed", 3),
    ("charged_back", 1), ("expired", 8), ("cancelled", 4), ("draft", 2), ("unknown", 1),
]
PROVIDER_STATUS = {
    "faspay": {"open": "Belum Dibayar", "paid": "Lunas", "partially_paid": "Dibayar Sebagian", "expired": "Kadaluarsa",
               "cancelled": "Dibatalkan"},
    "xendit": {"open": "PENDING", "paid": "PAID", "expired": "EXPIRED"},
    "munio": {"open": "sent", "paid": "paid", "partially_paid": "partially_paid", "cancelled": "void", "draft": "draft"},
    "farpay": {"open": "Unpaid", "paid": "Paid", "failed": "Failed", "charged_back": "Chargeback", "processing": "Scheduled"},
    "espay": {"open": "0000", "paid": "PAID", "expired": "EXPIRED"},
}
FIRST = ["PT", "CV", "UD", "Toko", "Warung", "Koperasi", "Apotek", "Klinik", "Hotel", "Restoran"]
WORDS = ["Sinar", "Jaya", "Makmur", "Abadi", "Sentosa", "Mandiri", "Berkah", "Cahaya", "Sumber", "Rezeki",
         "Maju", "Bersama", "Indah", "Lestari", "Agung", "Mulia", "Prima", "Karya", "Utama", "Baru",
         "Nordlys", "Havn", "Skov", "Bjerg", "Fjord", "Lund", "Dal", "Strand", "Holm", "Vang"]


def ensure_database() -> None:
    """Create the database DATABASE_URL names when it does not exist (with-services.sh starts an
    empty server; only pytest creates its own test database)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    """Make `arbook` importable and configured when a bench script runs as a plain file."""
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    ensure_database()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbook.settings.development")
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def ensure_superuser(username: str = "bench-admin"):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username, defaults={"is_superuser": True, "is_staff": True})
    return user


def _customers(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    out = []
    for i in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
        email = f"billing{i}@{name.split()[1].lower()}{i % 97}.example"
        out.append((name, email, f"C{i:06d}"))
    return out


def _ts(value: datetime | None) -> str:
    return "\\N" if value is None else value.isoformat()


def _num(value: Decimal | None) -> str:
    return "\\N" if value is None else format(value, "f")


def seed_invoices(n: int = 1_000_000, *, merchants=DEFAULT_MERCHANTS, customers: int = 50_000, seed: int = 7,
                  events: bool = True, now: datetime | None = None, chunk: int = 50_000, verbose: bool = True) -> dict:
    """Insert `n` invoices spread over `merchants` (tuples as in DEFAULT_MERCHANTS).

    Returns {"merchants": [ids], "credentials": [ids], "invoices": n, "events": k, "seconds": t}.
    Issue dates span the last two years; due dates are 14 or 30 days later (2% unknown);
    Faspay rows have no amount (as in its list API); 1% of open rows are credits (negative).
    """
    from django.db import connection, transaction

    from arbook.models import Customer, GatewayCredential, Invoice, InvoiceEvent, Merchant
    from arbook.services.customers import customers_refresh, name_key

    started = time.perf_counter()
    rng = random.Random(seed)
    now = now or datetime.now(dt_timezone.utc).replace(microsecond=0)
    creds = []
    merchant_ids = []
    for name, slug, tz, currency, providers in merchants:
        m, _ = Merchant.objects.get_or_create(slug=slug, defaults={"name": name, "timezone": tz})
        merchant_ids.append(m.pk)
        for provider in providers:
            c = GatewayCredential.objects.filter(merchant=m, provider=provider, label="bench").first()
            if c is None:
                c = GatewayCredential(merchant=m, provider=provider, label="bench", base_url="http://127.0.0.1:9")
                c.secrets = {"username": "bench", "password": "bench"}
                c.save()
            creds.append((c.pk, m.pk, provider, currency))
    pool = _customers(rng, customers)
    # One Customer per (merchant, pool entry) actually billed, with ids assigned here (COPY below).
    start_customer = (Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    merchant_slot = {m: k for k, m in enumerate(merchant_ids)}
    used_customers: dict[int, tuple[int, str]] = {}
    statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
    start_id = (Invoice.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    start_event = (InvoiceEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1

    def rows():
        for k in range(n):
            inv_id = start_id + k
            cred_id, merchant_id, provider, currency = creds[k % len(creds)]
            who = rng.randrange(len(pool))
            name, email, ref = pool[who]
            customer_id = start_customer + merchant_slot[merchant_id] * len(pool) + who
            used_customers[customer_id] = (merchant_id, name)
            status = statuses[rng.randrange(len(statuses))]
            issued = now - timedelta(days=rng.randrange(730), seconds=rng.randrange(86400))
            due = None if rng.random() < 0.02 else issued + timedelta(days=rng.choice((14, 30)))
            if currency == "IDR":
                amount = Decimal(rng.randrange(50, 50_000) * 1000)
            else:
                amount = Decimal(rng.randrange(10_000, 5_000_000)) / 100
            outstanding, paid_amount, paid_at = amount, Decimal(0), None
            if status == "paid":
                paid_at = issued + timedelta(days=rng.randrange(0, 60), seconds=rng.randrange(86400))
                if paid_at > now:
                    paid_at = now - timedelta(hours=1)
                outstanding, paid_amount = Decimal(0), amount
            elif status == "partially_paid":
                paid_amount = (amount / 2).quantize(Decimal("0.01"))
                outstanding = amount - paid_amount
            elif status in ("cancelled", "draft"):
                outstanding = Decimal(0) if status == "cancelled" else amount
            elif status == "open" and rng.random() < 0.01:
                outstanding = -amount / 10
            shown_amount = None if provider == "faspay" else amount
            pstatus = PROVIDER_STATUS[provider].get(status, status.upper())
            raw = json.dumps({"id": f"{provider}-{inv_id}", "status": pstatus, "amount": format(amount, "f")})
            number = f"INV/{issued:%Y%m}/{inv_id:07d}"
            values = {
                "id": inv_id, "merchant_id": merchant_id, "credential_id": cred_id, "provider": provider,
                "external_id": f"{provider}-{inv_id}", "number": number, "customer_name": name,
                "customer_id": customer_id,
                "customer_email": email, "customer_ref": ref, "currency": currency, "amount": _num(shown_amount),
                "outstanding": _num(outstanding), "paid_amount": _num(paid_amount), "status": status,
                "provider_status": pstatus, "issued_at": _ts(issued), "due_at": _ts(due), "paid_at": _ts(paid_at),
                "payment_channel": "VA" if provider == "espay" else "",
                "checkout_url": f"https://pay.example/{provider}/{inv_id}", "raw": raw, "content_hash": "",
                "first_seen_at": _ts(issued), "last_synced_at": _ts(now),
                "last_event_at": _ts(paid_at if events and status == "paid" else None),  # its event below
            }
            yield inv_id, "\t".join(str(values[c]) for c in columns) + "\n", (status, paid_at, amount, outstanding)

    # Only the columns set here; every other column of the (evolving) model is nullable or defaulted.
    known = {f.column for f in Invoice._meta.concrete_fields}
    columns = [c for c in ("id", "merchant_id", "credential_id", "provider", "external_id", "number", "customer_name",
                           "customer_id",
                           "customer_email", "customer_ref", "currency", "amount", "outstanding", "paid_amount",
                           "status", "provider_status", "issued_at", "due_at", "paid_at", "payment_channel",
                           "checkout_url", "raw", "content_hash", "first_seen_at", "last_synced_at", "last_event_at")
               if c in known]
    event_columns = ("id, invoice_id, seen_at, source, sync_run_id, status_before, status_after, outstanding_before, "
                     "outstanding_after, paid_at_before, paid_at_after, note")
    if connection.vendor != "postgresql":
        raise SystemExit("seed_invoices needs PostgreSQL (COPY); run under scripts/with-services.sh")
    n_events = 0
    event_lines: list[str] = []
    # One transaction: the invoices' customer ids are checked (a deferred foreign key) at its end,
    # once the customers they name are copied too.
    with transaction.atomic(), connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # psycopg 3 cursor
        # Secondary indexes (GIN trigram above all) are far cheaper to build once after the COPY
        # than to maintain row by row: drop them, load, and recreate them from their definitions.
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
            "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.tablename = 'arbook_invoice' "
            "AND NOT x.indisprimary AND NOT x.indisunique")
        secondary = cursor.fetchall()
        for name, _ in secondary:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        # Likewise the rollups (PostgreSQL's triggers keep them): recounted once after the load
        # instead of aggregating a transition table of every row the COPY wrote.
        cursor.execute("SELECT to_regproc('arbook_aging_rollup_rebuild') IS NOT NULL")
        rollup = cursor.fetchone()[0]
        if rollup:
            cursor.execute("ALTER TABLE arbook_invoice DISABLE TRIGGER arbook_aging_rollup_insert")
        with raw_cursor.copy(f"COPY arbook_invoice ({', '.join(columns)}) FROM STDIN") as copy:
            block: list[str] = []
            for i, (inv_id, line, (status, paid_at, amount, outstanding)) in enumerate(rows(), 1):
                block.append(line)
                if events and status == "paid":
                    event_lines.append(
                        f"{start_event + n_events}\t{inv_id}\t{_ts(paid_at)}\tsync\t\\N\topen\tpaid\t{_num(amount)}\t0\t\\N\t"
                        f"{_ts(paid_at)}\t\n")
                    n_events += 1
                if len(block) >= chunk:
                    copy.write("".join(block))
                    block.clear()
                    if verbose:
                        print(f"  seeded {i:,} invoices ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            if block:
                copy.write("".join(block))
        if used_customers and "customer_id" in columns:
            with raw_cursor.copy("COPY arbook_customer (id, merchant_id, name, name_locked, name_key, created_at, "
                                 "invoice_count, "
                                 "open_count, providers) FROM STDIN") as copy:
                stamp = _ts(now)
                copy.write("".join(f"{cid}\t{mid}\t{name}\tf\t{name_key(name)}\t{stamp}\t0\t0\t\n"
                                   for cid, (mid, name) in sorted(used_customers.items())))
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # check them now: indexes are built next
        if event_lines:
            with raw_cursor.copy(f"COPY arbook_invoiceevent ({event_columns}) FROM STDIN") as copy:
                for j in range(0, len(event_lines), chunk):
                    copy.write("".join(event_lines[j:j + chunk]))
        index_started = time.perf_counter()
        for _, definition in secondary:
            cursor.execute(definition)
        if verbose:
            print(f"  rebuilt {len(secondary)} indexes in {time.perf_counter() - index_started:.0f} s", file=sys.stderr)
        if rollup:
            cursor.execute("ALTER TABLE arbook_invoice ENABLE TRIGGER arbook_aging_rollup_insert")
            rollup_started = time.perf_counter()
            # Every merchant: the rows already there and these (a top-up recounts them all, once).
            cursor.execute("SELECT arbook_aging_rollup_rebuild(NULL), arbook_day_rollup_rebuild(NULL)")
            if verbose:
                print(f"  aging and day rollups recounted in {time.perf_counter() - rollup_started:.0f} s", file=sys.stderr)
        cursor.execute("SELECT setval(pg_get_serial_sequence('arbook_invoice', 'id'), (SELECT max(id) FROM arbook_invoice))")
        if n_events:
            cursor.execute("SELECT setval(pg_get_serial_sequence('arbook_invoiceevent', 'id'), "
                           "(SELECT max(id) FROM arbook_invoiceevent))")
        if used_customers and "customer_id" in columns:
            cursor.execute("SELECT setval(pg_get_serial_sequence('arbook_customer', 'id'), "
                           "(SELECT max(id) FROM arbook_customer))")
    with connection.cursor() as cursor:
        # VACUUM sets the visibility map too, so index-only scans work as they would in production.
        cursor.execute("VACUUM (ANALYZE) arbook_invoice")
        cursor.execute("VACUUM (ANALYZE) arbook_invoiceevent")
    if used_customers and "customer_id" in columns:
        # The summary the customer list reads, as the write path keeps it (in batches, as it does).
        ids = sorted(used_customers)
        for j in range(0, len(ids), 2_000):
            customers_refresh(customer_ids=ids[j:j + 2_000])
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) arbook_customer")
            cursor.execute("VACUUM (ANALYZE) arbook_customerbalance")
        if verbose:
            print(f"  {len(ids):,} customers summarized ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    seconds = time.perf_counter() - started
    if verbose:
        print(f"seeded {n:,} invoices and {n_events:,} events in {seconds:.1f} s ({n / seconds:,.0f} rows/s)",
              file=sys.stderr)
    return {"merchants": merchant_ids, "credentials": [c[0] for c in creds], "invoices": n, "events": n_events,
            "seconds": seconds}


if __name__ == "__main__":
    setup_django()
    migrate()
    seed_invoices(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)


def time_pages(client, cases, runs: int, *, width: int = 36, explain: bool = False) -> None:
    """Print, per (url, params, name) case, the median server time of the request next to the
    median time of the very SQL statements it ran (captured once, re-executed bare)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    print(f"{'page':{width}} {'server':>8} {'bare SQL':>9} {'above':>7} {'queries':>8}")
    for url, params, name in cases:
        def request(url=url, params=params, name=name):
            response = client.get(url, params)
            assert response.status_code == 200, (name, response.status_code)
            if response.streaming:
                b"".join(response.streaming_content)
            return response

        with CaptureQueriesContext(connection) as captured:
            request()
        sqls = [q["sql"] for q in captured.captured_queries]
        server = median_ms(request, runs)

        def bare(sqls=sqls):
            with connection.cursor() as cursor:
                for sql in sqls:  # including BEGIN / SET LOCAL / COMMIT of a reporting query
                    cursor.execute(sql)
                    if cursor.description is not None:
                        cursor.fetchall()

        sql_ms = median_ms(bare, runs)
        print(f"{name[:width]:{width}} {server:8.1f} {sql_ms:9.1f} {server - sql_ms:7.1f} {len(sqls):8d}", flush=True)
        if explain:
            slowest = max((q for q in sqls if q.lstrip().upper().startswith("SELECT")), key=len)
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest)
                print("\n".join(r[0] for r in cursor.fetchall()))


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up (plans, caches)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def seeded_database(rows: int) -> int:
    """Migrate the benchmark database and top it up to `rows` invoices; returns the count.

    Then VACUUM (ANALYZE), as autovacuum would within minutes: a freshly COPYed table has no
    visibility map yet, which would deny the pages their index-only scans."""
    from django.db import connection

    from arbook.models import Invoice

    if connection.vendor != "postgresql":
        raise SystemExit("run under scripts/with-services.sh (PostgreSQL)")
    migrate()
    existing = Invoice.objects.count()
    if existing < rows:
        seed_invoices(rows - existing)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) arbook_invoice")
        cursor.execute("VACUUM (ANALYZE) arbook_invoiceevent")
        cursor.execute("VACUUM (ANALYZE) arbook_agingrollup")
        cursor.execute("VACUUM (ANALYZE) arbook_dayrollup")
    return Invoice.objects.count()
