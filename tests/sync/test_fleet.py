"""Two real Celery workers and two real Celery beat schedulers on one real Redis (`make test`'s).

Every credential is synced once per interval, never twice for one tick, and the mirrors are
exact. Halfway through, one scheduler is killed: the other one's ticks carry on, so no interval
is lost. The processes run with the real clock, so the sandbox is anchored on the real date
(`live_sandbox`) and nothing here is pinned.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from arbook.models import GatewayCredential, Invoice, SyncRun
from tests.sync.conftest import POLLED
from tests.sync.test_worker import database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis server `make test` starts"),
]
INTERVAL = timedelta(minutes=1)  # the shortest interval a credential can have
TICK_SECONDS = 2


def spawn(args: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "ARBOOK_SYNC_TICK_SECONDS": str(TICK_SECONDS)}
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "arbook", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def fleet(tmp_path):
    processes: dict[str, subprocess.Popen] = {}
    yield processes, tmp_path
    for process in processes.values():
        stop(process)


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))


def test_two_workers_and_two_schedulers_sync_each_credential_once_per_interval(fleet, live_sandbox,
                                                                              make_credential):
    processes, tmp_path = fleet
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    credentials = [make_credential(provider) for provider in POLLED for _ in range(2)]
    GatewayCredential.objects.update(sync_interval_minutes=1, full_sync_interval_hours=24)

    for n in (1, 2):
        processes[f"worker{n}"] = spawn(["worker", "--pool=solo", "-n", f"w{n}@%h", "--loglevel=INFO",
                                         "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                        tmp_path, f"worker{n}")
        processes[f"beat{n}"] = spawn(["beat", "--loglevel=INFO", "-s", str(tmp_path / f"beat{n}-schedule")],
                                      tmp_path, f"beat{n}")
    started = time.monotonic()

    def finished_runs() -> list[SyncRun]:
        return list(SyncRun.objects.exclude(status=SyncRun.Status.RUNNING).order_by("started_at"))

    # First interval: every credential synced once by one of the two workers.
    deadline = started + 60
    while time.monotonic() < deadline and len(finished_runs()) < len(credentials):
        time.sleep(0.5)
    first = finished_runs()
    assert len(first) == len(credentials), logs(tmp_path)

    # One scheduler dies (SIGKILL: no goodbye); the other keeps ticking.
    stop(processes["beat1"], signal.SIGKILL)
    deadline = started + 150
    while time.monotonic() < deadline and len(finished_runs()) < 2 * len(credentials):
        time.sleep(0.5)
    time.sleep(3 * TICK_SECONDS)  # a double enqueue would show up as an extra run by now
    runs = finished_runs()
    assert len(runs) == 2 * len(credentials), logs(tmp_path)

    workers = set()
    for credential in credentials:
        mine = [r for r in runs if r.credential_id == credential.pk]
        assert len(mine) == 2, (credential.provider, [(r.status, r.started_at, r.error) for r in mine])
        assert all(r.status == SyncRun.Status.SUCCEEDED and r.trigger == SyncRun.Trigger.SCHEDULE for r in mine), \
            [(r.status, r.error) for r in mine]
        # The second sync started no earlier than one interval after the first finished.
        assert mine[1].started_at - mine[0].finished_at >= INTERVAL - timedelta(seconds=1)
        population = sum(1 for _ in live_sandbox.sandbox.providers[credential.provider].truth())
        assert Invoice.objects.filter(credential=credential).count() == population
        assert mine[0].created == population and mine[1].created == 0
    # Both workers took a share of the syncs.
    for n in (1, 2):
        text = (tmp_path / f"worker{n}.log").read_text()
        if "arbook.invoices_sync" in text and "succeeded" in text:
            workers.add(n)
    assert workers == {1, 2}, logs(tmp_path)
