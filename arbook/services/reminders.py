"""Reminders: choose what each customer is reminded of today, re-check it at its gateway, write
the outbox, and hand the messages to SMTP exactly once.

A run for a merchant and a day (its own zone):
1. **choose** (`reminders_choose`): per active step, the owed invoices whose due date is at least
   the step's offset ago and not yet the next step's, never reminded at that step; grouped per
   customer. Left out, with the reason recorded (`ReminderDrop`): invoices on hold, under an open
   promise, of a customer who opted out or has no e-mail address.
2. **re-check** (`_recheck`): each chosen invoice is read again from its gateway (a lookup;
   Espay: its Check Payment Status), and written through the one write path (`invoices_write`,
   `invoice_confirmed`, in a `SyncRun` with trigger "reminder"). An invoice then found settled (paid, processing,
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
import threading
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import DNS_NAME
from django.db import DatabaseError, transaction
from django.db.models import Case, F, Q, Value, When
from django.template import Context, Engine, TemplateSyntaxError
from django.utils import timezone

import gateways
from arbook.models import (
    AuditEntry,
    Customer,
    CustomerIdentity,
    GatewayCredential,
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
from arbook.services.invoice_write import customers_settle, invoice_confirmed, invoices_write
from gateways import InvoiceRef, Page
from gateways import status as st

logger = logging.getLogger(__name__)
Reason = ReminderDrop.Reason
State = ReminderMessage.State
#: A run goes out at the first scheduler tick after this hour, the merchant's time.
SEND_HOUR = 8
#: Customers re-checked, written and sent per batch of a run; messages marked per SMTP batch.
RUN_BATCH = 500
SEND_BATCH = 100
#: A merchant's run holds its lock at most this long (a run that dies frees it then).
RUN_LOCK_SECONDS = 3600
#: Gateway lookups in flight at once during the re-check.
LOOKUP_THREADS = 8
#: A message whose connection SMTP refused this many times is given up ("failed").
MAX_ATTEMPTS = 5
#: Invoice states that end the chase: a reminder never goes out for one of these.
SETTLED = (frozenset(st.ALL) - frozenset(st.RECEIVABLE)) | {st.PROCESSING}
#: The states a reminder is written for: owed, and no payment on its way.
CHASED = tuple(s for s in st.RECEIVABLE if s not in SETTLED)
ENGINE = Engine(libraries={"money": "arbook.templatetags.money"}, autoescape=False)


@dataclass
class Chosen:
    """One customer's invoices at one step (what one e-mail will list). The choice holds ids only
    (a day of 10,000 customers costs a few MB); `chosen_load` fills `customer` and `invoices` for
    the batch being worked on."""

    customer_id: int
    step: ReminderStep
    invoice_ids: list[int]
    to: str = ""
    customer: Customer | None = None
    invoices: list[Invoice] = field(default_factory=list)


@dataclass
class Choice:
    """A day's choice for a merchant: the e-mails to write and the invoices left out."""

    merchant: Merchant
    day: dt.date
    chosen: list[Chosen] = field(default_factory=list)
    #: (customer id, invoice id, step, reason, detail)
    dropped: list[tuple[int, int, ReminderStep, str, str]] = field(default_factory=list)


def chosen_load(chosen: list[Chosen]) -> list[Chosen]:
    """Fill in the customers and invoices (without their raw payloads) of these entries: three
    queries, whatever their number; each credential is one object."""
    customers = Customer.objects.in_bulk({c.customer_id for c in chosen})
    invoices = Invoice.objects.defer("raw").in_bulk([i for c in chosen for i in c.invoice_ids])
    credentials = GatewayCredential.objects.in_bulk({i.credential_id for i in invoices.values()})
    for invoice in invoices.values():
        invoice.credential = credentials[invoice.credential_id]
    for c in chosen:
        c.customer = customers.get(c.customer_id)
        c.invoices = [invoices[i] for i in c.invoice_ids if i in invoices]
    # A customer merged away (or an invoice gone) since the choice: nothing to write to it.
    return [c for c in chosen if c.customer is not None and c.invoices]


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


