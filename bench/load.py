"""Load test: fifty staff on gunicorn while a 100k-invoice sync and a 10,000-line Espay batch run.

    bash scripts/with-services.sh .venv/bin/python bench/load.py [--invoices 1000000] [--users 50] [--minutes 5]

1. Seeds `--invoices` invoices into PostgreSQL (bench/seed.py, COPY), and staff users who see
   every merchant.
2. Measures the sync's rate without load: a first (full) sync of a 100k-invoice Xendit sandbox.
3. Starts gunicorn with 4 workers, and Locust (pinned in bench/requirements-load.txt, installed
   into .venv-load on first use: its gevent stack stays out of the app's venv) with `--users`
   simulated staff for `--minutes` (bench/locustfile.py: list with filters and search, totals,
   aging with as-of and by customer, overview, invoice and customer pages, CSV exports).
4. Meanwhile, in this process: a second first sync of the same 100k population (a new
   credential) and a 10,000-line Espay batch (validate, confirm, send to the sandbox).
5. Prints p50/p95/p99 per page, the errors, the sync's rate under load against its rate without,
   the batch's time, and whether the mirror is exact (the loaded sync's rows equal the unloaded
   one's, row for row, and the batch issued a VA for every line).

Targets (issue 19): 0 errors, p95 <= 1 s on every page, the mirror exact after the run.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DEBUG", "0")

from bench.seed import seeded_database, setup_django  # noqa: E402
from bench.sync import free_port  # noqa: E402

LOAD_VENV = ROOT / ".venv-load"
LOAD_REQUIREMENTS = ROOT / "bench" / "requirements-load.txt"
PASSWORD = "load-test-password-1"


def ensure_locust() -> Path:
    """.venv-load with exactly bench/requirements-load.txt (reinstalled when the file changes)."""
    stamp = LOAD_VENV / f".installed-{abs(hash(LOAD_REQUIREMENTS.read_text())) % 10**12}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LOAD_VENV)], check=True)
        subprocess.run([str(LOAD_VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                        "-r", str(LOAD_REQUIREMENTS)], check=True)
        stamp.touch()
    return LOAD_VENV / "bin" / "locust"


def start_sandbox(size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateways.sandbox", "--port", str(port), "--providers",
                                "xendit,espay", "--sizes", json.dumps({"xendit": size, "espay": 0})],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def staff_and_samples(n_users: int, today: str) -> dict:
    from django.contrib.auth import get_user_model

    from arbook.models import Customer, Invoice, Merchant

    User = get_user_model()
    merchants = list(Merchant.objects.filter(credentials__label="bench").distinct())
    users = []
    for i in range(n_users):
        user, _ = User.objects.get_or_create(username=f"load-staff-{i}")
        user.set_password(PASSWORD)
        user.save()
        for m in merchants:
            m.members.add(user)
        users.append(user.username)
    rng = random.Random(11)
    top = Invoice.objects.order_by("-id").values_list("id", flat=True).first()
    invoice_ids = sorted({rng.randint(1, top) for _ in range(3000)})
    invoices = list(Invoice.objects.filter(pk__in=invoice_ids).values_list("id", flat=True))
    customers = list(Customer.objects.order_by("?").values_list("id", "name")[:2000])
    words = sorted({w for _, name in customers[:400] for w in name.split()[1:3]})
    return {"users": users, "password": PASSWORD, "invoices": invoices, "customers": [c for c, _ in customers],
            "customer_names": [n for _, n in customers[:500]], "words": words,
            "merchants": [m.pk for m in merchants], "currencies": ["IDR", "DKK"], "today": today}


def xendit_credential(base_url: str, label: str):
    from arbook.models import GatewayCredential, Merchant
    from gateways.sandbox import CREDENTIALS, OPTIONS

    merchant, _ = Merchant.objects.get_or_create(slug="load-xendit", defaults={"name": "Load Xendit"})
    return GatewayCredential.objects.create(merchant=merchant, provider="xendit", label=label,
                                            base_url=base_url + "/xendit", secrets=dict(CREDENTIALS["xendit"]),
                                            options=dict(OPTIONS["xendit"]))


def timed_sync(credential) -> tuple[float, object]:
    from arbook.models import SyncRun
    from arbook.services.sync import invoices_sync

    started = time.perf_counter()
    run = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return time.perf_counter() - started, run


def espay_batch(base_url: str, lines: int) -> dict:
    from django.contrib.auth import get_user_model

    from arbook.models import GatewayCredential, Merchant
    from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send
    from bench.espay_batch import build_xlsx
    from gateways.sandbox import CREDENTIALS, OPTIONS

    user = get_user_model().objects.get(username="load-staff-0")
    merchant, _ = Merchant.objects.get_or_create(slug="load-espay", defaults={"name": "Load Espay"})
    merchant.members.add(user)
    credential = GatewayCredential.objects.create(
        merchant=merchant, provider="espay", label="load", base_url=base_url + "/espay",
        secrets={"signature_key": CREDENTIALS["espay"]["signature_key"]}, options=dict(OPTIONS["espay"]))
    started = time.perf_counter()
    batch = espay_batch_create(credential=credential, user=user, file_name="load.xlsx", content=build_xlsx(lines))
    assert batch.status == "ready", batch.status
    assert espay_batch_confirm(batch=batch, user=user).ok
    batch = espay_batch_send(batch=batch)
    return {"seconds": time.perf_counter() - started, "status": batch.status, "sent": batch.sent_count,
            "lines": lines}


def mirror_differences(a_id: int, b_id: int) -> int:
    from django.db import connection

    cols = "external_id, status, outstanding, amount, paid_amount, issued_at, due_at, paid_at, content_hash"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ((SELECT {cols} FROM arbook_invoice WHERE credential_id = %s "
            f"EXCEPT SELECT {cols} FROM arbook_invoice WHERE credential_id = %s) UNION ALL "
            f"(SELECT {cols} FROM arbook_invoice WHERE credential_id = %s "
            f"EXCEPT SELECT {cols} FROM arbook_invoice WHERE credential_id = %s)) d", [a_id, b_id, b_id, a_id])
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--sync-size", type=int, default=100_000)
    parser.add_argument("--batch-lines", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    locust = ensure_locust()
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from arbook.models import Invoice

    started = time.perf_counter()
    total = seeded_database(args.invoices)
    print(f"seeded: {total:,} invoices in {time.perf_counter() - started:.0f} s")
    out = Path(tempfile.mkdtemp(prefix="arbook-load-"))
    data_file = out / "data.json"
    data_file.write_text(json.dumps(staff_and_samples(5, timezone.localdate().isoformat())))

    sandbox, base_url = start_sandbox(args.sync_size)
    gunicorn = locust_run = None
    try:
        baseline_s, baseline_run = timed_sync(xendit_credential(base_url, "load-baseline"))
        print(f"sync without load: {baseline_run.fetched:,} invoices in {baseline_s:.1f} s "
              f"({baseline_run.fetched / baseline_s:,.0f}/s)")

        port = free_port()
        env = {**os.environ, "DEBUG": "0", "DATABASE_URL": settings_url(settings)}
        gunicorn = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "arbook.wsgi",
                                     "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}", "--timeout", "120"],
                                    cwd=ROOT, env=env, stdout=open(out / "gunicorn.log", "w"), stderr=subprocess.STDOUT)
        wait_for_port(port)
        locust_run = subprocess.Popen(
            [str(locust), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless", "--users", str(args.users),
             "--spawn-rate", "10", "--run-time", f"{int(args.minutes * 60)}s", "--host", f"http://127.0.0.1:{port}",
             "--csv", str(out / "load"), "--only-summary", "--stop-timeout", "30"],
            cwd=ROOT, env={**os.environ, "ARBOOK_LOAD_DATA": str(data_file)},
            stdout=open(out / "locust.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(15)  # let the users sign in and spread out

        results: dict = {}

        def batch() -> None:
            try:
                results["batch"] = espay_batch(base_url, args.batch_lines)
            except Exception as exc:  # reported below, not swallowed
                results["batch"] = {"error": repr(exc)}
            finally:
                connection.close()

        thread = threading.Thread(target=batch)
        thread.start()
        loaded_credential = xendit_credential(base_url, "load-under-load")
        loaded_s, loaded_run = timed_sync(loaded_credential)
        thread.join()
        locust_run.wait()
    finally:
        for process in (locust_run, gunicorn, sandbox):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)

    report(out, args)
    rows = [Invoice.objects.filter(credential_id=c).count() for c in (baseline_run.credential_id, loaded_credential.pk)]
    differing = mirror_differences(baseline_run.credential_id, loaded_credential.pk)
    print(f"sync under load: {loaded_run.fetched:,} invoices in {loaded_s:.1f} s ({loaded_run.fetched / loaded_s:,.0f}/s), "
          f"{baseline_s / loaded_s:.2f}x its rate without load")
    b = results.get("batch", {})
    if "error" in b:
        print(f"espay batch: FAILED {b['error']}")
    else:
        print(f"espay batch: {b['lines']:,} lines validated, confirmed and sent in {b['seconds']:.1f} s "
              f"(status {b['status']}, {b['sent']:,} VAs)")
    exact = differing == 0 and rows[0] == rows[1] and b.get("sent") == args.batch_lines
    print(f"mirror: {rows[1]:,} rows under load vs {rows[0]:,} without, {differing} differ; "
          f"{'exact' if exact else 'NOT EXACT'}")
    print(f"files: {out}")


def settings_url(settings) -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def report(out: Path, args) -> None:
    stats = out / "load_stats.csv"
    if not stats.exists():
        print((out / "locust.log").read_text()[-3000:])
        raise SystemExit("locust wrote no statistics")
    rows = list(csv.DictReader(stats.open()))
    print(f"\n{args.users} users for {args.minutes:g} min, gunicorn {args.workers} workers")
    print(f"{'page':<34} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}  p95<=1s")
    errors = 0
    for r in rows:
        name = r["Name"] if r["Name"] != "Aggregated" else "all pages"
        p95 = float(r["95%"] or 0)
        errors += int(r["Failure Count"]) if r["Name"] != "Aggregated" else 0
        # Signing in hashes the password (PBKDF2, ~1 s of CPU on purpose): once per user, not a page.
        verdict = "n/a" if "sign in" in name or name == "all pages" else ("yes" if p95 <= 1000 else "NO")
        print(f"{name[:34]:<34} {r['Request Count']:>8} {r['Failure Count']:>6} {r['50%']:>7} {r['95%']:>7} "
              f"{r['99%']:>7}  {verdict}")
    failures = out / "load_failures.csv"
    if failures.exists():
        for r in list(csv.DictReader(failures.open()))[:10]:
            print(f"  error: {r.get('Name')}: {r.get('Error')} x{r.get('Occurrences')}")
    print(f"errors: {errors}")


if __name__ == "__main__":
    main()
