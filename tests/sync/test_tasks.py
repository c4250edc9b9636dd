"""Tasks are enqueued by name: every name a service or the schedule uses is a registered task,
eager mode runs an enqueued task inline (the import floors: tests/app/test_import_graph.py)."""
from __future__ import annotations

import pytest
from django.conf import settings

from arbook.celery import app, enqueue
from arbook.models import SyncRun
from arbook.services.espay_batch import SEND_TASK
from arbook.services.notifications import APPLY_TASK
from arbook.services.sync_schedule import SYNC_TASK


def test_every_enqueued_or_scheduled_name_is_a_registered_task():
    app.autodiscover_tasks(force=True)
    scheduled = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    for name in (SYNC_TASK, APPLY_TASK, SEND_TASK, *scheduled):
        assert name in app.tasks, name
    assert {app.tasks[n].__name__ for n in (SYNC_TASK, APPLY_TASK, SEND_TASK, *scheduled)} == {
        "invoices_sync_task", "notification_apply_task", "espay_batch_send_task", "sync_enqueue_due_task",
        "collections_tick", "reminders_tick_task", "rollups_compact_task"}


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
