"""The reminders' scheduler pass (`arbook.services.reminders.reminders_tick`), with the statement
PDF that a step may attach (`arbook.exports.statements`)."""
from __future__ import annotations

from celery import shared_task

from arbook.exports.statements import statement_attachment
from arbook.services.reminders import reminders_tick

TICK_TASK = "arbook.reminders_tick"


@shared_task(name=TICK_TASK, ignore_result=True)
def reminders_tick_task() -> dict:
    return {str(k): v for k, v in reminders_tick(statement=statement_attachment).items()}
