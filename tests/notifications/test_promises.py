"""A promise to pay kept by a payment notification the sandbox delivers over HTTP, through the one
write path (the receiver, the apply task, `notification_apply`)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from arbook.models import AuditEntry, Customer, Promise
from arbook.services.collections import merchant_today, promise_make
from arbook.services.customers import customers_refresh

from .conftest import PROVIDERS, hook_path, notify

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_payment_notification_keeps_the_promise_it_covers(provider, subject, sandbox, live_server, user):
    credential, invoice = subject(provider)
    customer = Customer.objects.get(pk=invoice.customer_id)
    customers_refresh(customer_ids=[customer.pk])
    # The sandbox is anchored on the real date, so the promise is for a day after the real today.
    by = merchant_today(customer.merchant, timezone.now()) + dt.timedelta(days=3)
    promise = promise_make(customer=customer, user=user, amount=invoice.outstanding, currency=invoice.currency,
                           promised_for=by, invoices=[invoice])
    untouched = promise_make(customer=customer, user=user, amount="1", currency=invoice.currency, promised_for=by,
                             invoices=[])  # any invoice: the same payment covers it too
    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice)

    assert answer["deliveries"][0]["status"] == 200, answer
    promise.refresh_from_db()
    untouched.refresh_from_db()
    assert (promise.state, promise.paid) == ("kept", invoice.outstanding)
    assert untouched.state == "kept"
    assert AuditEntry.objects.filter(action="promise_settled", target=f"promise:{promise.pk}",
                                     data__after="kept").exists()


def test_a_notification_for_another_invoice_does_not_keep_a_promise_on_a_chosen_one(subject, sandbox, live_server, user):
    credential, invoice = subject("xendit")
    customer = Customer.objects.get(pk=invoice.customer_id)
    other = invoice.__class__.objects.create(
        merchant=invoice.merchant, credential=credential, provider="xendit", external_id="NOT-IN-SANDBOX",
        customer=customer, currency=invoice.currency, amount=invoice.amount, outstanding=invoice.amount,
        status="open", first_seen_at=timezone.now(), last_synced_at=timezone.now())
    customers_refresh(customer_ids=[customer.pk])
    by = merchant_today(customer.merchant, timezone.now()) + dt.timedelta(days=3)
    promise = promise_make(customer=customer, user=user, amount=other.amount, currency=other.currency,
                           promised_for=by, invoices=[other])
    notify(sandbox, live_server.url + hook_path(credential), credential, invoice)
    promise.refresh_from_db()
    assert (promise.state, promise.paid) == ("open", 0)
    assert Promise.objects.count() == 1
