"""The reminders page (dry run, what went out, what was left out, a step's preview), a customer's
reminder settings, and reminders on the customer's timeline and the invoice's page.

Espay invoices, uploaded and sent to the gateway sandbox: every reminder is re-checked with
Espay's Check Payment Status there (the re-check's drops are tested in tests/sync/test_reminders.py
and tests/notifications/test_reminder_espay.py). Django's in-memory mail backend stands in for
SMTP; the real SMTP server (aiosmtpd) is in tests/sync/test_reminders.py."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from arbook.models import AuditEntry, Customer, CustomerIdentity, ReminderDrop, ReminderMessage, ReminderStep
from arbook.services.customers import customers_refresh
from arbook.exports.statements import statement_attachment
from arbook.services.reminders import DEFAULT_STEPS, check_templates, reminder_steps_default, reminders_run
from arbook.models import Invoice
from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send
from tests.espay.helpers import csv_bytes, row
from tests.factories import MerchantFactory, UserFactory
from tests.notifications.conftest import make_credential, sandbox  # noqa: F401 (the sandbox fixture)

pytestmark = pytest.mark.django_db
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=JKT)


@pytest.fixture(autouse=True)
def clock(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def espay(sandbox):
    """Per merchant, an Espay credential on the sandbox (every reminder is re-checked at its gateway)."""
    sandbox.sandbox.reset()  # the session's sandbox forgets the orders of earlier tests
    made = {}

    def credential(merchant):
        if merchant.pk not in made:
            made[merchant.pk] = make_credential(merchant, sandbox, "espay")
        return made[merchant.pk]

    return credential


def customer_owing(espay, merchant, name: str, email: str = "", days: int = 10) -> tuple[Customer, object]:
    """A customer owing one Espay invoice, uploaded and sent to the sandbox (it stays unpaid
    there), `days` overdue."""
    user = UserFactory()
    batch = espay_batch_create(credential=espay(merchant), user=user, file_name="b.csv",
                               content=csv_bytes([row(f"{name}-1", member_code=name, amount="250000")]))
    assert espay_batch_confirm(batch=batch, user=user).ok
    espay_batch_send(batch=batch)
    invoice = Invoice.objects.get(external_id=f"{name}-1", merchant=merchant)
    Invoice.objects.filter(pk=invoice.pk).update(due_at=NOW - dt.timedelta(days=days), number=f"{name}-1")
    Customer.objects.filter(pk=invoice.customer_id).update(name=name)
    customer = Customer.objects.get(pk=invoice.customer_id)
    if email:
        CustomerIdentity.objects.filter(customer=customer, kind="email").delete()
        CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value=email.lower(),
                                        shown=email)
    invoice.refresh_from_db()
    customers_refresh(customer_ids=[customer.pk])
    return customer, invoice


def step(merchant, **fields) -> ReminderStep:
    return ReminderStep.objects.create(merchant=merchant, **{
        "offset_days": 7, "name": "Overdue", "subject": "{{ invoices|length }} invoice(s) overdue",
        "body": "Dear {{ customer.name }}:{% for i in invoices %} {{ i.number }} {{ i.outstanding|money:i.currency }}"
                "{% endfor %}; total{% for currency, amount in totals %} {{ amount|money:currency }}{% endfor %}",
        **fields})


def test_the_page_shows_the_dry_run_what_went_out_and_what_was_left_out(espay, client, merchant, user):
    s = step(merchant)
    budi, invoice = customer_owing(espay, merchant, "Budi", "Budi@Example.id")
    customer_owing(espay, merchant, "Sari")  # no e-mail address
    client.force_login(user)
    html = client.get(reverse("reminders")).content.decode()
    assert "1 e-mail would go out now" in html and "Budi@Example.id" in html and "1 invoice(s) overdue" in html
    assert "(no_email)" in html
    assert not ReminderMessage.objects.exists()  # a dry run writes nothing

    reminders_run(merchant=merchant)
    assert [m.to[0] for m in mail.outbox] == ["Budi@Example.id"]
    assert mail.outbox[0].body == "Dear Budi: Budi-1 Rp 250.000; total Rp 250.000"
    html = client.get(reverse("reminders")).content.decode()
    assert "0 e-mails would go out now" in html and 'data-testid="sent-message"' in html
    assert "No e-mail address for the customer" in html
    # On the customer's timeline and the invoice's page, with the text that went out.
    page = client.get(reverse("customer_detail", args=[budi.pk])).content.decode()
    assert "<strong>Reminder</strong> to Budi@Example.id" in page and "Dear Budi: Budi-1" in page
    assert "Dear Budi: Budi-1" in client.get(reverse("invoice_detail", args=[invoice.pk])).content.decode()
    preview = client.get(reverse("reminders"), {"preview": s.pk}).content.decode()
    assert 'data-testid="preview"' in preview and "Dear " in preview


def test_another_merchants_step_and_bad_parameters(espay, client, merchant, user):
    theirs = step(MerchantFactory())
    client.force_login(user)
    assert client.get(reverse("reminders"), {"preview": theirs.pk}).status_code == 404
    for bad in ("x", "-1", "99999999999999999999999"):
        assert client.get(reverse("reminders"), {"preview": bad}).status_code == 200
    assert client.post(reverse("reminders")).status_code == 405


def test_staff_stop_a_customers_reminders_or_send_them_elsewhere(espay, client, merchant, user):
    step(merchant)
    budi, _ = customer_owing(espay, merchant, "Budi", "budi@example.id")
    client.force_login(user)
    url = reverse("reminder_settings", args=[budi.pk])
    assert client.post(url, {"email": "not an address"}, follow=True).content.decode().count("valid e-mail") == 1
    assert client.post(url, {"email": "ap@budi.id"}).status_code == 302
    reminders_run(merchant=merchant)
    assert [m.to[0] for m in mail.outbox] == ["ap@budi.id"]
    assert client.post(url, {"opt_out": "on", "email": "ap@budi.id"}).status_code == 302
    budi.refresh_from_db()
    assert budi.reminders_opt_out
    assert list(AuditEntry.objects.filter(customer=budi).values_list("action", flat=True)) == ["reminders_set"] * 2
    other, _ = customer_owing(espay, MerchantFactory(), "Eko", "eko@example.id")
    assert client.post(reverse("reminder_settings", args=[other.pk]), {"opt_out": "on"}).status_code == 404


def test_steps_choose_the_latest_step_reached_and_a_step_never_repeats(espay, merchant, user):
    step(merchant, offset_days=-3, name="Soon due", subject="Due soon", body="{{ invoices|length }}")
    step(merchant, offset_days=7, name="Overdue", subject="Overdue", body="{{ invoices|length }}")
    _, soon = customer_owing(espay, merchant, "Ani", "ani@example.id", days=-2)  # due in 2 days: the -3 step
    _, late = customer_owing(espay, merchant, "Budi", "budi@example.id", days=30)  # past +7: that step only
    _, between = customer_owing(espay, merchant, "Cici", "cici@example.id", days=3)  # past -3, before +7
    reminders_run(merchant=merchant)
    assert sorted((m.to[0], m.subject) for m in mail.outbox) == [
        ("ani@example.id", "Due soon"), ("budi@example.id", "Overdue"), ("cici@example.id", "Due soon")]
    mail.outbox.clear()
    reminders_run(merchant=merchant, day=NOW.date() + dt.timedelta(days=1))
    assert mail.outbox == []  # each (invoice, step) once
    with time_machine.travel(NOW + dt.timedelta(days=5), tick=False):
        reminders_run(merchant=merchant)  # Cici's invoice is 8 days overdue now: the +7 step
    assert [(m.to[0], m.subject) for m in mail.outbox] == [("cici@example.id", "Overdue")]
    steps = dict(ReminderMessage.objects.filter(items__invoice__in=[soon, late, between])
                 .values_list("items__invoice_id", "step__name").order_by("items__invoice_id", "step__offset_days")
                 .distinct())
    assert steps == {soon.pk: "Soon due", late.pk: "Overdue", between.pk: "Overdue"}


def test_the_default_sequence_compiles_and_renders_with_ways_to_pay(espay, merchant):
    assert reminder_steps_default(merchant=merchant) == len(DEFAULT_STEPS)
    assert reminder_steps_default(merchant=merchant) == 0
    for _, _, subject, body, _ in DEFAULT_STEPS:
        check_templates(subject=subject, body=body)
    with pytest.raises(ValueError):
        check_templates(subject="{% if %}", body="")
    customer, invoice = customer_owing(espay, merchant, "Budi", "budi@example.id", days=8)
    invoice.checkout_url = "https://checkout.example/inv-1"
    invoice.save(update_fields=["checkout_url"])
    reminders_run(merchant=merchant)
    (message,) = mail.outbox
    assert message.subject == f"{merchant.name}: 1 overdue invoice"
    assert "- Budi-1, due 25 Oct 2026: Rp 250.000\n    pay: https://checkout.example/inv-1" in message.body


def test_a_step_that_says_so_attaches_the_statement_pdf(espay, merchant):
    step(merchant, attach_statement=True)
    customer_owing(espay, merchant, "Budi", "budi@example.id")
    reminders_run(merchant=merchant, statement=statement_attachment)
    ((name, content, mimetype),) = mail.outbox[0].attachments
    assert (name, mimetype) == ("statement-2026-11-02.pdf", "application/pdf") and content.startswith(b"%PDF")


def test_the_scheduler_runs_each_merchants_day_once_from_eight_and_not_while_another_tick_runs_it(espay, merchant):
    from django.core.cache import cache

    from arbook.services.reminders import reminders_tick

    step(merchant)
    customer_owing(espay, merchant, "Budi", "budi@example.id")
    with time_machine.travel(NOW.replace(hour=7, minute=59), tick=False):
        assert reminders_tick() == {}  # before 08:00 in Jakarta
    lock = f"arbook:reminders-run:{merchant.pk}:{NOW.date().isoformat()}"
    cache.add(lock, "1")  # another scheduler is running this merchant's day
    try:
        assert reminders_tick() == {} and mail.outbox == []
    finally:
        cache.delete(lock)
    assert reminders_tick()[merchant.pk]["sent"] == 1
    assert reminders_tick() == {}  # the day is done
    assert len(mail.outbox) == 1


def test_an_invoice_whose_payment_is_processing_is_not_chased(espay, merchant):
    step(merchant)
    _, invoice = customer_owing(espay, merchant, "Budi", "budi@example.id")
    Invoice.objects.filter(pk=invoice.pk).update(status="processing")
    assert reminders_run(merchant=merchant)["written"] == 0 and mail.outbox == []


def test_a_hold_recorded_while_the_run_is_under_way_still_stops_the_reminder(espay, merchant, user, monkeypatch):
    from arbook.services import reminders as service
    from arbook.services.collections import hold_open

    step(merchant)
    budi, _ = customer_owing(espay, merchant, "Budi", "budi@example.id")
    real = service._recheck

    def recheck_then_a_collector_holds(part, now):
        real(part, now)  # the gateway's answer, then a collector's hold before the batch is written
        hold_open(customer=budi, user=user, reason="Amount disputed")

    monkeypatch.setattr(service, "_recheck", recheck_then_a_collector_holds)
    assert reminders_run(merchant=merchant)["written"] == 0 and mail.outbox == []
    assert list(ReminderDrop.objects.values_list("reason", "detail")) == [("held", "since the day's choice")]
