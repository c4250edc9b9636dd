"""`/worklist/`: the customers a collector should act on today, in priority order.

The priority (documented on the page and in the README):
1. **Broken promises first**: a promise whose day is over with less than its amount paid (broken
   or partly kept), from the day after its date until someone notes a call or records a new
   promise; the oldest broken promise first.
2. **Then the overdue amount weighted by days overdue**: for each customer, the sum over its
   overdue invoices (in the currency shown) of amount x days past due, highest first. Invoices on
   hold do not count; a customer held as a whole is left out.
3. **Last, customers waiting on an open promise** (they said when they will pay: nothing to do
   before that day), by the same weight.

Amounts are never added across currencies: the list shows one currency at a time (a tab per
currency that anyone in scope owes overdue). The weight is read from the customers' balances
(`CustomerBalance.overdue`, `overdue_weight`: the write path keeps them, `customers_age` adds what
fell due since), so the page reads no invoice but those under a hold.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Max, Min, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from arbook.models import Customer, CustomerBalance, Hold, Invoice, Merchant, Note, Promise
from arbook.selectors.collections import active_q
from arbook.services.customers import epoch_days
from arbook.status import RECEIVABLE

PAGE_SIZE = 50
#: A worklist is for today: beyond this many pages, narrow it (a collector, a merchant).
MAX_PAGES = 20
State = Promise.State
RAISED = (State.BROKEN, State.PARTLY_KEPT)
PERMISSION = "arbook.manage_collections"
WEIGHT = DecimalField(max_digits=30, decimal_places=4)


def may_manage(user) -> bool:
    """A manager sees any collector's worklist (and the unassigned customers); a collector, their own."""
    return user.has_perm(PERMISSION)


@dataclass
class WorkItem:
    customer: Customer
    currency: str
    tier: int
    #: Overdue in `currency`, holds left out (what the weight counts).
    overdue: Decimal
    #: Amount x days overdue, holds left out.
    weight: Decimal
    held: Decimal = Decimal(0)
    promise: Promise | None = None
    last_contact: dt.datetime | None = None
    days_overdue: int | None = None

    @property
    def step(self) -> str:
        """The next step's kind (the page words it): follow_up, wait, first_call, call_again."""
        if self.tier == 0:
            return "follow_up"
        if self.tier == 2:
            return "wait"
        return "first_call" if self.last_contact is None else "call_again"


@dataclass
class Worklist:
    items: list[WorkItem]
    currency: str | None
    #: (currency, customers with something overdue in it), for the tabs.
    currencies: list[tuple[str, int]]
    total: int
    page: int
    pages: int
    collector: str
    now: dt.datetime
    #: The oldest instant up to which the merchants' overdue balances are complete (None: never
    #: aged, so only what each balance's last refresh saw as overdue).
    aged_at: dt.datetime | None
    merchants: list[Merchant] = field(default_factory=list)

    @property
    def start(self) -> int:
        return (self.page - 1) * PAGE_SIZE


def _whose(collector: str, user, prefix: str = "") -> Q:
    """The Q (on `Customer`, or through `prefix` on a model pointing at it) of whose worklist this
    is: `me`, `none` (unassigned), `all`, or a user's id."""
    if collector == "me":
        return Q(**{f"{prefix}collector": user})
    if collector == "none":
        return Q(**{f"{prefix}collector__isnull": True})
    if collector == "all":
        return Q()
    return Q(**{f"{prefix}collector_id": int(collector)})


