"""Models and constraints."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from arbook.models import Invoice
from arbook.status import STATUSES, InvoiceStatus
from gateways import status as st
from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory

pytestmark = pytest.mark.django_db


def test_invoice_is_unique_per_credential_and_external_id():
    invoice = InvoiceFactory(external_id="A-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceFactory(credential=invoice.credential, external_id="A-1")
    # The same provider id under another credential is another invoice.
    InvoiceFactory(credential=CredentialFactory(merchant=invoice.merchant), external_id="A-1")
    assert Invoice.objects.filter(external_id="A-1").count() == 2


def test_money_round_trips_as_exact_decimal():
    invoice = InvoiceFactory(currency="DKK", amount=Decimal("1234.56"), outstanding=Decimal("-0.01"))
    invoice.refresh_from_db()
    assert invoice.amount == Decimal("1234.56") and isinstance(invoice.amount, Decimal)
    assert invoice.outstanding == Decimal("-0.01")  # a credit stays negative


def test_amount_may_be_unknown():
    invoice = InvoiceFactory(amount=None)
    invoice.refresh_from_db()
    assert invoice.amount is None


def test_status_choices_are_the_normalized_states_with_one_colour_each():
    assert [c for c, _ in InvoiceStatus.choices] == list(st.ALL)
    assert set(STATUSES) == set(st.ALL)
    assert all(info.colour for info in STATUSES.values())


def test_datetimes_are_timezone_aware():
    invoice = InvoiceFactory()
    invoice.refresh_from_db()
    assert invoice.due_at.tzinfo is not None and invoice.issued_at.tzinfo is not None


def test_events_hang_off_their_invoice_in_order():
    invoice = InvoiceFactory()
    first = InvoiceEventFactory(invoice=invoice, status_before="open", status_after="paid")
    second = InvoiceEventFactory(invoice=invoice, status_before="paid", status_after="charged_back")
    assert list(invoice.events.all()) == [first, second]
    assert str(first).endswith("open → paid")


def test_credential_gets_an_unguessable_hook_token():
    a, b = CredentialFactory(), CredentialFactory()
    assert len(a.hook_token) >= 40 and a.hook_token != b.hook_token


def _links(invoice):
    return [(e.seen_at, e.prev_seen_at) for e in invoice.events.order_by("seen_at", "id")]


def test_events_link_to_their_previous_event_however_they_are_inserted():
    import datetime as dt

    from django.utils import timezone

    from arbook.models import InvoiceEvent

    t0 = timezone.now() - dt.timedelta(days=10)
    at = [t0 + dt.timedelta(days=n) for n in range(4)]
    invoice, other = InvoiceFactory(), InvoiceFactory()
    InvoiceEventFactory(invoice=invoice, seen_at=at[1])  # save(): the first has no previous one
    InvoiceEvent.objects.append([  # in order, two in one batch, and another invoice alongside
        InvoiceEvent(invoice=invoice, seen_at=at[2]), InvoiceEvent(invoice=other, seen_at=at[0]),
        InvoiceEvent(invoice=invoice, seen_at=at[3])])
    assert _links(invoice) == [(at[1], None), (at[2], at[1]), (at[3], at[2])]
    assert _links(other) == [(at[0], None)]
    # A clock step back: an event dated before stored ones relinks the whole chain.
    InvoiceEventFactory(invoice=invoice, seen_at=at[0])
    assert _links(invoice) == [(at[0], None), (at[1], at[0]), (at[2], at[1]), (at[3], at[2])]
    # Two events at the same moment: the later id follows the earlier.
    InvoiceEventFactory(invoice=other, seen_at=at[0])
    assert _links(other) == [(at[0], None), (at[0], at[0])]


def test_migration_backfill_links_existing_events():
    import datetime as dt
    import importlib

    from django.db import connection
    from django.utils import timezone

    from arbook.models import InvoiceEvent

    backfill = importlib.import_module("arbook.migrations.0007_event_prev_seen_at").BACKFILL
    t0 = timezone.now()
    invoice = InvoiceFactory()
    InvoiceEvent.objects.bulk_create([  # as stored before the column existed: no links
        InvoiceEvent(invoice=invoice, seen_at=t0 + dt.timedelta(hours=h)) for h in (2, 0, 1)])
    assert [p for _, p in _links(invoice)] == [None, None, None]
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    assert [p for _, p in _links(invoice)] == [None, t0, t0 + dt.timedelta(hours=1)]


def test_events_move_last_event_at_forward_and_changed_at_follows_payments():
    """`last_event_at` is the latest event's time (never moved back by an older one), and the
    generated `changed_at` the latest of it and `paid_at`: as-of aging trusts both."""
    import datetime as dt

    from django.utils import timezone

    from arbook.models import InvoiceEvent

    t0 = timezone.now() - dt.timedelta(days=10)
    at = [t0 + dt.timedelta(days=n) for n in range(4)]
    invoice, other, untouched = InvoiceFactory(paid_at=None), InvoiceFactory(paid_at=None), InvoiceFactory(paid_at=None)

    def stamps(inv):
        inv.refresh_from_db()
        return inv.last_event_at, inv.changed_at

    assert stamps(untouched) == (None, None)
    InvoiceEventFactory(invoice=invoice, seen_at=at[1])  # save()
    assert stamps(invoice) == (at[1], at[1])
    InvoiceEvent.objects.append([InvoiceEvent(invoice=invoice, seen_at=at[2]), InvoiceEvent(invoice=other, seen_at=at[0])])
    assert stamps(invoice) == (at[2], at[2]) and stamps(other) == (at[0], at[0])
    InvoiceEventFactory(invoice=invoice, seen_at=at[0])  # a clock step back: stays at the latest
    assert stamps(invoice) == (at[2], at[2])
    # A payment recorded without an event (any writer of paid_at) still moves changed_at.
    Invoice.objects.filter(pk=other.pk).update(paid_at=at[3])
    assert stamps(other) == (at[0], at[3])
    Invoice.objects.filter(pk=untouched.pk).update(paid_at=at[1])
    assert stamps(untouched) == (None, at[1])


def test_migration_backfill_sets_last_event_at():
    import datetime as dt
    import importlib

    from django.db import connection
    from django.utils import timezone

    from arbook.models import InvoiceEvent

    backfill = importlib.import_module("arbook.migrations.0009_invoice_changed_at").BACKFILL
    t0 = timezone.now()
    invoice, bare = InvoiceFactory(paid_at=None), InvoiceFactory(paid_at=None)
    InvoiceEvent.objects.bulk_create([  # as stored before the column existed
        InvoiceEvent(invoice=invoice, seen_at=t0 + dt.timedelta(hours=h)) for h in (2, 0, 1)])
    Invoice.objects.update(last_event_at=None)
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    invoice.refresh_from_db()
    bare.refresh_from_db()
    assert (invoice.last_event_at, invoice.changed_at) == (t0 + dt.timedelta(hours=2), t0 + dt.timedelta(hours=2))
    assert (bare.last_event_at, bare.changed_at) == (None, None)
