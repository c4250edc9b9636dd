"""Promises to pay and the sync: a payment a sync read brings keeps the promise it covers; an
unpaid promise breaks once its day is over and reaches the worklist the day after (clock pinned,
like the sandbox's dates)."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from arbook.models import Customer, Invoice, Promise
from arbook.selectors.worklist import worklist
from arbook.services.collections import promise_make
from arbook.services.sync import invoices_sync
from arbook.tasks.collections import collections_tick
from tests.factories import MerchantFactory, UserFactory
from tests.sync.conftest import NOW, POLLED
from tests.sync.test_sync import pick

pytestmark = pytest.mark.django_db(transaction=True)
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")


@pytest.mark.parametrize("provider", POLLED)
def test_a_payment_read_by_a_sync_keeps_the_promise(provider, sandbox, make_credential):
    user = UserFactory()
    credential = make_credential(provider, merchant=MerchantFactory())
    credential.merchant.members.add(user)
    assert invoices_sync(credential=credential, full=True).status == "succeeded"
    target = pick(sandbox, provider, "open")
    invoice = Invoice.objects.get(credential=credential, external_id=target["external_id"])
    customer = Customer.objects.get(pk=invoice.customer_id)
    promise = promise_make(customer=customer, user=user, amount=invoice.outstanding, currency=invoice.currency,
                           promised_for=dt.date(2026, 11, 3), invoices=[invoice])
    sandbox.sandbox.providers[provider].mutate(target["external_id"], {"status": "paid", "outstanding": "0"})

    run = invoices_sync(credential=credential, full=True)
    assert run.status == "succeeded" and run.updated == 1, run.error
    promise.refresh_from_db()
    assert (promise.state, promise.paid) == ("kept", invoice.outstanding)


def test_an_unpaid_promise_breaks_after_its_day_and_tops_the_worklist_the_day_after(sandbox, make_credential, clock):
    user = UserFactory()
    credential = make_credential("xendit", merchant=MerchantFactory())
    credential.merchant.members.add(user)
    assert invoices_sync(credential=credential, full=True).status == "succeeded"
    Customer.objects.filter(merchant=credential.merchant).update(collector=user)
    listing = worklist(user=user, merchants=[credential.merchant], now=NOW)
    assert listing.items and all(item.tier == 1 for item in listing.items)
    last = listing.items[-1].customer
    currency = listing.currency
    promise = promise_make(customer=last, user=user, amount=Decimal(1), currency=currency,
                           promised_for=dt.date(2026, 11, 2))
    clock.move_to(dt.datetime(2026, 11, 2, 23, 0, tzinfo=JKT))
    assert collections_tick()["promises_settled"] == 0
    assert worklist(user=user, merchants=[credential.merchant]).items[0].customer != last
    clock.move_to(dt.datetime(2026, 11, 3, 0, 5, tzinfo=JKT))
    assert collections_tick()["promises_settled"] == 1
    assert Promise.objects.get(pk=promise.pk).state == "broken"
    top = worklist(user=user, merchants=[credential.merchant]).items[0]
    assert (top.customer, top.tier, top.step) == (last, 0, "follow_up")