def worklist(*, user, merchants: list[Merchant], collector: str = "me", currency: str | None = None,
             page: int = 1, now: dt.datetime | None = None) -> Worklist:
    """The worklist of `collector` over `merchants` (already scoped to `user`), one page of it."""
    now = now or timezone.now()
    merchant_ids = [m.pk for m in merchants]
    overdue = CustomerBalance.objects.filter(_whose(collector, user, "customer__"), merchant_id__in=merchant_ids,
                                             overdue__gt=0)
    holds = Hold.objects.filter(active_q(now), merchant_id__in=merchant_ids)
    held_whole = set(holds.filter(invoice__isnull=True).values_list("customer_id", flat=True))
    held_invoices = list(
        Invoice.objects.filter(_whose(collector, user, "customer__"),
                               pk__in=holds.filter(invoice__isnull=False).values("invoice_id"),
                               status__in=RECEIVABLE, due_at__lt=now)
        .exclude(customer_id__in=held_whole)
        .values_list("customer_id", "currency", Coalesce("outstanding", "amount"), "due_at"))
    held: dict[tuple[int, str], list[Decimal]] = {}
    for customer_id, cur, owed, due_at in held_invoices:
        if owed and owed > 0:
            entry = held.setdefault((customer_id, cur), [Decimal(0), Decimal(0)])
            entry[0] += owed
            entry[1] += owed * epoch_days(due_at)
    promises = list(Promise.objects.filter(Q(state=State.OPEN) | Q(state__in=RAISED, followed_up_at__isnull=True),
                                           _whose(collector, user, "customer__"), merchant_id__in=merchant_ids)
                    .exclude(customer_id__in=held_whole).order_by("deadline", "pk"))
    currencies = dict(overdue.exclude(customer_id__in=held_whole).order_by().values("currency")
                      .annotate(n=Count("customer_id")).values_list("currency", "n"))
    for p in promises:
        currencies.setdefault(p.currency, 0)
    tabs = sorted(currencies.items(), key=lambda kv: (-kv[1], kv[0]))
    if currency not in currencies:
        currency = tabs[0][0] if tabs else None
    aged = (Merchant.objects.filter(pk__in=merchant_ids).aggregate(m=Min("customers_aged_at"),
                                                                  unaged=Count("pk", filter=Q(customers_aged_at=None))))
    aged_at = None if aged["unaged"] else aged["m"]
    if currency is None:
        return Worklist([], None, [], 0, 1, 1, collector, now, aged_at, merchants)

    today_days = epoch_days(now)
    # Tier 0 (raised) and tier 2 (waiting) promises, one per customer: the oldest decides.
    raised: dict[int, Promise] = {}
    waiting: dict[int, Promise] = {}
    for p in promises:
        if p.currency != currency:
            continue
        if p.state in RAISED or p.deadline <= now:
            raised.setdefault(p.customer_id, p)
        else:
            waiting.setdefault(p.customer_id, p)
    waiting = {c: p for c, p in waiting.items() if c not in raised}
    special = set(raised) | set(waiting)
    adjusted = {c for (c, cur) in held if cur == currency} - special
    balances = {b[0]: b[1:] for b in CustomerBalance.objects.filter(customer_id__in=special | adjusted,
                                                                     currency=currency)
                .values_list("customer_id", "overdue", "overdue_weight")} if special | adjusted else {}
    # A customer whose overdue invoices are all on hold has nothing to act on.
    all_held = {c for c in adjusted if balances.get(c, (Decimal(0),))[0] <= held[(c, currency)][0]}
    ranked = (overdue.filter(currency=currency).exclude(customer_id__in=held_whole | special | all_held)
              .annotate(score=ExpressionWrapper(F("overdue") * Value(today_days) - F("overdue_weight"),
                                                output_field=WEIGHT)))
    adjusted -= all_held
    # Counted from the tab's count (one scan fewer): those it counts that tier 1 leaves out.
    tier1_total = currencies.get(currency, 0) - sum(
        1 for c in special | all_held if balances.get(c, (Decimal(0),))[0] > 0)
    total = len(raised) + tier1_total + len(waiting)
    tabs = [(code, total if code == currency else n) for code, n in tabs]  # the shown one counted exactly
    pages = max(1, min(MAX_PAGES, -(-total // PAGE_SIZE)))
    page = max(1, min(page, pages))
    start, stop = (page - 1) * PAGE_SIZE, page * PAGE_SIZE
    rows: list[tuple[int, int, Decimal, Decimal, Decimal]] = []  # (tier, customer, overdue, weight, held)

    def row(tier: int, customer_id: int, overdue_amount: Decimal, weight_sum: Decimal) -> tuple:
        amount, weight = held.get((customer_id, currency), (Decimal(0), Decimal(0)))
        left = max(overdue_amount - amount, Decimal(0))
        score = max(left * today_days - (weight_sum - weight), Decimal(0)) if left else Decimal(0)
        return (tier, customer_id, left, score, amount)

    # The page [start, stop) of: tier 0 (oldest broken promise first), tier 1 (ranked in SQL;
    # the few customers with a held invoice are re-ranked here on their weight without it), tier 2.
    rows.extend(row(0, c, *balances.get(c, (Decimal(0), Decimal(0)))) for c in list(raised)[start:stop])
    first, want = max(0, start - len(raised)), min(tier1_total, max(0, stop - len(raised)))
    if want > first:
        top = list(ranked.order_by("-score", "customer_id")
                   .values_list("customer_id", "overdue", "overdue_weight")[:want + len(adjusted)])
        missing = adjusted - {t[0] for t in top}
        extra = list(ranked.filter(customer_id__in=missing)
                     .values_list("customer_id", "overdue", "overdue_weight")) if missing else []
        rows.extend(sorted((row(1, *t) for t in top + extra), key=lambda r: (-r[3], r[1]))[first:want])
    after = len(raised) + tier1_total
    if stop > after:
        tier2 = sorted((row(2, c, *balances.get(c, (Decimal(0), Decimal(0)))) for c in waiting),
                       key=lambda r: (-r[3], r[1]))
        rows.extend(tier2[max(0, start - after):stop - after])
    ids = [r[1] for r in rows]
    customers = Customer.objects.filter(pk__in=ids).select_related("merchant", "collector").in_bulk()
    contacts = dict(Note.objects.filter(customer_id__in=ids).order_by().values("customer_id")
                    .annotate(at=Max("created_at")).values_list("customer_id", "at")) if ids else {}
    items = []
    for tier, customer_id, left, score, amount in rows:
        customer = customers.get(customer_id)
        if customer is None:
            continue
        promise = raised.get(customer_id) or waiting.get(customer_id)
        contact = max((t for t in (contacts.get(customer_id), promise.made_at if promise else None) if t),
                      default=None)
        days = (now - customer.oldest_open_due).days if customer.oldest_open_due and customer.oldest_open_due < now \
            else None
        items.append(WorkItem(customer=customer, currency=currency, tier=tier, overdue=left,
                              weight=score.quantize(Decimal(1)), held=amount, promise=promise,
                              last_contact=contact, days_overdue=days))
    return Worklist(items, currency, tabs, total, page, pages, collector, now, aged_at, merchants)


def collector_choices(*, user, merchant_ids: list[int]) -> list[tuple[str, str]]:
    """The worklists `user` may open: their own, and for a manager everyone's, the unassigned
    customers' and each collector's."""
    choices = [("me", "Mine")]
    if may_manage(user):
        choices += [("all", "Everyone"), ("none", "Unassigned")]
        choices += [(str(pk), name) for pk, name in get_user_model().objects.filter(
            is_active=True, merchants__in=merchant_ids).exclude(pk=user.pk).distinct()
            .order_by("username").values_list("pk", "username")]
    return choices