def customer_emails(customer_ids: list[int]) -> dict[int, str]:
    """`customer_email` of many customers in two queries."""
    out: dict[int, str] = {}
    needs = []
    for pk, email in Customer.objects.filter(pk__in=customer_ids).values_list("pk", "reminder_email"):
        if email:
            out[pk] = email
        else:
            needs.append(pk)
    if needs:
        for pk, shown, value in (CustomerIdentity.objects.filter(customer_id__in=needs, kind=CustomerIdentity.Kind.EMAIL)
                                 .order_by("customer_id", "created_at", "pk")
                                 .values_list("customer_id", "shown", "value")):
            out.setdefault(pk, shown or value)
    return out


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


def _left_out(merchant: Merchant, now: dt.datetime, customer_ids=None) -> tuple[set, set, set, set]:
    """(held invoices, customers held as a whole, invoices under an open promise, (customer,
    currency) pairs under an open promise on any of their invoices) now, for the merchant (or
    only these customers)."""
    holds = Hold.objects.filter(Hold.active_q(now), merchant=merchant)
    promises = Promise.objects.filter(merchant=merchant, state=Promise.State.OPEN)
    if customer_ids is not None:
        holds, promises = holds.filter(customer_id__in=customer_ids), promises.filter(customer_id__in=customer_ids)
    held_invoices, held_customers = set(), set()
    for invoice_id, customer_id in holds.values_list("invoice_id", "customer_id"):
        (held_invoices.add(invoice_id) if invoice_id else held_customers.add(customer_id))
    promised_invoices: set[int] = set()
    promised: set[tuple[int, str]] = set()
    for promise in promises.prefetch_related("invoices"):
        chosen = [i.pk for i in promise.invoices.all()]
        if chosen:
            promised_invoices.update(chosen)
        else:
            promised.add((promise.customer_id, promise.currency))
    return held_invoices, held_customers, promised_invoices, promised


def _still_wanted(part: Choice, now: dt.datetime) -> None:
    """Just before a batch is written, the holds, promises and opt-outs recorded since the day's
    choice (a run of thousands takes minutes) take effect too."""
    ids = [c.customer_id for c in part.chosen]
    held_invoices, held_customers, promised_invoices, promised = _left_out(part.merchant, now, ids)
    opted_out = set(Customer.objects.filter(pk__in=ids, reminders_opt_out=True).values_list("pk", flat=True))
    kept_chosen = []
    for c in part.chosen:
        kept = []
        for invoice in c.invoices:
            reason = (Reason.OPTED_OUT if c.customer_id in opted_out else
                      Reason.HELD if invoice.pk in held_invoices or c.customer_id in held_customers else
                      Reason.PROMISED if invoice.pk in promised_invoices or (c.customer_id, invoice.currency) in promised
                      else None)
            if reason:
                part.dropped.append((c.customer_id, invoice.pk, c.step, reason, "since the day's choice"))
            else:
                kept.append(invoice)
        if kept:
            c.invoices, c.invoice_ids = kept, [i.pk for i in kept]
            kept_chosen.append(c)
    part.chosen = kept_chosen


def reminders_choose(*, merchant: Merchant, day: dt.date, now: dt.datetime | None = None) -> Choice:
    """What the run of `day` would send for `merchant` (reads only: the dry run shows it as is)."""
    now = now or timezone.now()
    zone = _zone(merchant)
    choice = Choice(merchant=merchant, day=day)
    steps = list(ReminderStep.objects.filter(merchant=merchant, is_active=True).order_by("offset_days"))
    if not steps:
        return choice
    held_invoices, held_customers, promised_invoices, promised = _left_out(merchant, now)
    groups: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    for k, step in enumerate(steps):
        # Due on or before day - offset, and (when there is a next step) after day - next offset.
        q = Q(due_at__lt=_day_start(day - dt.timedelta(days=step.offset_days - 1), zone))
        if k + 1 < len(steps):
            q &= Q(due_at__gte=_day_start(day - dt.timedelta(days=steps[k + 1].offset_days - 1), zone))
        rows = (Invoice.objects.filter(q, merchant=merchant, status__in=CHASED, customer__isnull=False)
                .filter(Q(outstanding__gt=0) | Q(outstanding__isnull=True, amount__gt=0))
                .exclude(reminder_items__step=step).order_by("customer_id", "due_at", "pk")
                .values_list("customer_id", "pk", "currency"))
        for customer_id, pk, currency in rows:
            groups[(customer_id, k)].append((pk, currency))
    customer_ids = sorted({customer_id for customer_id, _ in groups})
    opted_out = set(Customer.objects.filter(pk__in=customer_ids, reminders_opt_out=True).values_list("pk", flat=True))
    emails = customer_emails([c for c in customer_ids if c not in opted_out])
    for (customer_id, k), invoices in sorted(groups.items()):
        step = steps[k]
        kept = []
        for pk, currency in invoices:
            reason = None
            if customer_id in opted_out:
                reason = Reason.OPTED_OUT
            elif pk in held_invoices or customer_id in held_customers:
                reason = Reason.HELD
            elif pk in promised_invoices or (customer_id, currency) in promised:
                reason = Reason.PROMISED
            if reason:
                choice.dropped.append((customer_id, pk, step, reason, ""))
            else:
                kept.append(pk)
        if not kept:
            continue
        if not emails.get(customer_id):
            choice.dropped.extend((customer_id, pk, step, Reason.NO_EMAIL, "") for pk in kept)
            continue
        choice.chosen.append(Chosen(customer_id=customer_id, step=step, invoice_ids=kept, to=emails[customer_id]))
    return choice


