"""Reminders benchmark (issue 18): choose, re-check at the gateway, render and send the reminders of
N customers due the same day, with a real SMTP server, and watch the memory.

    bash scripts/with-services.sh .venv/bin/python bench/reminders.py [--size 40000] [--runs 1000,10000]

Mirrors a Xendit sandbox population of `--size` invoices (the sandbox in its own process, as a
real provider; a full sync first), then for each count in `--runs` takes that many customers not
reminded yet, makes their open invoices exactly a week overdue on the run's day, and times one
`reminders_run` of the merchant for that day: the choice, one live lookup per invoice at the
sandbox (written through the write path), the rendering of one e-mail per customer (a default
sequence step), the outbox, and the hand-off to an aiosmtpd server in this process. Prints the
seconds, the e-mails and lookups, and the peak RSS after each run (flat memory: the 10,000 run
should not need much more than the 1,000 one).

Target (issue 18): 10,000 customers due the same day in <= 60 s, with flat memory.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbook.settings.development")
os.environ["DEBUG"] = "false"

from bench.sync import free_port, peak_rss_mb, start_sandbox  # noqa: E402


def ensure_database(name: str = "arbook_reminders") -> None:
    import environ
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Run under scripts/with-services.sh (or set DATABASE_URL to PostgreSQL).")
    config = environ.Env.db_url_config(url)
    with psycopg.connect(host=config["HOST"], port=config["PORT"], user=config["USER"],
                         password=config.get("PASSWORD") or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name


class Discard:
    """An SMTP handler that counts what it receives."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--runs", default="1000,10000", help="customers per run, comma-separated")
    parser.add_argument("--profile", action="store_true", help="print where the last run spent its time")
    args = parser.parse_args()
    runs = [int(n) for n in args.runs.split(",")]

    ensure_database()
    import django

    django.setup()
    from aiosmtpd.controller import Controller
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from arbook.models import Customer, GatewayCredential, Invoice, Merchant, ReminderMessage, SyncRun
    from arbook.services.reminders import reminder_steps_default, reminders_run, reminders_send
    from arbook.services.sync import invoices_sync
    from arbook.status import RECEIVABLE
    from gateways.sandbox import CREDENTIALS, OPTIONS

    handler = Discard()
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    sandbox, base_url = start_sandbox("xendit", args.size)
    try:
        merchant = Merchant.objects.create(name="Bench", slug="bench", timezone="Asia/Jakarta")
        credential = GatewayCredential.objects.create(merchant=merchant, provider="xendit", base_url=base_url,
                                                      secrets=dict(CREDENTIALS["xendit"]),
                                                      options=dict(OPTIONS.get("xendit", {})))
        started = time.perf_counter()
        run = invoices_sync(credential=credential, full=True)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        print(f"synced {run.fetched:,} invoices in {time.perf_counter() - started:.0f} s")
        reminder_steps_default(merchant=merchant)
        owing = list(Invoice.objects.filter(merchant=merchant, status__in=RECEIVABLE, outstanding__gt=0)
                     .order_by().values_list("customer_id", flat=True).distinct())
        print(f"{len(owing):,} customers owe something; runs of {runs}")
        if len(owing) < sum(runs):
            sys.exit(f"not enough customers: raise --size (have {len(owing):,}, need {sum(runs):,})")
        Customer.objects.filter(merchant=merchant).update(reminder_email="")
        with connection.cursor() as cursor:  # everyone an address (the sandbox leaves some without)
            cursor.execute("UPDATE arbook_customer SET reminder_email = 'c' || id || '@bench.example' "
                           "WHERE merchant_id = %s", [merchant.pk])
        # Nobody is due at first: each run makes its customers' open invoices a week overdue.
        later = timezone.now() + dt.timedelta(days=400)
        Invoice.objects.filter(merchant=merchant).update(due_at=later)
        day = timezone.now().astimezone(dt.timezone(dt.timedelta(hours=7))).date()
        offset = 0
        print("\nchoose + re-check + render + write (seconds, peak RSS after), then the SMTP hand-off of the same "
              "e-mails (seconds, peak RSS after)")
        print(f"{'customers':>10} {'e-mails':>8} {'invoices':>9} {'lookups':>8} {'seconds':>8} {'RSS MB':>12}"
              f" {'send s':>8} {'RSS MB':>10}")
        for n, count in enumerate(runs):
            run_day = day + dt.timedelta(days=n)
            chosen = owing[offset:offset + count]
            offset += count
            due = dt.datetime.combine(run_day - dt.timedelta(days=7), dt.time(10), tzinfo=dt.timezone.utc)
            Invoice.objects.filter(customer_id__in=chosen, status__in=RECEIVABLE).update(due_at=due)
            invoices = Invoice.objects.filter(customer_id__in=chosen, status__in=RECEIVABLE, outstanding__gt=0).count()
            lookups_before = sum(SyncRun.objects.filter(trigger="reminder").values_list("lookups", flat=True))
            sent_before = handler.count
            now = dt.datetime.combine(run_day, dt.time(2), tzinfo=dt.timezone.utc)  # 09:00 in Jakarta
            profiler = cProfile.Profile() if args.profile and n == len(runs) - 1 else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            result = reminders_run(merchant=merchant, day=run_day, now=now, send=False)
            seconds = time.perf_counter() - started
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            rss = peak_rss_mb()
            started = time.perf_counter()
            result["sent"] = reminders_send(merchant=merchant)
            send_seconds = time.perf_counter() - started
            lookups = sum(SyncRun.objects.filter(trigger="reminder").values_list("lookups", flat=True)) - lookups_before
            assert handler.count - sent_before == result["sent"] == ReminderMessage.objects.filter(day=run_day,
                                                                                                   state="sent").count()
            print(f"{count:>10,} {result['sent']:>8,} {invoices:>9,} {lookups:>8,} {seconds:>8.1f} {rss:>12.0f}"
                  f" {send_seconds:>8.1f} {peak_rss_mb():>10.0f}   (dropped {result['dropped']:,})", flush=True)
        print("target: 10,000 customers due the same day <= 60 s, flat memory")
    finally:
        sandbox.terminate()
        smtp.stop()


if __name__ == "__main__":
    main()
