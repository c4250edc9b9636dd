"""Benchmark of `/worklist/` at scale (issue 17): server time vs the bare SQL each page ran.

    bash scripts/with-services.sh .venv/bin/python bench/worklist.py [ROWS] [--runs N]

Seeds ROWS invoices (default 1,000,000; bench/seed.py gives each a customer, with the summary
and balances the write path keeps) and reports how many customers that made (the issue asks for
100k). Then it gives the customers ten collectors (a tenth of them left unassigned), records 300
promises (a third of them broken) and 150 holds (a fifth on whole customers), runs the
scheduler's first `customers_age` pass (timed: it counts every overdue invoice once), and
measures, through Django's test client (DEBUG off), the median server time of: a collector's own
worklist, its fifth page, a manager's view of everyone's, of the unassigned customers', and of
one collector's in the second currency; next to each, the bare SQL that request ran.

Target (issue 17): the worklist loads <= 200 ms at 1M invoices / 100k customers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "0")

from bench.seed import seeded_database, setup_django, time_pages  # noqa: E402

COLLECTORS = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    setup_django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from arbook.models import Customer, CustomerBalance, Hold, HoldReason, Invoice, Merchant, Promise
    from arbook.services.collections import customers_age, day_end

    total = seeded_database(args.rows)
    customers = Customer.objects.count()
    merchants = list(Merchant.objects.order_by("pk"))
    users = []
    for k in range(COLLECTORS):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-collector-{k}")
        users.append(user)
    manager, _ = get_user_model().objects.get_or_create(username="bench-manager")
    manager.user_permissions.add(Permission.objects.get(codename="manage_collections"))
    for m in merchants:
        m.members.add(*users, manager)
    with connection.cursor() as cursor:  # round robin, every tenth customer nobody's (once)
        ids = [u.pk for u in users]
        cursor.execute("UPDATE arbook_customer SET collector_id = (%s::bigint[])[1 + (id / 10) %% %s]"
                       " WHERE collector_id IS NULL AND id %% 10 <> 0", [ids, len(ids)])
    now = timezone.now()
    if not Promise.objects.exists():
        rng = random.Random(17)
        owing = list(CustomerBalance.objects.filter(overdue__gt=0).values_list("customer_id", "merchant_id",
                                                                             "currency", "overdue")[:20_000])
        picked = rng.sample(owing, 450)
        by_pk = {m.pk: m for m in merchants}
        with transaction.atomic():
            for n, (customer_id, merchant_id, currency, overdue) in enumerate(picked[:300]):
                broken = n % 3 == 0
                day = (now - dt.timedelta(days=3 if broken else -5)).date()
                Promise.objects.create(merchant_id=merchant_id, customer_id=customer_id, currency=currency,
                                       amount=overdue, promised_for=day, deadline=day_end(day, merchant=by_pk[merchant_id]),
                                       made_at=now - dt.timedelta(days=7), state="broken" if broken else "open")
            reasons = {m.pk: HoldReason.objects.get_or_create(merchant=m, label="Amount disputed")[0] for m in merchants}
            for n, (customer_id, merchant_id, _currency, _overdue) in enumerate(picked[300:]):
                invoice = None if n % 5 == 0 else (Invoice.objects.filter(customer_id=customer_id, due_at__lt=now)
                                                   .values_list("pk", flat=True).first())
                Hold.objects.create(merchant_id=merchant_id, customer_id=customer_id, invoice_id=invoice,
                                    reason=reasons[merchant_id])
    started = time.perf_counter()
    aged = customers_age()
    print(f"customers_age: {aged:,} customers refreshed in {time.perf_counter() - started:.1f} s "
          f"(the first pass counts every overdue invoice; later ones only what fell due since)")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) arbook_customer")
        cursor.execute("VACUUM (ANALYZE) arbook_customerbalance")

    collector, boss = Client(), Client()
    collector.force_login(users[1])
    boss.force_login(manager)
    currencies = list(CustomerBalance.objects.filter(overdue__gt=0).order_by().values_list("currency", flat=True)
                      .distinct())
    second = sorted(currencies)[1] if len(currencies) > 1 else currencies[0]
    mine = Customer.objects.filter(collector=users[1]).count()
    print(f"\nworklist, {total:,} invoices, {customers:,} customers ({mine:,} of the timed collector), "
          f"median of {args.runs} runs (ms)")
    for client, cases in ((collector, [("/worklist/", {}, "a collector's own worklist"),
                                       ("/worklist/", {"page": "5"}, "its 5th page")]),
                          (boss, [("/worklist/", {"collector": "all"}, "manager: everyone's"),
                                  ("/worklist/", {"collector": "none"}, "manager: the unassigned"),
                                  ("/worklist/", {"collector": str(users[2].pk), "currency": second},
                                   f"manager: one collector's, {second}")])):
        time_pages(client, cases, args.runs)
    print("target: the worklist <= 200 ms")


if __name__ == "__main__":
    main()
