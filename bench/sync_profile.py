"""Where a first sync's time goes: the writer's SQL, statement by statement.

    WITH_REPLICA=0 bash scripts/with-services.sh .venv/bin/python bench/sync_profile.py \
        [--size 100000] [--provider xendit] [--option read_concurrency=1] [--off "customer link"] [--runs 2]

Runs `--runs` first syncs of a new account (each in a new database, so no run inherits another's
tables) and prints, per run: the wall time, the CPU the whole machine was busy for (this process,
the sandbox and PostgreSQL together: on two cores they compete), this process's CPU, and the
writer's SQL wall per statement shape (network, PostgreSQL and waiting for the GIL after the
answer: a statement issued while the reader threads parse shows their cost, not its own). With
`--off PART` (bench/sync.py's parts: the rollup triggers, the overdue-list index, the customer
link) the runs alternate with that part off and on: off, on, on, off (`--runs` // 2 times).

`bench/sync.py` gives the rates; this shows what to make cheaper.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sync as bench_sync  # noqa: E402  (sets the settings module, DEBUG off)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system) since boot."""
    with open("/proc/stat") as stat:
        return sum(map(int, stat.readline().split()[1:4])) / os.sysconf("SC_CLK_TCK")


def one_first_sync(args, switch=None, state: str = "ENABLE") -> float:
    """A new database, a new account, one first sync: print its figures, return its wall time."""
    from django.db import connection

    connection.close()
    bench_sync.ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from arbook.models import SyncRun
    from arbook.services.sync import invoices_sync

    sandbox, base_url = bench_sync.start_sandbox(args.provider, args.size)
    stats: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = stats[re.sub(r"\s+", " ", sql)[:100]]
            shape[0] += 1
            shape[1] += time.perf_counter() - started

    try:
        _merchant, credential = bench_sync.bench_account(args, base_url)
        if switch is not None:
            switch(state)
        try:
            cpu, busy, started = time.process_time(), busy_seconds(), time.perf_counter()
            with connection.execute_wrapper(timed):
                run = invoices_sync(credential=credential, full=True, trigger=SyncRun.Trigger.COMMAND)
            wall = time.perf_counter() - started
            busy, cpu = busy_seconds() - busy, time.process_time() - cpu
        finally:
            if switch is not None:
                switch("ENABLE")
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
    finally:
        sandbox.terminate()
    label = "" if switch is None else f"{args.off} {'off' if state == 'DISABLE' else 'on'}: "
    print(f"{label}first sync of {run.fetched:,} invoices {wall:.2f} s; machine busy {busy:.1f} s, "
          f"this process {cpu:.1f} s; writer SQL {sum(s[1] for s in stats.values()):.2f} s "
          f"in {sum(s[0] for s in stats.values())} statements")
    for shape, (count, seconds) in sorted(stats.items(), key=lambda item: -item[1][1])[:args.top]:
        print(f"  {seconds:7.2f} s {count:6d}x  {shape}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--provider", default="xendit", choices=["xendit", "faspay", "munio", "farpay"])
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--off", choices=list(getattr(bench_sync, "PARTS", {})), help="alternate runs with this part off and on")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="statement shapes shown per run")
    args = parser.parse_args()
    import django

    bench_sync.ensure_database()
    django.setup()
    if args.off:
        switch = bench_sync.PARTS[args.off]
        walls: dict[str, list[float]] = {"DISABLE": [], "ENABLE": []}
        for state in ("DISABLE", "ENABLE", "ENABLE", "DISABLE") * max(1, args.runs // 2):
            walls[state].append(one_first_sync(args, switch, state))
        off, on = (statistics.mean(walls[state]) for state in ("DISABLE", "ENABLE"))
        print(f"{args.off}: off {off:.2f} s, on {on:.2f} s (means): it costs {(on / off - 1) * 100:+.1f}%")
    else:
        for _ in range(args.runs):
            one_first_sync(args)


if __name__ == "__main__":
    main()
