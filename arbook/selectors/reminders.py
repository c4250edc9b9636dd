"""`/reminders/`: what goes out today (a dry run: the choice without re-check or writes), what went
out, what was left out and why, and a step's preview with a real customer's invoices."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from arbook.models import Customer, Invoice, Merchant, ReminderDrop, ReminderMessage, ReminderStep
from arbook.services.reminders import Choice, chosen_load, merchant_day, render_reminder, reminders_choose

#: The dry run shows this many e-mails per merchant (the count is of all of them).
SHOWN = 50
RECENT_DAYS = 14
RECENT_LIMIT = 200


@dataclass
class Planned:
    customer: Customer
    step: ReminderStep
    to: str
    subject: str
    invoices: list


@dataclass
class MerchantPlan:
    merchant: Merchant
    day: dt.date
    ran: bool
    emails: int
    planned: list[Planned] = field(default_factory=list)
    dropped: list[tuple] = field(default_factory=list)
    steps: list[ReminderStep] = field(default_factory=list)


def reminders_plan(*, merchants: list[Merchant], now: dt.datetime | None = None) -> list[MerchantPlan]:
    """Per merchant with a sequence, what its run of today sends (or sent): the dry run."""
    now = now or timezone.now()
    plans = []
    for merchant in merchants:
        steps = list(ReminderStep.objects.filter(merchant=merchant).order_by("offset_days"))
        if not steps:
            continue
        day = merchant_day(merchant, now)
        choice: Choice = reminders_choose(merchant=merchant, day=day, now=now)
        planned = []
        for chosen in chosen_load(choice.chosen[:SHOWN]):
            subject, _ = render_reminder(step=chosen.step, customer=chosen.customer, invoices=chosen.invoices, day=day)
            planned.append(Planned(chosen.customer, chosen.step, chosen.to, subject, chosen.invoices))
        plans.append(MerchantPlan(merchant=merchant, day=day, ran=merchant.reminders_run_on == day,
                                  emails=len(choice.chosen), planned=planned, dropped=_dropped(choice.dropped[:SHOWN]),
                                  steps=steps))
    return plans


def _dropped(dropped: list[tuple]) -> list[tuple]:
    """(customer, invoice, step, reason, detail) of a choice's drops, with the objects (two queries)."""
    customers = Customer.objects.in_bulk({d[0] for d in dropped})
    invoices = Invoice.objects.defer("raw").in_bulk({d[1] for d in dropped})
    return [(customers[c], invoices[i], step, reason, detail) for c, i, step, reason, detail in dropped
            if c in customers and i in invoices]


def recent_messages(*, merchant_ids: list[int], now: dt.datetime | None = None) -> list[ReminderMessage]:
    since = (now or timezone.now()) - dt.timedelta(days=RECENT_DAYS)
    return list(ReminderMessage.objects.filter(merchant_id__in=merchant_ids, created_at__gte=since)
                .select_related("customer", "step", "merchant").prefetch_related("items__invoice")
                .order_by("-created_at", "-pk")[:RECENT_LIMIT])


def recent_drops(*, merchant_ids: list[int], now: dt.datetime | None = None) -> list[ReminderDrop]:
    since = ((now or timezone.now()) - dt.timedelta(days=RECENT_DAYS)).date()
    return list(ReminderDrop.objects.filter(merchant_id__in=merchant_ids, day__gte=since)
                .select_related("customer", "invoice", "step").order_by("-at", "-pk")[:RECENT_LIMIT])


def step_preview(*, step: ReminderStep, now: dt.datetime | None = None) -> tuple[Customer, str, str] | None:
    """The step rendered for a real customer: one its run of today would mail at this step, else
    any customer of the merchant with an owed invoice (None when there is none)."""
    day = merchant_day(step.merchant, now)
    for chosen in reminders_choose(merchant=step.merchant, day=day, now=now).chosen:
        if chosen.step.pk == step.pk:
            chosen_load([chosen])
            return (chosen.customer, *render_reminder(step=step, customer=chosen.customer, invoices=chosen.invoices,
                                                      day=day))
    customer = Customer.objects.filter(merchant=step.merchant, open_count__gt=0).order_by("pk").first()
    if customer is None:
        return None
    invoices = list(customer.invoices.filter(outstanding__gt=0).order_by("due_at", "pk")[:10])
    return (customer, *render_reminder(step=step, customer=customer, invoices=invoices, day=day))


def customer_reminders(*, customer: Customer, limit: int = 50) -> list[ReminderMessage]:
    return list(ReminderMessage.objects.filter(customer=customer).select_related("step")
                .prefetch_related("items__invoice").order_by("-created_at", "-pk")[:limit])


def invoice_reminders(*, invoice, limit: int = 50) -> list[ReminderMessage]:
    return list(ReminderMessage.objects.filter(items__invoice=invoice).select_related("step")
                .order_by("-created_at", "-pk")[:limit])
