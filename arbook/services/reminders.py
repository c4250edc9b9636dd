"""Reminders: choose what each customer is reminded of today, re-check it at its gateway, write
the outbox, and hand the messages to SMTP exactly once.

A run for a merchant and a day (its own zone):
1. **choose** (`reminders_choose`): per active step, the owed invoices whose due date is at least
   the step's offset ago and not yet the next step's, never reminded at that step; grouped per
   customer. Left out, with the reason recorded (`ReminderDrop`): invoices on hold, under an open
   promise, of a customer who opted out or has no e-mail address.
2. **re-check** (`_recheck`): each chosen invoice is read again from its gateway where the
   gateway can look one up, and written through the one write path (`invoices_write`, in a
   `SyncRun` with trigger "reminder"). An invoice then found settled (paid, processing,
   cancelled, ...) or changed in any way since it was chosen is dropped; one whose gateway cannot
   be reached is dropped too: never chased on stale data.
3. **write** one `ReminderMessage` per customer and step, rendered from the step's templates,
   with a `ReminderItem` per invoice (unique per invoice and step: at most one reminder per step,
   ever), committed before anything is sent.
4. **send** (`reminders_send`): each queued message is marked "unknown" and committed, then
   handed to SMTP, then marked "sent". A crash in between leaves it "unknown": it is never resent
   by itself (staff see it on /reminders/). A refused connection leaves it queued, retried by the
   next run (same row).
"""
from __future__ import annotations

import datetime as dt
import logging
import smtplib
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import make_msgid
from django.db import transaction
from django.db.models import Q
from django.template import Context, Engine, TemplateSyntaxError
from django.utils import timezone

import gateways
from arbook.models import (
    AuditEntry,
    Customer,
    CustomerIdentity,
    Hold,
    Invoice,
    Merchant,
    Promise,
    ReminderDrop,
    ReminderItem,
    ReminderMessage,
    ReminderStep,
    SyncRun,
)
from arbook.models.espay import ways_to_pay
from arbook.services.credentials import credential_client
from arbook.services.invoice_write import customers_settle, invoices_write
from gateways import InvoiceRef, Page
from gateways import status as st

logger = logging.getLogger(__name__)
Reason = ReminderDrop.Reason
State = ReminderMessage.State
#: A run goes out at the first scheduler tick after this hour, the merchant's time.
SEND_HOUR = 8
#: A message whose connection SMTP refused this many times is given up ("failed").
MAX_ATTEMPTS = 5
#: Invoice states that end the chase: a reminder never goes out for one of these.
SETTLED = frozenset(st.ALL) - frozenset(st.RECEIVABLE)
ENGINE = Engine(libraries={"money": "arbook.templatetags.money"}, autoescape=False)


@dataclass
class Chosen:
    """One customer's invoices at one step (what one e-mail will list)."""

    customer: Customer
    step: ReminderStep
    invoices: list[Invoice]
    to: str = ""


@dataclass
class Choice:
    """A day's choice for a merchant: the e-mails to write and the invoices left out."""

    merchant: Merchant
    day: dt.date
    chosen: list[Chosen] = field(default_factory=list)
    #: (customer, invoice, step, reason, detail)
    dropped: list[tuple[Customer, Invoice, ReminderStep, str, str]] = field(default_factory=list)


def _zone(merchant: Merchant) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(merchant.timezone or "Asia/Jakarta")


