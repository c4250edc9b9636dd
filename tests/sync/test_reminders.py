"""Reminders end to end: the pinned sandbox (its dates, and so the clock, pinned per step day), a
real SMTP server (aiosmtpd) that receives the messages, the live re-check through the write path,
and the outbox's exactly-once guarantee across a crash and a refused connection."""
from __future__ import annotations

import datetime as dt
import email
import socket
import zoneinfo
from decimal import Decimal

import pytest
import requests
from aiosmtpd.controller import Controller

from arbook.models import (
    Customer,
    Hold,
    HoldReason,
    Invoice,
    InvoiceEvent,
    Promise,
    ReminderDrop,
    ReminderItem,
    ReminderMessage,
    ReminderStep,
    SyncRun,
)
from arbook.services.reminders import chosen_load, reminders_choose, reminders_run, reminders_send, reminders_tick
from arbook.services.sync import invoices_sync
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db(transaction=True)
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
DAY = dt.date(2026, 11, 1)  # the pinned sandbox's anchor day


class Inbox:
    """What the SMTP server received (aiosmtpd handler)."""

    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.original_content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


@pytest.fixture
def synced(make_credential):
    merchant = MerchantFactory(name="Toko Sejahtera")
    credential = make_credential("xendit", merchant=merchant)
    assert invoices_sync(credential=credential, full=True).status == "succeeded"
    ReminderStep.objects.create(merchant=merchant, offset_days=7, name="Overdue",
                                subject="{{ merchant.name }}: {{ invoices|length }} overdue invoice{{ invoices|pluralize }}",
                                body="Dear {{ customer.name }},\n{% for i in invoices %}{{ i.number }} "
                                     "{{ i.outstanding|money:i.currency }} pay: {{ i.ways|join:', ' }}\n{% endfor %}")
    return merchant, credential


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=JKT)


def test_a_run_mails_each_customer_once_per_step_with_how_to_pay(synced, smtp, clock):
    merchant, credential = synced
    clock.move_to(at(DAY))
    choice = reminders_choose(merchant=merchant, day=DAY)
    assert choice.chosen, "the sandbox has invoices a week or more overdue"
    expected = {c.customer_id: set(c.invoice_ids) for c in choice.chosen}
    result = reminders_run(merchant=merchant, day=DAY)
    assert result["sent"] == len(expected) == len(smtp.messages)
    assert ReminderMessage.objects.filter(state="sent").count() == len(expected)
    for message in ReminderMessage.objects.prefetch_related("items"):
        assert {i.invoice_id for i in message.items.all()} == expected[message.customer_id]
    mail = smtp.messages[0]
    sent = ReminderMessage.objects.get(pk=int(mail["X-Arbook-Reminder"]))
    text = mail.get_payload(decode=True).decode()
    assert mail["To"] == sent.to and mail["Subject"].startswith("Toko Sejahtera: ")
    first = Invoice.objects.get(pk=sent.items.first().invoice_id)
    assert first.number in text and first.checkout_url and first.checkout_url in text
    # The next day, nothing is chosen again for the same step.
    clock.move_to(at(DAY + dt.timedelta(days=1)))
    assert not any(set(c.customer_id for c in reminders_choose(merchant=merchant, day=DAY + dt.timedelta(days=1)).chosen)
                   & {pk for pk, ids in expected.items() if ids})
    assert reminders_run(merchant=merchant, day=DAY)["written"] == 0
    assert len(smtp.messages) == len(expected)


def test_an_invoice_paid_at_the_gateway_since_the_last_sync_is_dropped_and_stored_paid(synced, smtp, clock, sandbox):
    merchant, credential = synced
    clock.move_to(at(DAY))
    chosen = chosen_load(reminders_choose(merchant=merchant, day=DAY).chosen)
    target = next(c for c in chosen if len(c.invoices) == 1)
    invoice = target.invoices[0]
    sandbox.sandbox.providers["xendit"].mutate(invoice.external_id, {"status": "paid", "outstanding": "0"})

    reminders_run(merchant=merchant, day=DAY)
    assert not ReminderMessage.objects.filter(customer=target.customer).exists()
    drop = ReminderDrop.objects.get(invoice=invoice)
    assert drop.reason == "settled" and "paid" in drop.detail
    invoice.refresh_from_db()
    assert invoice.status == "paid"  # the store learnt it through the write path
    event = InvoiceEvent.objects.get(invoice=invoice)
    assert event.sync_run.trigger == SyncRun.Trigger.REMINDER and event.status_after == "paid"
    assert len(smtp.messages) == ReminderMessage.objects.filter(state="sent").count()


