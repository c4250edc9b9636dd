"""Tasks are enqueued by name: every name a service or the schedule uses is a registered task,
eager mode runs an enqueued task inline, and the services/tasks floors have no import circle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

from arbook.celery import app, enqueue
from arbook.models import SyncRun
from arbook.services.espay_batch import SEND_TASK
from arbook.services.notifications import APPLY_TASK
from arbook.services.sync_schedule import SYNC_TASK

ROOT = Path(__file__).resolve().parents[2]
#: The modules of the write path, the queue and the tasks (no import circle, no hidden import).
FLOOR_MODULES = ("arbook/bulk.py", "arbook/celery.py", "arbook/services/credentials.py",
                 "arbook/services/health.py", "arbook/services/sync_schedule.py", "arbook/services/invoice_write.py",
                 "arbook/services/sync.py", "arbook/services/notifications.py", "arbook/services/espay_batch.py",
                 "arbook/tasks/sync.py", "arbook/tasks/notifications.py", "arbook/tasks/espay.py")


def test_every_enqueued_or_scheduled_name_is_a_registered_task():
    app.autodiscover_tasks(force=True)
    scheduled = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    for name in (SYNC_TASK, APPLY_TASK, SEND_TASK, *scheduled):
        assert name in app.tasks, name
    assert {app.tasks[n].__name__ for n in (SYNC_TASK, APPLY_TASK, SEND_TASK, *scheduled)} == {
        "invoices_sync_task", "notification_apply_task", "espay_batch_send_task", "sync_enqueue_due_task"}


@pytest.mark.django_db
def test_an_enqueued_task_runs_inline_in_eager_mode(make_credential, monkeypatch):
    """`app.send_task` would ignore task_always_eager and hand the message to the broker."""
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
    credential = make_credential("espay")  # no list API: the sync is recorded as skipped
    enqueue(SYNC_TASK, credential.pk, full=False, trigger=SyncRun.Trigger.MANUAL)
    run = SyncRun.objects.get(credential=credential)
    assert (run.status, run.trigger) == (SyncRun.Status.SKIPPED, "manual")


def test_an_unknown_name_fails_instead_of_queueing():
    with pytest.raises(KeyError):
        enqueue("arbook.no_such_task")


def _imports(path: Path) -> tuple[set[str], list[int]]:
    """(arbook modules imported, lines of imports inside function bodies)."""
    tree = ast.parse(path.read_text())
    names, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested += [n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return {n for n in names if n.startswith("arbook")}, nested


def test_the_write_path_and_the_tasks_have_no_import_circle_and_no_hidden_import():
    modules = {p.removesuffix(".py").replace("/", "."): ROOT / p for p in FLOOR_MODULES}
    edges = {}
    for name, path in modules.items():
        imported, nested = _imports(path)
        assert not nested, f"{name} imports inside a function (lines {nested})"
        edges[name] = {m for m in modules if m in imported}
        if name.startswith("arbook.services"):
            assert not any(m.startswith("arbook.tasks") for m in imported), f"{name} imports a task module"

    def on_a_circle(start: str) -> bool:
        stack, seen = [start], set()
        while stack:
            for module in edges[stack.pop()] - seen:
                if module == start:
                    return True
                seen.add(module)
                stack.append(module)
        return False

    assert [m for m in modules if on_a_circle(m)] == []