def _state(invoice: Invoice) -> tuple:
    return (invoice.status, invoice.outstanding, invoice.paid_at)


def _ask_each(credential, invoices: list[Invoice], ask: Callable) -> list[tuple[Invoice, object, str | None]]:
    """`ask(client, invoice)` for each invoice, LOOKUP_THREADS at a time (each thread its own
    client: the calls wait on the network, not on this process): (invoice, answer, error)."""
    local = threading.local()

    def one(invoice: Invoice):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = credential_client(credential=credential)
        try:
            return invoice, ask(client, invoice), None
        except gateways.GatewayError as exc:
            return invoice, None, str(exc)[:200] or type(exc).__name__

    with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
        return list(pool.map(one, invoices))


def _lookups(credential, invoices: list[Invoice]) -> tuple[list, dict[int, str], int]:
    """Look each invoice up at its gateway. Returns (found, unreachable, calls)."""
    def lookup(client, invoice: Invoice):
        return client.lookup(InvoiceRef(external_id=invoice.external_id, status=invoice.status,
                                        issued_at=invoice.issued_at, due_at=invoice.due_at,
                                        customer_ref=invoice.customer_ref))

    found, unreachable, calls = [], {}, 0
    for invoice, remote, error in _ask_each(credential, invoices, lookup):
        if error is not None:
            unreachable[invoice.pk] = error
            continue
        calls += 1
        if remote is None or remote.external_id != invoice.external_id:
            unreachable[invoice.pk] = "the gateway no longer knows this invoice"
        else:
            found.append(remote)
    return found, unreachable, calls


