"""Espay batch task: load the batch by id and send it (enqueued on confirm, after commit).

`acks_late` is safe here because sending is guarded by the service, not by the queue: only the
run that claims the batch sends, and a redelivered task either finds it finished or (once the dead
worker's lease ran out) resumes it, resending an in-flight chunk with its stored rq_uuid.
"""
from __future__ import annotations

from celery import shared_task

from arbook.models import EspayBatch
from arbook.services.espay_batch import SEND_TASK, espay_batch_send


@shared_task(name=SEND_TASK, acks_late=True, ignore_result=True)
def espay_batch_send_task(batch_id: int) -> str:
    batch = EspayBatch.objects.filter(pk=batch_id).defer("file_content").first()
    if batch is None:
        return "gone"
    return espay_batch_send(batch=batch).status
