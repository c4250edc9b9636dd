"""Notification tasks: apply one stored, verified payment notification.

`acks_late` is safe: applying is idempotent (a settled notification is left as it is, and the
invoice row lock serializes two deliveries of one event)."""
from __future__ import annotations

from celery import shared_task

from arbook.models import Notification
from arbook.services.invoice_write import notification_apply
from arbook.services.notifications import APPLY_TASK
from gateways import TransientError


#: A provider that cannot confirm a notification right now (Espay, Faspay) is asked again later.
@shared_task(name=APPLY_TASK, acks_late=True, ignore_result=True, autoretry_for=(TransientError,),
             retry_backoff=30, retry_backoff_max=900, max_retries=8)
def notification_apply_task(notification_id: int) -> str:
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        return "gone"
    return notification_apply(notification=notification).outcome