def _status_checks(credential, invoices: list[Invoice], run: SyncRun, now: dt.datetime) -> dict[int, str]:
    """Espay: ask its Check Payment Status for each invoice and write the answers through the write
    path (`invoice_confirmed`). Returns the invoices it could not check, with why."""
    unreachable: dict[int, str] = {}
    answers = _ask_each(credential, invoices,
                        lambda client, invoice: client.check_status(invoice.external_id, rq_uuid=uuid.uuid4().hex))
    for invoice, status, error in answers:
        run.lookups += error is None
        if error is not None or status is None:
            unreachable[invoice.pk] = error or "Espay does not know this order"
            continue
        if (status.paid_amount or 0) <= 0 and status.status not in (st.EXPIRED, st.CANCELLED):
            continue  # waiting for its payment ("IP", "WC"): still owed as stored
        invoice_confirmed(invoice=invoice, run=run, status=status.status, provider_status=status.tx_status,
                          amount=status.amount, paid_amount=status.paid_amount, paid_at=status.paid_at, seen_at=now)
    return unreachable


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
        checks_status = credential.provider == "espay"  # no lookup; its Check Payment Status instead
        if not checks_status and not gateways.client_class(credential.provider).can_lookup:
            unreachable.update({i.pk: f"{credential.provider} cannot be re-checked" for i in invoices})
            continue
        try:
            credential_client(credential=credential)
        except Exception as exc:  # noqa: BLE001 (no secrets, a bad configuration: nothing can be checked)
            unreachable.update({i.pk: f"{credential}: {type(exc).__name__}" for i in invoices})
            continue
        run = SyncRun.objects.create(credential=credential, trigger=SyncRun.Trigger.REMINDER, started_at=now)
        if checks_status:
            unreachable.update(_status_checks(credential, invoices, run, now))
            run.status, run.finished_at = SyncRun.Status.SUCCEEDED, timezone.now()
            run.save()
            continue
        found, missing, run.lookups = _lookups(credential, invoices)
        unreachable.update(missing)
        try:
            with transaction.atomic():
                if found:
                    counts = invoices_write(credential=credential, pages=[Page(invoices=found)], run=run,
                                            seen_at=now)
                    run.fetched, run.updated, run.unchanged = counts.fetched, counts.updated, counts.unchanged
                    if counts.customers:
                        customers_settle(customer_ids=counts.customers, credential=credential)
                run.status, run.finished_at = SyncRun.Status.SUCCEEDED, timezone.now()
                run.save()
        except (gateways.GatewayError, DatabaseError) as exc:  # what the gateway said could not be stored
            logger.warning("reminders: re-check of credential=%s not written: %s", credential.pk, exc)
            run.status, run.finished_at, run.error = SyncRun.Status.FAILED, timezone.now(), str(exc)[:500]
            run.save()
            unreachable.update({i.pk: "the gateway's answer could not be stored" for i in invoices})
    fresh = Invoice.objects.defer("raw").in_bulk([i.pk for c in choice.chosen for i in c.invoices])
    kept_chosen = []
    for chosen in choice.chosen:
        kept = []
        for invoice in chosen.invoices:
            now_state = fresh.get(invoice.pk)
            if invoice.pk in unreachable:
                choice.dropped.append((chosen.customer_id, invoice.pk, chosen.step, Reason.UNREACHABLE,
                                       unreachable[invoice.pk]))
            elif now_state is None or now_state.status in SETTLED:
                choice.dropped.append((chosen.customer_id, invoice.pk, chosen.step, Reason.SETTLED,
                                       f"now {now_state.status if now_state else 'gone'}"))
            elif _state(now_state) != _state(invoice):
                choice.dropped.append((chosen.customer_id, invoice.pk, chosen.step, Reason.CHANGED,
                                       f"{invoice.status} {invoice.outstanding} -> {now_state.status} "
                                       f"{now_state.outstanding}"))
            else:
                now_state.credential = invoice.credential
                kept.append(now_state)
        if kept:
            chosen.invoices = kept
            chosen.invoice_ids = [i.pk for i in kept]
            kept_chosen.append(chosen)
    choice.chosen = kept_chosen


@lru_cache(maxsize=256)
def _compiled(text: str):
    return ENGINE.from_string("{% load money %}" + text)


def render_reminder(*, step: ReminderStep, customer: Customer, invoices: list[Invoice], day: dt.date,
                    ways: dict[int, tuple[str, ...]] | None = None) -> tuple[str, str]:
    """(subject, body) of the step's templates for these invoices. Context: `customer`, `merchant`,
    `step`, `today`, `invoices` (each with `ways`: its checkout link, Espay VA numbers; `ways`
    given: read for many customers at once) and `totals` (currency, amount) pairs, never added
    across currencies."""
    ways = ways_to_pay(invoices) if ways is None else ways
    for invoice in invoices:
        invoice.ways = ways.get(invoice.pk, ())
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in invoices:
        totals[invoice.currency] += invoice.outstanding if invoice.outstanding is not None else (invoice.amount or 0)
    context = Context({"customer": customer, "merchant": customer.merchant, "step": step, "today": day,
                       "invoices": invoices, "totals": sorted(totals.items())})
    subject = _compiled(step.subject).render(context)
    body = _compiled(step.body).render(context)
    return " ".join(subject.split())[:255], body


def check_templates(*, subject: str, body: str) -> None:
    """Raise ValueError (for the admin form) when a step's template does not compile."""
    for text in (subject, body):
        try:
            ENGINE.from_string("{% load money %}" + text)
        except TemplateSyntaxError as exc:
            raise ValueError(str(exc)) from None


