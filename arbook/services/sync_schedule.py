"""When syncs run: on request (`sync_enqueue`: a user, the admin, a notification for an invoice
not synced yet) and on the scheduler's tick (`sync_enqueue_due`). The sync itself is
`arbook.services.sync`; it runs in the worker, enqueued here by task name."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

import gateways
from arbook.celery import enqueue
from arbook.models import GatewayCredential, SyncRun

#: The registered name of `arbook.tasks.sync.invoices_sync_task`.
SYNC_TASK = "arbook.invoices_sync"


def sync_enqueue(*, credential: GatewayCredential, full: bool = False,
                 trigger: str = SyncRun.Trigger.MANUAL) -> bool:
    """Queue a sync of `credential` (after the current transaction commits) and return at once.

    False when there is nothing to sync (inactive, or a provider without a list API)."""
    if not credential.is_active or not gateways.client_class(credential.provider).lists_invoices:
        return False
    GatewayCredential.objects.filter(pk=credential.pk).update(sync_requested_at=timezone.now())
    transaction.on_commit(lambda: enqueue(SYNC_TASK, credential.pk, full=full, trigger=str(trigger)))
    return True


def sync_enqueue_due(*, now: datetime | None = None) -> list[int]:
    """Enqueue every active credential whose own interval has elapsed (the scheduler's tick).

    A credential that needs attention is left alone until it is changed; a full reconciliation
    is asked for when its full interval has elapsed too. Each is claimed first (`sync_claim`), so
    two schedulers never enqueue one credential twice for one tick."""
    now = now or timezone.now()
    due: list[int] = []
    polled = [p for p in gateways.PROVIDERS if gateways.client_class(p).lists_invoices]
    for credential in GatewayCredential.objects.filter(is_active=True, needs_attention=False, provider__in=polled):
        last = max((t for t in (credential.last_sync_at, credential.sync_requested_at) if t), default=None)
        if last is not None and now - last < timedelta(minutes=credential.sync_interval_minutes):
            continue
        full = (credential.last_full_sync_at is None
                or now - credential.last_full_sync_at >= timedelta(hours=credential.full_sync_interval_hours))
        if not sync_claim(credential=credential, now=now):
            continue  # another scheduler's tick claimed it between our read and now
        transaction.on_commit(lambda pk=credential.pk, full=full: enqueue(
            SYNC_TASK, pk, full=full, trigger=str(SyncRun.Trigger.SCHEDULE)))
        due.append(credential.pk)
    return due


def sync_claim(*, credential: GatewayCredential, now: datetime) -> bool:
    """Mark the credential's scheduled sync as requested, only if nobody did since `credential`
    was read (compare and set on `sync_requested_at`): two schedulers running the same tick (two
    hosts, or a slow tick overlapping the next) enqueue it once."""
    claimed = GatewayCredential.objects.filter(pk=credential.pk, sync_requested_at=credential.sync_requested_at) \
        if credential.sync_requested_at is not None else \
        GatewayCredential.objects.filter(pk=credential.pk, sync_requested_at__isnull=True)
    if not claimed.update(sync_requested_at=now):
        return False
    credential.sync_requested_at = now
    return True
