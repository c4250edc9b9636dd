"""Sync tasks: thin wrappers that load by id and call the sync services.

`acks_late` is safe: the write is an idempotent upsert, so a task redelivered after a worker
died only re-reads pages (and resumes after the last committed one)."""
from __future__ import annotations

from celery import shared_task

from arbook.models import GatewayCredential, SyncRun
from arbook.services.sync import invoices_sync
from arbook.services.sync_schedule import SYNC_TASK, sync_enqueue_due

RETRY_BACKOFF = (30, 120, 600, 1800, 3600)  # seconds, with Celery's jitter on top


@shared_task(name=SYNC_TASK, bind=True, acks_late=True, max_retries=len(RETRY_BACKOFF))
def invoices_sync_task(self, credential_id: int, full: bool = False,
                       trigger: str = SyncRun.Trigger.SCHEDULE) -> str:
    credential = GatewayCredential.objects.filter(pk=credential_id).select_related("merchant").first()
    if credential is None:
        return "gone"
    run = invoices_sync(credential=credential, full=full, trigger=trigger)
    # Only transient failures are retried; auth/config failures wait for a changed credential.
    if run.status == SyncRun.Status.FAILED and run.error_kind == "transient" and self.request.retries < self.max_retries:
        raise self.retry(countdown=RETRY_BACKOFF[self.request.retries])
    return run.status


#: Named in settings.CELERY_BEAT_SCHEDULE (the scheduler's tick, every minute).
@shared_task(name="arbook.sync_enqueue_due", ignore_result=True)
def sync_enqueue_due_task() -> int:
    return len(sync_enqueue_due())