def _write(choice: Choice, now: dt.datetime) -> list[ReminderMessage]:
    """The outbox rows of a choice (and its drops), committed together: a few statements for the
    whole batch (the ways to pay, the messages, their items), whatever its size."""
    with transaction.atomic():
        ReminderDrop.objects.bulk_create([
            ReminderDrop(merchant=choice.merchant, customer_id=customer_id, invoice_id=invoice_id, step=step,
                         day=choice.day, reason=reason, detail=detail[:255], at=now)
            for customer_id, invoice_id, step, reason, detail in choice.dropped])
        if not choice.chosen:
            return []
        done = set(ReminderMessage.objects.filter(day=choice.day, customer_id__in={c.customer_id for c in choice.chosen})
                   .values_list("customer_id", "step_id"))  # a run of the same day wrote these already
        chosen = [c for c in choice.chosen if (c.customer_id, c.step.pk) not in done]
        ways = ways_to_pay([i for c in chosen for i in c.invoices])
        messages = []
        for c in chosen:
            c.customer.merchant = choice.merchant
            subject, body = render_reminder(step=c.step, customer=c.customer, invoices=c.invoices, day=choice.day,
                                            ways=ways)
            messages.append(ReminderMessage(merchant=choice.merchant, customer=c.customer, step=c.step,
                                            day=choice.day, to=c.to, subject=subject, body=body, created_at=now))
        ReminderMessage.objects.bulk_create(messages)
        ReminderItem.objects.bulk_create([
            ReminderItem(message=message, invoice=invoice, step=c.step, outstanding=invoice.outstanding,
                         currency=invoice.currency)
            for message, c in zip(messages, chosen) for invoice in c.invoices])
    return messages


def reminders_run(*, merchant: Merchant, day: dt.date | None = None, now: dt.datetime | None = None,
                  statement: Callable[[Customer, dt.date], tuple[str, bytes]] | None = None, send: bool = True) -> dict:
    """Choose, re-check, write and send the merchant's reminders of `day` (default: today in its
    zone), RUN_BATCH customers at a time (memory stays flat whatever their number; what a batch
    wrote is sent before the next one is re-checked). `statement(customer, day)` gives the
    (file name, PDF bytes) a step attaches. `send=False` leaves the messages queued (the
    benchmark times the sending apart)."""
    now = now or timezone.now()
    day = day or merchant_day(merchant, now)
    choice = reminders_choose(merchant=merchant, day=day, now=now)
    written = sent = 0
    smtp_down = False
    dropped = len(choice.dropped)
    _write(Choice(merchant=merchant, day=day, dropped=choice.dropped), now)
    for start in range(0, len(choice.chosen), RUN_BATCH):
        part = Choice(merchant=merchant, day=day, chosen=chosen_load(choice.chosen[start:start + RUN_BATCH]))
        _recheck(part, now)
        _still_wanted(part, now)
        written += len(_write(part, now))
        dropped += len(part.dropped)
        for entry in part.chosen:  # done with: let the batch's objects go
            entry.customer, entry.invoices = None, []
        if send and not smtp_down:
            sent, smtp_down = _send_batch(merchant, statement, now, sent)
    if send and not smtp_down:  # and what waited from before (a refused connection, an empty day)
        sent, smtp_down = _send_batch(merchant, statement, now, sent)
    logger.info("reminders merchant=%s day=%s written=%s dropped=%s sent=%s", merchant.pk, day, written, dropped, sent)
    return {"written": written, "dropped": dropped, "sent": sent}


def _send_batch(merchant: Merchant, statement, now: dt.datetime, sent: int) -> tuple[int, bool]:
    """Send what is queued; (sent so far, whether SMTP refused the connection: then the rest of
    the run waits for the next tick, one attempt per message and tick)."""
    more = reminders_send(merchant=merchant, statement=statement, now=now)
    down = not more and ReminderMessage.objects.filter(merchant=merchant, state=State.QUEUED,
                                                       error__startswith="could not connect").exists()
    return sent + more, down


def _email(message: ReminderMessage, statement) -> EmailMessage:
    email = EmailMessage(subject=message.subject, body=message.body, from_email=settings.DEFAULT_FROM_EMAIL,
                         to=[message.to], headers={"X-Arbook-Reminder": str(message.pk),
                                                   "Message-ID": f"<reminder-{message.pk}@{DNS_NAME}>"})
    if message.step.attach_statement and statement is not None:
        name, pdf = statement(message.customer, message.day)
        email.attach(name, pdf, "application/pdf")
    return email


