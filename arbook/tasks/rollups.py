"""Folding the rollups' delta rows (`arbook.services.aging_rollup.rollups_compact`): idempotent,
and safe on two beat hosts at once."""
from __future__ import annotations

from celery import shared_task

from arbook.services.aging_rollup import rollups_compact

COMPACT_TASK = "arbook.rollups_compact"


@shared_task(name=COMPACT_TASK, ignore_result=True)
def rollups_compact_task() -> int:
    return rollups_compact()