def _day_start(day: dt.date, zone) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def merchant_day(merchant: Merchant, now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(_zone(merchant)).date()


def customer_email(customer: Customer) -> str:
    """Where its reminders go: the address staff set, else its first e-mail identity."""
    if customer.reminder_email:
        return customer.reminder_email
    identity = (CustomerIdentity.objects.filter(customer=customer, kind=CustomerIdentity.Kind.EMAIL)
                .order_by("created_at", "pk").values_list("shown", "value").first())
    return (identity[0] or identity[1]) if identity else ""


_LIST = ("{% for i in invoices %}- {{ i.number|default:i.external_id }}, due {{ i.due_at|date:'j M Y' }}: "
         "{{ i.outstanding|money:i.currency }}{% for way in i.ways %}\n    pay: {{ way }}{% endfor %}\n{% endfor %}")
#: A sequence a merchant can start from (the demo data has it; staff edit it in the admin).
DEFAULT_STEPS = (
    (-3, "Due soon", "{{ merchant.name }}: {{ invoices|length }} invoice{{ invoices|pluralize }} due soon",
     "Dear {{ customer.name|default:'customer' }},\n\nA friendly reminder that these invoices fall due soon:\n"
     + _LIST + "\nThank you,\n{{ merchant.name }}", False),
    (7, "Overdue", "{{ merchant.name }}: {{ invoices|length }} overdue invoice{{ invoices|pluralize }}",
     "Dear {{ customer.name|default:'customer' }},\n\nOur records show these invoices unpaid a week after their due "
     "date:\n" + _LIST + "\nIf you have paid already, please ignore this message.\n\n{{ merchant.name }}", False),
    (30, "Final notice", "{{ merchant.name }}: final notice for {{ invoices|length }} invoice{{ invoices|pluralize }}",
     "Dear {{ customer.name|default:'customer' }},\n\nThese invoices are a month overdue:\n" + _LIST
     + "\nYour statement is attached. Please pay or contact us within 7 days.\n\n{{ merchant.name }}", True),
)


def reminder_steps_default(*, merchant: Merchant) -> int:
    """Give a merchant without any step the default sequence (-3, +7, +30 days); returns how many."""
    if ReminderStep.objects.filter(merchant=merchant).exists():
        return 0
    ReminderStep.objects.bulk_create([
        ReminderStep(merchant=merchant, offset_days=offset, name=name, subject=subject, body=body,
                     attach_statement=attach) for offset, name, subject, body, attach in DEFAULT_STEPS])
    return len(DEFAULT_STEPS)


@transaction.atomic
def customer_reminders_set(*, customer: Customer, user, opt_out: bool, email: str) -> Customer:
    """Staff's choice for the customer: no reminders at all, and/or the address they go to."""
    email = (email or "").strip()
    before = {"opt_out": customer.reminders_opt_out, "email": customer.reminder_email}
    after = {"opt_out": bool(opt_out), "email": email}
    if before == after:
        return customer
    customer.reminders_opt_out, customer.reminder_email = after["opt_out"], email
    customer.save(update_fields=["reminders_opt_out", "reminder_email"])
    AuditEntry.objects.create(user=user, merchant_id=customer.merchant_id, action=AuditEntry.Action.REMINDERS_SET,
                              target=f"customer:{customer.pk}", customer_id=customer.pk, data={"before": before,
                                                                                                "after": after},
                              summary=(f"Reminders {'stopped' if opt_out else 'on'} for {customer}"
                                       + (f", to {email}" if email else ""))[:255])
    return customer


def reminders_choose(*, merchant: Merchant, day: dt.date, now: dt.datetime | None = None) -> Choice:
    """What the run of `day` would send for `merchant` (reads only: the dry run shows it as is)."""
    now = now or timezone.now()
    zone = _zone(merchant)
    choice = Choice(merchant=merchant, day=day)
    steps = list(ReminderStep.objects.filter(merchant=merchant, is_active=True).order_by("offset_days"))
    if not steps:
        return choice
    holds = Hold.objects.filter(Q(released_at__isnull=True) & (Q(ends_at__isnull=True) | Q(ends_at__gt=now)),
                                merchant=merchant)
    held_invoices = set(holds.filter(invoice__isnull=False).values_list("invoice_id", flat=True))
    held_customers = set(holds.filter(invoice__isnull=True).values_list("customer_id", flat=True))
    promised_invoices: set[int] = set()
    promised: set[tuple[int, str]] = set()
    for promise in Promise.objects.filter(merchant=merchant, state=Promise.State.OPEN).prefetch_related("invoices"):
        chosen = [i.pk for i in promise.invoices.all()]
        if chosen:
            promised_invoices.update(chosen)
        else:
            promised.add((promise.customer_id, promise.currency))
    groups: dict[tuple[int, int], list[Invoice]] = defaultdict(list)
    customers: dict[int, Customer] = {}
    for k, step in enumerate(steps):
        # Due on or before day - offset, and (when there is a next step) after day - next offset.
        q = Q(due_at__lt=_day_start(day - dt.timedelta(days=step.offset_days - 1), zone))
        if k + 1 < len(steps):
            q &= Q(due_at__gte=_day_start(day - dt.timedelta(days=steps[k + 1].offset_days - 1), zone))
        invoices = (Invoice.objects.filter(q, merchant=merchant, status__in=st.RECEIVABLE, customer__isnull=False)
                    .filter(Q(outstanding__gt=0) | Q(outstanding__isnull=True, amount__gt=0))
                    .exclude(reminder_items__step=step).select_related("customer", "credential")
                    .order_by("customer_id", "due_at", "pk"))
        for invoice in invoices:
            customers.setdefault(invoice.customer_id, invoice.customer)
            groups[(invoice.customer_id, k)].append(invoice)
    emails: dict[int, str] = {}
    for (customer_id, k), invoices in sorted(groups.items()):
        customer, step = customers[customer_id], steps[k]
        kept = []
        for invoice in invoices:
            reason = None
            if customer.reminders_opt_out:
                reason = Reason.OPTED_OUT
            elif invoice.pk in held_invoices or customer_id in held_customers:
                reason = Reason.HELD
            elif invoice.pk in promised_invoices or (customer_id, invoice.currency) in promised:
                reason = Reason.PROMISED
            if reason:
                choice.dropped.append((customer, invoice, step, reason, ""))
            else:
                kept.append(invoice)
        if not kept:
            continue
        if customer_id not in emails:
            emails[customer_id] = customer_email(customer)
        if not emails[customer_id]:
            choice.dropped.extend((customer, i, step, Reason.NO_EMAIL, "") for i in kept)
            continue
        choice.chosen.append(Chosen(customer=customer, step=step, invoices=kept, to=emails[customer_id]))
    return choice


def _state(invoice: Invoice) -> tuple:
    return (invoice.status, invoice.outstanding, invoice.paid_at)


def _recheck(choice: Choice, now: dt.datetime) -> None:
    """Read every chosen invoice again at its gateway (where it can be looked up), write what it
    says through the write path, and drop what is settled, changed, or could not be checked."""
    by_credential: dict[int, list[Invoice]] = defaultdict(list)
    for chosen in choice.chosen:
        for invoice in chosen.invoices:
            by_credential[invoice.credential_id].append(invoice)
    unreachable: dict[int, str] = {}
    for invoices in by_credential.values():
        credential = invoices[0].credential
        if not gateways.client_class(credential.provider).can_lookup:
            continue  # Espay: no lookup in its documents; its payment reports keep the store current
        try:
            client = credential_client(credential=credential)
        except Exception as exc:  # noqa: BLE001 (no secrets, a bad configuration: nothing can be checked)
            unreachable.update({i.pk: f"{credential}: {type(exc).__name__}" for i in invoices})
            continue
        run = SyncRun.objects.create(credential=credential, trigger=SyncRun.Trigger.REMINDER, started_at=now)
        found = []
        for invoice in invoices:
            ref = InvoiceRef(external_id=invoice.external_id, status=invoice.status, issued_at=invoice.issued_at,
                             due_at=invoice.due_at, customer_ref=invoice.customer_ref)
            try:
                remote = client.lookup(ref)
            except gateways.GatewayError as exc:
                unreachable[invoice.pk] = str(exc)[:200] or type(exc).__name__
                continue
            run.lookups += 1
            if remote is None or remote.external_id != invoice.external_id:
                unreachable[invoice.pk] = "the gateway no longer knows this invoice"
            else:
                found.append(remote)
        with transaction.atomic():
            if found:
                counts = invoices_write(credential=credential, pages=[Page(invoices=found)], run=run, seen_at=now)
                run.fetched, run.updated, run.unchanged = counts.fetched, counts.updated, counts.unchanged
                if counts.customers:
                    customers_settle(customer_ids=counts.customers, credential=credential)
            run.status, run.finished_at = SyncRun.Status.SUCCEEDED, timezone.now()
            run.save()
    fresh = Invoice.objects.in_bulk([i.pk for c in choice.chosen for i in c.invoices])
    kept_chosen = []
    for chosen in choice.chosen:
        kept = []
        for invoice in chosen.invoices:
            now_state = fresh.get(invoice.pk)
            if invoice.pk in unreachable:
                choice.dropped.append((chosen.customer, invoice, chosen.step, Reason.UNREACHABLE,
                                       unreachable[invoice.pk]))
            elif now_state is None or now_state.status in SETTLED:
                choice.dropped.append((chosen.customer, invoice, chosen.step, Reason.SETTLED,
                                       f"now {now_state.status if now_state else 'gone'}"))
            elif _state(now_state) != _state(invoice):
                choice.dropped.append((chosen.customer, invoice, chosen.step, Reason.CHANGED,
                                       f"{invoice.status} {invoice.outstanding} -> {now_state.status} "
                                       f"{now_state.outstanding}"))
            else:
                kept.append(now_state)
        if kept:
            chosen.invoices = kept
            kept_chosen.append(chosen)
    choice.chosen = kept_chosen


def render_reminder(*, step: ReminderStep, customer: Customer, invoices: list[Invoice], day: dt.date) -> tuple[str, str]:
    """(subject, body) of the step's templates for these invoices. Context: `customer`, `merchant`,
    `step`, `today`, `invoices` (each with `ways`: its checkout link, Espay VA numbers) and
    `totals` (currency, amount) pairs, never added across currencies."""
    ways = ways_to_pay(invoices)
    for invoice in invoices:
        invoice.ways = ways.get(invoice.pk, ())
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in invoices:
        totals[invoice.currency] += invoice.outstanding if invoice.outstanding is not None else (invoice.amount or 0)
    context = Context({"customer": customer, "merchant": customer.merchant, "step": step, "today": day,
                       "invoices": invoices, "totals": sorted(totals.items())})
    subject = ENGINE.from_string("{% load money %}" + step.subject).render(context)
    body = ENGINE.from_string("{% load money %}" + step.body).render(context)
    return " ".join(subject.split())[:255], body


def check_templates(*, subject: str, body: str) -> None:
    """Raise ValueError (for the admin form) when a step's template does not compile."""
    for text in (subject, body):
        try:
            ENGINE.from_string("{% load money %}" + text)
        except TemplateSyntaxError as exc:
            raise ValueError(str(exc)) from None


def _write(choice: Choice, now: dt.datetime) -> list[ReminderMessage]:
    """The outbox rows of a choice (and its drops), committed together."""
    written = []
    with transaction.atomic():
        ReminderDrop.objects.bulk_create([
            ReminderDrop(merchant=choice.merchant, customer=customer, invoice=invoice, step=step, day=choice.day,
                         reason=reason, detail=detail[:255], at=now)
            for customer, invoice, step, reason, detail in choice.dropped])
        for chosen in choice.chosen:
            subject, body = render_reminder(step=chosen.step, customer=chosen.customer, invoices=chosen.invoices,
                                            day=choice.day)
            message, created = ReminderMessage.objects.get_or_create(
                customer=chosen.customer, step=chosen.step, day=choice.day,
                defaults={"merchant": choice.merchant, "to": chosen.to, "subject": subject, "body": body,
                          "created_at": now})
            if not created:
                continue  # a run of the same day already wrote it
            ReminderItem.objects.bulk_create([
                ReminderItem(message=message, invoice=invoice, step=chosen.step, outstanding=invoice.outstanding,
                             currency=invoice.currency) for invoice in chosen.invoices])
            written.append(message)
    return written


def reminders_run(*, merchant: Merchant, day: dt.date | None = None, now: dt.datetime | None = None,
                  statement: Callable[[Customer, dt.date], tuple[str, bytes]] | None = None) -> dict:
    """Choose, re-check, write and send the merchant's reminders of `day` (default: today in its
    zone). `statement(customer, day)` gives the (file name, PDF bytes) a step attaches."""
    now = now or timezone.now()
    day = day or merchant_day(merchant, now)
    choice = reminders_choose(merchant=merchant, day=day, now=now)
    _recheck(choice, now)
    written = _write(choice, now)
    sent = reminders_send(merchant=merchant, statement=statement, now=now)
    logger.info("reminders merchant=%s day=%s written=%s dropped=%s sent=%s", merchant.pk, day, len(written),
                len(choice.dropped), sent)
    return {"written": len(written), "dropped": len(choice.dropped), "sent": sent}


def _email(message: ReminderMessage, statement) -> EmailMessage:
    email = EmailMessage(subject=message.subject, body=message.body, from_email=settings.DEFAULT_FROM_EMAIL,
                         to=[message.to], headers={"X-Arbook-Reminder": str(message.pk), "Message-ID": make_msgid()})
    if message.step.attach_statement and statement is not None:
        name, pdf = statement(message.customer, message.day)
        email.attach(name, pdf, "application/pdf")
    return email


def reminders_send(*, merchant: Merchant | None = None, statement=None, now: dt.datetime | None = None) -> int:
    """Hand the queued messages to SMTP, each exactly once; returns how many SMTP accepted.

    Each is marked "unknown" and committed before it is handed over, and "sent" once SMTP took
    it: a crash in between leaves "unknown", which no run resends. A connection SMTP refuses
    leaves the messages queued (the next run retries the same rows)."""
    queued = ReminderMessage.objects.filter(state=State.QUEUED).select_related("step", "customer", "customer__merchant")
    if merchant is not None:
        queued = queued.filter(merchant=merchant)
    queued = list(queued.order_by("pk"))
    if not queued:
        return 0
    connection = get_connection(fail_silently=False)
    try:
        connection.open()
    except (OSError, smtplib.SMTPException) as exc:
        ReminderMessage.objects.filter(pk__in=[m.pk for m in queued]).update(error=f"SMTP: {exc}"[:500])
        for message in queued:
            _attempted(message, f"could not connect to SMTP: {exc}")
        logger.warning("reminders: SMTP refused the connection: %s", exc)
        return 0
    sent = 0
    try:
        for message in queued:
            email = _email(message, statement)
            with transaction.atomic():  # committed before the hand-off
                claimed = ReminderMessage.objects.filter(pk=message.pk, state=State.QUEUED).update(
                    state=State.UNKNOWN, handed_at=timezone.now(), attempts=message.attempts + 1)
            if not claimed:
                continue  # another worker took it
            try:
                accepted = connection.send_messages([email])
            except smtplib.SMTPRecipientsRefused as exc:
                ReminderMessage.objects.filter(pk=message.pk).update(state=State.FAILED, error=str(exc)[:500])
                continue
            except (OSError, smtplib.SMTPException) as exc:
                # Handed over, no answer: it may have gone out. Left "unknown", never resent by itself.
                ReminderMessage.objects.filter(pk=message.pk).update(error=f"no answer from SMTP: {exc}"[:500])
                logger.warning("reminder id=%s outcome unknown: %s", message.pk, exc)
                break
            if accepted:
                ReminderMessage.objects.filter(pk=message.pk).update(
                    state=State.SENT, sent_at=timezone.now(), error="",
                    message_id=email.extra_headers["Message-ID"][:255])
                sent += 1
    finally:
        connection.close()
    return sent


def _attempted(message: ReminderMessage, error: str) -> None:
    attempts = message.attempts + 1
    ReminderMessage.objects.filter(pk=message.pk, state=State.QUEUED).update(
        attempts=attempts, error=error[:500], state=State.FAILED if attempts >= MAX_ATTEMPTS else State.QUEUED)


def reminders_tick(*, now: dt.datetime | None = None, statement=None) -> dict[int, dict]:
    """The scheduler's pass: each merchant whose day has reached SEND_HOUR and whose run of today
    has not happened gets its run; then what SMTP refused earlier is retried."""
    now = now or timezone.now()
    done = {}
    for merchant in reminders_due_merchants(now=now):
        day = merchant_day(merchant, now)
        done[merchant.pk] = reminders_run(merchant=merchant, day=day, now=now, statement=statement)
        reminders_mark_run(merchant=merchant, day=day)
    reminders_send(statement=statement, now=now)
    return done


def reminders_due_merchants(*, now: dt.datetime | None = None) -> list[Merchant]:
    """The merchants whose run of today has not happened and whose day has reached SEND_HOUR."""
    now = now or timezone.now()
    out = []
    for merchant in Merchant.objects.filter(reminder_steps__is_active=True).distinct().order_by("pk"):
        local = now.astimezone(_zone(merchant))
        if local.hour >= SEND_HOUR and merchant.reminders_run_on != local.date():
            out.append(merchant)
    return out


def reminders_mark_run(*, merchant: Merchant, day: dt.date) -> None:
    Merchant.objects.filter(pk=merchant.pk).update(reminders_run_on=day)
