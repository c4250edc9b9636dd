"""A real Celery worker, on the broker `make test` started (Redis), runs an enqueued sync."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from arbook.models import Invoice, SyncRun
from arbook.services.sync_schedule import sync_enqueue

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    """The URL of the test database this process uses, for the worker process."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def worker():
    env = {**os.environ, "DATABASE_URL": database_url()}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "arbook", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_an_enqueued_sync_is_run_by_a_real_worker(worker, live_sandbox, make_credential):
    """The worker is another process with the real clock, so the sandbox is anchored on the real
    date (`live_sandbox`) and this test's clock is not pinned either."""
    credential = make_credential("xendit")
    assert sync_enqueue(credential=credential, trigger=SyncRun.Trigger.MANUAL)
    deadline = time.monotonic() + 90
    run = None
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(credential=credential).exclude(status=SyncRun.Status.RUNNING).first()
        if run or worker.poll() is not None:
            break
        time.sleep(0.3)
    if run is None:
        worker.terminate()
        output = worker.communicate(timeout=20)[0]
        pytest.fail(f"the worker did not finish the sync; its output:\n{output[-4000:]}")
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    population = sum(1 for _ in live_sandbox.sandbox.providers["xendit"].truth())
    assert run.trigger == "manual" and run.created == population
    assert Invoice.objects.filter(credential=credential).count() == population