def test_held_promised_and_opted_out_customers_get_nothing(synced, smtp, clock, user):
    merchant, _ = synced
    clock.move_to(at(DAY))
    chosen = chosen_load(reminders_choose(merchant=merchant, day=DAY).chosen)
    assert len(chosen) >= 4
    held, promised, opted_out, one_held = (c.customer for c in chosen[:4])
    reason = HoldReason.objects.create(merchant=merchant, label="Amount disputed")
    Hold.objects.create(merchant=merchant, customer=held, reason=reason)
    invoice = chosen[3].invoices[0]
    Hold.objects.create(merchant=merchant, customer=one_held, invoice=invoice, reason=reason)
    Promise.objects.create(merchant=merchant, customer=promised, amount=Decimal(1), currency=chosen[1].invoices[0].currency,
                           promised_for=DAY + dt.timedelta(days=3), deadline=at(DAY + dt.timedelta(days=4), 0))
    Customer.objects.filter(pk=opted_out.pk).update(reminders_opt_out=True)

    reminders_run(merchant=merchant, day=DAY)
    mailed = set(ReminderMessage.objects.values_list("customer_id", flat=True))
    assert not mailed & {held.pk, promised.pk, opted_out.pk}
    assert invoice.pk not in set(ReminderItem.objects.values_list("invoice_id", flat=True))
    reasons = dict(ReminderDrop.objects.values_list("customer_id", "reason"))
    assert (reasons[held.pk], reasons[promised.pk], reasons[opted_out.pk]) == ("held", "promised", "opted_out")
    assert ReminderDrop.objects.get(invoice=invoice).reason == "held"


def test_a_gateway_that_cannot_be_reached_means_no_reminder_this_run(synced, smtp, clock, sandbox):
    merchant, _ = synced
    clock.move_to(at(DAY))
    requests.post(sandbox.url + "/_sandbox/faults", json={"provider": "xendit", "kind": "503", "times": 10_000},
                  timeout=10)
    try:
        reminders_run(merchant=merchant, day=DAY)
    finally:
        requests.delete(sandbox.url + "/_sandbox/faults", timeout=10)
    assert not ReminderMessage.objects.exists() and not smtp.messages
    reasons = set(ReminderDrop.objects.values_list("reason", flat=True))
    assert "unreachable" in reasons and reasons <= {"unreachable", "no_email"}  # some have no address
    # Not chased on stale data, and not given up either: the next run tries again.
    assert reminders_run(merchant=merchant, day=DAY)["sent"] > 0


def test_a_crash_after_the_outbox_row_leaves_it_unknown_and_nothing_is_sent_twice(synced, smtp, clock, monkeypatch):
    merchant, _ = synced
    clock.move_to(at(DAY))
    from django.core.mail.backends.smtp import EmailBackend

    real = EmailBackend.send_messages
    calls = []

    def crash(self, messages):
        calls.append(messages)
        if len(calls) == 2:
            raise SystemExit("worker killed while SMTP had the message")
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", crash)
    with pytest.raises(SystemExit):
        reminders_run(merchant=merchant, day=DAY)
    states = sorted(ReminderMessage.objects.values_list("state", flat=True))
    assert states.count("unknown") == 1 and states.count("sent") == 1 and set(states) <= {"sent", "unknown", "queued"}
    monkeypatch.setattr(EmailBackend, "send_messages", real)
    reminders_send(merchant=merchant)
    assert ReminderMessage.objects.filter(state="unknown").count() == 1  # never resent by itself
    assert ReminderMessage.objects.filter(state="sent").count() == len(smtp.messages) == ReminderMessage.objects.count() - 1
    numbers = [m["X-Arbook-Reminder"] for m in smtp.messages]
    assert len(numbers) == len(set(numbers))


def test_a_refused_smtp_connection_is_retried_on_the_same_row(synced, clock, settings):
    merchant, _ = synced
    clock.move_to(at(DAY))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    reminders_run(merchant=merchant, day=DAY)
    queued = list(ReminderMessage.objects.values_list("pk", "state", "attempts"))
    assert queued and all(state == "queued" and attempts == 1 for _, state, attempts in queued)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=settings.EMAIL_PORT)
    controller.start()
    try:
        clock.move_to(at(DAY, 10))
        reminders_tick()  # the run of the day is done; the tick retries what SMTP refused
    finally:
        controller.stop()
    assert sorted(ReminderMessage.objects.values_list("pk", "state")) == [(pk, "sent") for pk, _, _ in sorted(queued)]
    assert len(inbox.messages) == len(queued)
