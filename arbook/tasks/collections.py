"""The collector's clock: promises whose day is over are settled, and invoices that fell due are
counted in their customers' overdue balances (the worklist's order). Both are idempotent."""
from __future__ import annotations

from celery import shared_task

from arbook.services.collections import customers_age, promises_due

TICK_TASK = "arbook.collections_tick"


@shared_task(name=TICK_TASK, ignore_result=True)
def collections_tick() -> dict:
    return {"promises_settled": promises_due(), "customers_aged": customers_age()}