def reminders_send(*, merchant: Merchant | None = None, statement=None, now: dt.datetime | None = None) -> int:
    """Hand the queued messages to SMTP, each exactly once; returns how many SMTP accepted.

    One statement per message, committed before the message is handed over, marks it "unknown"
    and the one before it (which SMTP accepted) "sent": whenever the process dies, only the message
    SMTP had at that moment is left "unknown", and no run resends an unknown one. A connection SMTP
    refuses leaves the messages queued (the next run retries the same rows)."""
    queued = ReminderMessage.objects.filter(state=State.QUEUED)
    if merchant is not None:
        queued = queued.filter(merchant=merchant)
    ids = list(queued.order_by("pk").values_list("pk", flat=True))
    if not ids:
        return 0
    connection = get_connection(fail_silently=False)
    try:
        connection.open()
    except (OSError, smtplib.SMTPException) as exc:
        for message in ReminderMessage.objects.filter(pk__in=ids):
            _attempted(message, f"could not connect to SMTP: {exc}")
        logger.warning("reminders: SMTP refused the connection: %s", exc)
        return 0
    sent, accepted = 0, None
    try:
        for start in range(0, len(ids), SEND_BATCH):
            for message in (ReminderMessage.objects.filter(pk__in=ids[start:start + SEND_BATCH], state=State.QUEUED)
                            .select_related("step", "customer", "customer__merchant").order_by("pk")):
                try:
                    email = _email(message, statement)
                    email.message()  # the addresses and headers are checked here, before the claim
                except Exception as exc:  # noqa: BLE001 (one bad message must not stop the others)
                    ReminderMessage.objects.filter(pk=message.pk, state=State.QUEUED).update(
                        state=State.FAILED, error=f"could not be built: {exc}"[:500])
                    continue
                claimed = _hand_over(message.pk, accepted)
                sent += accepted is not None
                accepted = None
                if not claimed:
                    continue  # another worker took it
                try:
                    if connection.send_messages([email]):
                        accepted = message.pk
                except smtplib.SMTPRecipientsRefused as exc:
                    ReminderMessage.objects.filter(pk=message.pk).update(state=State.FAILED, error=str(exc)[:500])
                except (OSError, smtplib.SMTPException) as exc:
                    # Handed over, no answer: it may have gone out. Left "unknown", never resent by itself.
                    ReminderMessage.objects.filter(pk=message.pk).update(error=f"no answer from SMTP: {exc}"[:500])
                    logger.warning("reminder id=%s outcome unknown: %s", message.pk, exc)
                    return sent
    finally:
        if accepted is not None:
            _hand_over(None, accepted)
            sent += 1
        connection.close()
    return sent


def _hand_over(claim: int | None, accepted: int | None) -> bool:
    """In one committed statement: `claim` from queued to unknown (about to be handed to SMTP)
    and `accepted` from unknown to sent. True when `claim` was still queued (or is None)."""
    moment = timezone.now()
    q = Q(pk=claim, state=State.QUEUED) if claim is not None else Q(pk__in=[])
    if accepted is not None:
        q |= Q(pk=accepted, state=State.UNKNOWN)
    field = ReminderMessage._meta.get_field

    def pick(name: str, pk: int | None, value):
        """`value` for row `pk`, the column as it is for the other."""
        if pk is None:
            return F(name)
        return Case(When(pk=pk, then=value), default=F(name), output_field=field(name))

    changed = ReminderMessage.objects.filter(q).update(
        state=Case(When(pk=claim, then=Value(State.UNKNOWN)), default=Value(State.SENT), output_field=field("state"))
        if claim is not None else Value(State.SENT),
        handed_at=pick("handed_at", claim, Value(moment)),
        attempts=pick("attempts", claim, F("attempts") + 1),
        sent_at=pick("sent_at", accepted, Value(moment)),
        error=pick("error", accepted, Value("")),
        message_id=pick("message_id", accepted, Value(f"<reminder-{accepted}@{DNS_NAME}>")))
    return claim is None or changed > (1 if accepted is not None else 0)


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
        merchant.refresh_from_db(fields=["reminders_run_on"])
        # Two schedulers (or a tick that overlaps a slow one) never run one merchant's day twice at
        # once; the outbox's unique keys would refuse the second anyway, this saves its gateway calls.
        lock = f"arbook:reminders-run:{merchant.pk}:{day.isoformat()}"
        if not cache.add(lock, "1", timeout=RUN_LOCK_SECONDS):
            continue
        try:
            if Merchant.objects.filter(pk=merchant.pk, reminders_run_on=day).exists():
                continue  # a tick that held the lock just before this one ran the day
            done[merchant.pk] = reminders_run(merchant=merchant, day=day, now=now, statement=statement)
            reminders_mark_run(merchant=merchant, day=day)
        finally:
            cache.delete(lock)
    for merchant in Merchant.objects.filter(reminder_steps__isnull=False).exclude(pk__in=list(done)).distinct():
        reminders_send(merchant=merchant, statement=statement, now=now)  # what SMTP refused earlier
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
