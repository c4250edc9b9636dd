"""The money rules no notification can break: one test per rule, and a property test that throws
random delivery sequences (genuine instalments, duplicates, replays with fresh unsigned ids,
forged unsigned amounts and statuses, any order) at an Espay invoice and checks the rules after
every delivery and the end state against what Espay itself says."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from arbook.models import Invoice, InvoiceEvent, Notification
from arbook.services.invoice_write import is_regression, money_rule_violations, notification_apply
from tests.notifications.conftest import espay_invoice, hook_path
from tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db


# -- one test per rule ---------------------------------------------------------------------------

@pytest.mark.parametrize("state, broken", [
    (dict(amount=Decimal(100), outstanding=Decimal(40), paid_amount=Decimal(60), status="partially_paid"), ""),
    (dict(amount=Decimal(0), outstanding=Decimal(0), paid_amount=Decimal(0), status="paid"), "amount 0 is not positive"),
    (dict(amount=Decimal(-5), outstanding=None, paid_amount=None, status="open"), "not positive"),
    (dict(amount=Decimal(100), outstanding=Decimal(100), paid_amount=Decimal(-1), status="open"), "paid amount -1"),
    (dict(amount=Decimal(100), outstanding=Decimal(101), paid_amount=Decimal(0), status="open"), "above the amount"),
    (dict(amount=Decimal(100), outstanding=Decimal(150), paid_amount=Decimal(0), status="charged_back"), ""),
    (dict(amount=None, outstanding=Decimal(150), paid_amount=None, status="open"), ""),
])
def test_each_money_rule(state, broken):
    found = "; ".join(money_rule_violations(**state))
    assert (broken in found) if broken else found == ""


def test_only_a_final_state_turning_owed_is_a_regression():
    assert is_regression("paid", "open") and is_regression("cancelled", "partially_paid")
    assert not is_regression("open", "paid") and not is_regression("paid", "cancelled")


def apply_change(invoice, change, **notification_fields):
    """Apply a hand-made verified notification (as if received) to `invoice`."""
    notification = Notification.objects.create(
        credential=invoice.credential, provider=invoice.provider, method="POST", verification="valid",
        outcome="queued", external_id=invoice.external_id, event_key=f"test:{Notification.objects.count()}",
        event_id="e", parsed=change, **notification_fields)
    return notification_apply(notification=notification)


@pytest.mark.parametrize("change, reason", [
    ({"kind": "state", "status": "open", "outstanding": "2000000", "provider_status": "X", "vouched": True},
     "above the amount"),
    ({"kind": "state", "status": "partially_paid", "outstanding": "1000", "paid_amount": "-300000",
      "provider_status": "X", "vouched": True}, "paid amount -300000"),
    ({"kind": "payment", "status": "paid", "amount": "1600000", "provider_status": "X", "vouched": True},
     "paid amount"),
])
def test_a_notification_that_would_break_a_rule_is_left_for_review(change, reason, credential):
    invoice = InvoiceFactory(credential=credential, amount=Decimal(1500000), outstanding=Decimal(1500000),
                             paid_amount=Decimal(0))
    if change["kind"] == "payment":  # a payment larger than what is owed would leave a negative outstanding
        change = {**change, "amount": "-100"}
        reason = "paid amount -100"
    applied = apply_change(invoice, change)
    assert applied.outcome == "needs_review" and reason in applied.outcome_reason
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding, invoice.paid_amount) == ("open", 1500000, 0)
    assert not InvoiceEvent.objects.exists()


def test_a_paid_invoice_reopens_only_from_a_source_that_vouches_for_it(credential):
    paid = dict(amount=Decimal(1500000), outstanding=Decimal(0), paid_amount=Decimal(1500000), status="paid")
    invoice = InvoiceFactory(credential=credential, **paid)
    reopen = {"kind": "state", "status": "open", "outstanding": "1500000", "paid_amount": "0", "provider_status": "X"}
    moment = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert apply_change(invoice, reopen, event_at=moment).outcome == "needs_review"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    vouched = apply_change(invoice, {**reopen, "vouched": True}, event_at=moment + timedelta(minutes=1))
    assert vouched.outcome == "applied"
    invoice.refresh_from_db()
    assert invoice.status == "open"
    event = InvoiceEvent.objects.get()
    assert (event.status_before, event.status_after, event.notification_id) == ("paid", "open", vouched.pk)


# -- the property test ---------------------------------------------------------------------------

FORGERIES = ("none", "fresh_rq_uuid", "amount", "negative_amount", "tx_status", "comm_code")


def _delivery(prov, invoice, message: bytes, forgery: str, n: int) -> bytes:
    form = dict(parse_qsl(message.decode()))
    if forgery == "fresh_rq_uuid":
        form["rq_uuid"] = f"00000000-0000-4000-8000-{n:012d}"
    elif forgery == "amount":
        form["amount"] = f"{Decimal(form['amount']) * 7:.2f}"
    elif forgery == "negative_amount":
        form["amount"] = "-500000.00"
    elif forgery == "tx_status":
        form["tx_status"] = "F"
    elif forgery == "comm_code":
        form["comm_code"] = "SOMEONE-ELSE"
    return urlencode(form).encode()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(instalments=hs.lists(hs.integers(min_value=1, max_value=4), min_size=1, max_size=3),
       deliveries=hs.lists(hs.tuples(hs.integers(min_value=0, max_value=2), hs.sampled_from(FORGERIES)),
                           min_size=1, max_size=8))
def test_no_sequence_of_deliveries_breaks_the_money(instalments, deliveries, merchant, user, sandbox, client,
                                                    django_capture_on_commit_callbacks):
    from tests.notifications.conftest import make_credential

    credential = make_credential(merchant, sandbox, "espay")
    doc_no = f"DOC-P{Invoice.objects.count():05d}"
    invoice = espay_invoice(credential, user, doc_no=doc_no, amount="150000")
    prov = sandbox.sandbox.providers["espay"]
    # The genuine instalments, paid at Espay one minute apart (weights of the whole 150,000).
    weights, total = instalments, sum(instalments)
    paid, messages = Decimal(0), []
    start = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)
    for k, weight in enumerate(weights):
        part = (Decimal(150000) * weight / total).quantize(Decimal(1)) if k + 1 < len(weights) else Decimal(150000) - paid
        paid += part
        prov.mutate(doc_no, {"status": "paid" if paid == 150000 else "partially_paid",
                             "outstanding": str(Decimal(150000) - paid)})
        messages.append(prov.notification(doc_no, amount=part, at=start + timedelta(minutes=k))[1])

    accepted = False
    for n, (index, forgery) in enumerate(deliveries):
        body = _delivery(prov, invoice, messages[min(index, len(messages) - 1)], forgery, n)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(hook_path(credential), data=body, content_type="application/x-www-form-urlencoded")
        assert response.status_code in (200, 400, 401)
        accepted |= response.status_code == 200
        invoice.refresh_from_db()
        assert not money_rule_violations(amount=invoice.amount, outstanding=invoice.outstanding,
                                         paid_amount=invoice.paid_amount, status=invoice.status)
        assert invoice.outstanding >= 0 and invoice.paid_amount <= invoice.amount

    invoice.refresh_from_db()
    if accepted:  # whatever was forged, the invoice is as Espay has it
        assert (invoice.outstanding, invoice.paid_amount) == (Decimal(150000) - paid, paid)
        assert invoice.status == ("paid" if paid == 150000 else "partially_paid")
    else:
        assert (invoice.status, invoice.outstanding, invoice.paid_amount) == ("open", 150000, 0)
    applied = Notification.objects.filter(credential=credential, outcome="applied").count()
    assert InvoiceEvent.objects.filter(invoice=invoice, source="notification").count() == applied <= len(messages)
