"""Espay has no invoice lookup: before a reminder, arbook asks its Check Payment Status (signed,
through the sandbox) and writes the answer through the write path, so an order paid at Espay
whose payment report never arrived is not chased."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core import mail

from arbook.models import Customer, InvoiceEvent, ReminderDrop, ReminderMessage, ReminderStep, SyncRun
from arbook.services.reminders import reminders_run

from .conftest import espay_invoice, make_credential

pytestmark = pytest.mark.django_db(transaction=True)
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")


@pytest.fixture(autouse=True)
def locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_an_order_paid_at_espay_is_dropped_and_stored_paid_and_an_open_one_is_mailed(merchant, user, sandbox):
    credential = make_credential(merchant, sandbox, "espay")
    paid, open_ = espay_invoice(credential, user, "DOC-PAID"), espay_invoice(credential, user, "DOC-OPEN")
    for invoice in (paid, open_):
        Customer.objects.filter(pk=invoice.customer_id).update(reminder_email=f"{invoice.external_id}@example.id")
    ReminderStep.objects.create(merchant=merchant, offset_days=0, name="Due", subject="Due: {{ invoices|length }}",
                                body="{% for i in invoices %}{{ i.number|default:i.external_id }} "
                                     "{{ i.ways|join:', ' }}{% endfor %}")
    sandbox.sandbox.providers["espay"].mutate("DOC-PAID", {"status": "paid"})
    # The day both fall due (the upload's due date), 09:00 in Jakarta: nothing here reads the clock.
    day = max(paid.due_at, open_.due_at).astimezone(JKT).date()
    now = dt.datetime.combine(day, dt.time(9), tzinfo=JKT)

    result = reminders_run(merchant=merchant, day=day, now=now)
    assert result["sent"] == 1, list(ReminderDrop.objects.values_list("invoice__external_id", "reason", "detail"))
    assert [m.to for m in mail.outbox] == [["DOC-OPEN@example.id"]]
    assert "DOC-OPEN" in mail.outbox[0].body and "VA " in mail.outbox[0].body  # how to pay: the VA numbers
    drop = ReminderDrop.objects.get(invoice=paid)
    assert drop.reason == "settled"
    paid.refresh_from_db()
    assert paid.status == "paid" and paid.outstanding == 0
    event = InvoiceEvent.objects.get(invoice=paid, source="sync")
    assert event.sync_run.trigger == SyncRun.Trigger.REMINDER and "status check" in event.note
    assert ReminderMessage.objects.get().customer_id == open_.customer_id
