"""Promises to pay (their rules and states), the worklist (its order, holds, scope, the day a broken
promise reaches it) and saved views (private, shared, scoped). The clock is pinned throughout.

Promises kept by a sandbox payment notification and by a sync read: tests/notifications and
tests/sync (test_promises.py in each)."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from arbook.models import AuditEntry, Customer, CustomerBalance, Invoice, InvoiceEvent, Promise, SavedView
from arbook.selectors.worklist import worklist
from arbook.services.collections import (
    CollectionsError,
    customers_age,
    hold_open,
    note_add,
    promise_make,
    promises_due,
    promises_observe,
    saved_view_save,
)
from arbook.services.customers import customers_refresh
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
NOW = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.timezone.utc)  # 10:00 on Monday 2 November in Jakarta


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def owing(merchant, name: str, *invoices: tuple[str, int, str], collector=None) -> tuple[Customer, list[Invoice]]:
    """A customer of `merchant` owing (amount, days overdue, currency) per invoice."""
    customer = Customer.objects.create(merchant=merchant, name=name, collector=collector)
    credential = CredentialFactory(merchant=merchant, provider="xendit")
    made = [InvoiceFactory(credential=credential, customer=customer, customer_name=name, number=f"{name}-{k}",
                           external_id=f"{name}-{k}", currency=currency, amount=Decimal(amount),
                           outstanding=Decimal(amount), status="open", due_at=NOW - dt.timedelta(days=days))
            for k, (amount, days, currency) in enumerate(invoices)]
    customers_refresh(customer_ids=[customer.pk])
    return customer, made


def pay(invoice: Invoice, amount: Decimal, *, at: dt.datetime) -> None:
    """What the write path does for a payment: the invoice's new state and its event."""
    before = (invoice.status, invoice.outstanding, invoice.paid_at)
    invoice.outstanding -= amount
    invoice.status = "paid" if invoice.outstanding == 0 else "partially_paid"
    invoice.paid_at = at
    invoice.save()
    InvoiceEvent.objects.append([InvoiceEvent(
        invoice=invoice, seen_at=at, source="sync", status_before=before[0], outstanding_before=before[1],
        paid_at_before=before[2], status_after=invoice.status, outstanding_after=invoice.outstanding, paid_at_after=at)])
    customers_refresh(customer_ids=[invoice.customer_id])
    promises_observe(customer_ids=[invoice.customer_id])


def jakarta(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=JKT)


# -- promises ------------------------------------------------------------------------------------

def test_a_promise_needs_an_owed_currency_a_day_from_today_an_amount_and_the_customers_own_invoices(merchant, user):
    customer, (invoice,) = owing(merchant, "Budi", (100_000, 5, "IDR"))
    _other, (foreign,) = owing(merchant, "Sari", (100_000, 5, "IDR"))
    today = dt.date(2026, 11, 2)
    refusals = [
        dict(amount="100", currency="USD", promised_for=today),  # owes nothing in USD
        dict(amount="100", currency="IDR", promised_for=today - dt.timedelta(days=1)),
        dict(amount="0", currency="IDR", promised_for=today),
        dict(amount="-5", currency="IDR", promised_for=today),
        dict(amount="abc", currency="IDR", promised_for=today),
        dict(amount="1e20", currency="IDR", promised_for=today),
        dict(amount="NaN", currency="IDR", promised_for=today),
        dict(amount="100", currency="IDR", promised_for=today, invoices=[foreign]),
    ]
    for refused in refusals:
        with pytest.raises(CollectionsError):
            promise_make(customer=customer, user=user, **refused)
    assert not Promise.objects.exists() and not AuditEntry.objects.exists()
    promise = promise_make(customer=customer, user=user, amount="60000", currency="idr", promised_for=today,
                           invoices=[invoice])
    assert (promise.currency, promise.amount, promise.state) == ("IDR", Decimal("60000.00"), "open")
    assert promise.deadline == jakarta(3, 0)  # the end of 2 November in Jakarta
    assert AuditEntry.objects.get().action == "promise_made"


def test_payments_keep_a_promise_as_they_arrive_and_its_end_makes_it_partly_kept_or_broken(merchant, user, clock):
    customer, (old, new) = owing(merchant, "Budi", (100_000, 40, "IDR"), (50_000, 5, "IDR"))
    kept = promise_make(customer=customer, user=user, amount="120000", currency="IDR",
                        promised_for=dt.date(2026, 11, 6))  # any invoice, oldest first
    partly = promise_make(customer=customer, user=user, amount="80000", currency="IDR",
                          promised_for=dt.date(2026, 11, 4), invoices=[new])
    broken = promise_make(customer=customer, user=user, amount="10000", currency="IDR",
                          promised_for=dt.date(2026, 11, 3))
    clock.move_to(jakarta(3, 12))
    pay(old, Decimal(100_000), at=jakarta(3, 12))
    kept.refresh_from_db()
    assert (kept.state, kept.paid) == ("open", Decimal(100_000))  # 100,000 of 120,000 so far
    broken.refresh_from_db()
    assert broken.state == "kept"  # any invoice: the payment on the old one covers its 10,000
    clock.move_to(jakarta(4, 9))
    pay(new, Decimal(30_000), at=jakarta(4, 9))
    kept.refresh_from_db()
    partly.refresh_from_db()
    assert (kept.state, kept.paid, kept.settled_at) == ("kept", Decimal(130_000), jakarta(4, 9))
    assert (partly.state, partly.paid) == ("open", Decimal(30_000))
    clock.move_to(jakarta(4, 23, 59))
    assert promises_due() == 0  # its day is not over yet
    clock.move_to(jakarta(5, 0, 1))
    assert promises_due() == 1
    partly.refresh_from_db()
    assert (partly.state, partly.paid, partly.followed_up_at) == ("partly_kept", Decimal(30_000), None)
    trail = list(AuditEntry.objects.filter(action="promise_settled").order_by("pk").values_list("target", "data"))
    assert [(t, d["after"]) for t, d in trail] == [(f"promise:{broken.pk}", "kept"), (f"promise:{kept.pk}", "kept"),
                                                   (f"promise:{partly.pk}", "partly_kept")]


def test_a_payment_made_before_the_promise_or_after_its_day_does_not_count(merchant, user, clock):
    customer, (invoice,) = owing(merchant, "Budi", (100_000, 40, "IDR"))
    pay_early = InvoiceFactory(credential=invoice.credential, customer=customer, currency="IDR",
                               amount=Decimal(10_000), outstanding=Decimal(10_000), due_at=NOW)
    pay(pay_early, Decimal(10_000), at=NOW - dt.timedelta(hours=1))
    promise = promise_make(customer=customer, user=user, amount="50000", currency="IDR",
                           promised_for=dt.date(2026, 11, 3))
    clock.move_to(jakarta(4, 8))
    pay(invoice, Decimal(50_000), at=jakarta(4, 8))  # a day late
    promise.refresh_from_db()
    assert (promise.state, promise.paid) == ("broken", Decimal(0))


# -- the worklist --------------------------------------------------------------------------------

def rows(user, merchant, **kwargs):
    return [(item.customer.name, item.tier) for item in worklist(user=user, merchants=[merchant], **kwargs).items]


def test_the_worklist_ranks_by_amount_times_days_overdue_and_leaves_out_what_is_held(merchant, user):
    owing(merchant, "Small-old", (10_000, 100, "IDR"), collector=user)      # weight 1,000,000
    owing(merchant, "Big-new", (500_000, 1, "IDR"), collector=user)         # weight   500,000
    owing(merchant, "Middle", (30_000, 40, "IDR"), (1, 1, "IDR"), collector=user)  # 1,200,001
    held_whole, _ = owing(merchant, "Held", (900_000, 90, "IDR"), collector=user)
    partly, (disputed, fine) = owing(merchant, "Partly", (900_000, 90, "IDR"), (1_000, 10, "IDR"), collector=user)
    all_held, (only,) = owing(merchant, "All-held", (900_000, 90, "IDR"), collector=user)
    owing(merchant, "Not-yet-due", (900_000, -5, "IDR"), collector=user)
    owing(merchant, "Someone else's", (900_000, 90, "IDR"), collector=UserFactory())
    owing(merchant, "Dollars", (5, 10, "USD"), collector=user)
    hold_open(customer=held_whole, user=user, reason="Amount disputed")
    hold_open(customer=partly, user=user, reason="Amount disputed", invoice=disputed)
    hold_open(customer=all_held, user=user, reason="Amount disputed", invoice=only)

    listing = worklist(user=user, merchants=[merchant])
    assert listing.currency == "IDR" and dict(listing.currencies) == {"IDR": 4, "USD": 1}
    assert [(i.customer.name, i.weight) for i in listing.items] == [
        ("Middle", Decimal(1_200_001)), ("Small-old", Decimal(1_000_000)), ("Big-new", Decimal(500_000)),
        ("Partly", Decimal(10_000))]
    partly_row = listing.items[3]
    assert (partly_row.overdue, partly_row.held) == (Decimal(1_000), Decimal(900_000))
    assert [i.customer.name for i in worklist(user=user, merchants=[merchant], currency="USD").items] == ["Dollars"]


def test_a_broken_promise_reaches_the_top_the_day_after_its_date_until_someone_follows_it_up(merchant, user, clock):
    big, _ = owing(merchant, "Big", (900_000, 90, "IDR"), collector=user)
    small, _ = owing(merchant, "Small", (1_000, 2, "IDR"), collector=user)
    promise_make(customer=small, user=user, amount="1000", currency="IDR", promised_for=dt.date(2026, 11, 5))
    assert rows(user, merchant) == [("Big", 1), ("Small", 2)]  # waiting on its promise
    clock.move_to(jakarta(5, 23, 59))
    assert rows(user, merchant) == [("Big", 1), ("Small", 2)]  # the promised day is not over
    clock.move_to(jakarta(6, 0, 1))
    # The day after: raised even before the scheduler has settled it ...
    listing = worklist(user=user, merchants=[merchant])
    assert [(i.customer.name, i.tier, i.step) for i in listing.items] == [("Small", 0, "follow_up"), ("Big", 1, "first_call")]
    assert promises_due() == 1
    assert rows(user, merchant) == [("Small", 0), ("Big", 1)]  # ... and after
    assert Promise.objects.get().state == "broken"
    clock.move_to(jakarta(6, 9))
    note_add(customer=small, author=user, text="Called: pays next week")
    listing = worklist(user=user, merchants=[merchant])
    assert [(i.customer.name, i.tier) for i in listing.items] == [("Big", 1), ("Small", 1)]
    assert listing.items[1].last_contact == jakarta(6, 9) and listing.items[1].step == "call_again"


def test_a_collector_sees_their_own_worklist_and_a_manager_anyones(client, merchant, user):
    colleague = UserFactory()
    merchant.members.add(colleague)
    owing(merchant, "Cust-Ani", (1_000, 10, "IDR"), collector=user)
    owing(merchant, "Cust-Tono", (1_000, 20, "IDR"), collector=colleague)
    owing(merchant, "Cust-Nina", (1_000, 30, "IDR"))
    other = MerchantFactory()
    owing(other, "Cust-Eko", (1_000, 40, "IDR"), collector=user)  # assigned, but user is no member of it
    client.force_login(user)
    html = client.get(reverse("worklist")).content.decode()
    assert "Cust-Ani" in html and "Cust-Tono" not in html and "Cust-Nina" not in html and "Cust-Eko" not in html
    r = client.get(reverse("worklist"), {"collector": str(colleague.pk)})
    assert r.status_code == 200 and "not one you may open" in r.content.decode() and "Cust-Tono" not in r.content.decode()
    assert client.get(reverse("worklist"), {"merchant": str(other.pk)}).status_code == 404
    user.user_permissions.add(Permission.objects.get(codename="manage_collections"))
    client.force_login(user)
    assert "Cust-Tono" in client.get(reverse("worklist"), {"collector": str(colleague.pk)}).content.decode()
    html = client.get(reverse("worklist"), {"collector": "none"}).content.decode()
    assert "Cust-Nina" in html and "Cust-Ani" not in html
    html = client.get(reverse("worklist"), {"collector": "all"}).content.decode()
    assert all(name in html for name in ("Cust-Ani", "Cust-Tono", "Cust-Nina")) and "Cust-Eko" not in html
    for bad in ({"page": "x"}, {"page": "999999"}, {"merchant": "-1"}, {"currency": "\u00e9\u00e9\u00e9\u00e9"},
                {"collector": "1; drop"}):
        assert client.get(reverse("worklist"), bad).status_code == 200


def test_recording_a_promise_from_the_worklist_moves_the_customer_to_the_end(client, merchant, user):
    customer, _ = owing(merchant, "Budi", (100_000, 30, "IDR"), collector=user)
    owing(merchant, "Sari", (1_000, 3, "IDR"), collector=user)
    client.force_login(user)
    r = client.post(reverse("promise_create", args=[customer.pk]),
                    {"amount": "100000.00", "currency": "IDR", "promised_for": "2026-11-09", "next": "/worklist/"})
    assert r.status_code == 302 and r["Location"] == "/worklist/"
    assert rows(user, merchant) == [("Sari", 1), ("Budi", 2)]
    html = client.get("/worklist/").content.decode()
    assert "Wait for" in html and "9 Nov 2026" in html
    r = client.post(reverse("promise_create", args=[customer.pk]),
                    {"amount": "1e400", "currency": "IDR", "promised_for": "2026-11-09"}, follow=True)
    assert r.status_code == 200 and "Promise not recorded" in r.content.decode()
    assert Promise.objects.count() == 1


def test_customers_age_counts_invoices_that_fell_due_since_the_last_refresh(merchant, user, clock):
    customer, (invoice,) = owing(merchant, "Budi", (100_000, -1, "IDR"), collector=user)  # due tomorrow
    assert CustomerBalance.objects.get(customer=customer).overdue == 0
    clock.move_to(NOW + dt.timedelta(days=3))
    assert rows(user, merchant) == []
    assert customers_age() == 1
    balance = CustomerBalance.objects.get(customer=customer)
    assert balance.overdue == Decimal(100_000)
    assert [(i.customer.name, i.weight) for i in worklist(user=user, merchants=[merchant]).items] == [
        ("Budi", Decimal(200_000))]  # two days overdue
    assert customers_age() == 0  # nothing new fell due


# -- saved views ---------------------------------------------------------------------------------

def test_views_are_private_or_shared_with_one_merchants_members_and_never_widen_anyones_scope(client, merchant, user):
    both = MerchantFactory()
    both.members.add(user)
    colleague = UserFactory()
    merchant.members.add(colleague)  # a member of `merchant` only
    secret = InvoiceFactory(credential=CredentialFactory(merchant=both), number="SECRET-1")
    saved_view_save(user=user, name="Mine only", url="/customers/?overdue=1")
    saved_view_save(user=user, name="The other merchant", url=f"/invoices/?merchant={both.pk}&_export=csv",
                    shared_with=merchant)
    assert SavedView.objects.get(name="The other merchant").url == f"/invoices/?merchant={both.pk}"
    for bad in ("https://evil.example/invoices/", "//evil.example/aging/", "/admin/", "javascript:alert(1)"):
        with pytest.raises(CollectionsError):
            saved_view_save(user=user, name="bad", url=bad)
    with pytest.raises(CollectionsError):
        saved_view_save(user=colleague, name="x", url="/aging/", shared_with=both)

    client.force_login(colleague)
    html = client.get("/aging/").content.decode()
    assert "The other merchant" in html and "Mine only" not in html
    shared = SavedView.objects.get(name="The other merchant")
    r = client.get(shared.url)
    assert r.status_code in (200, 404) and "SECRET-1" not in r.content.decode()
    assert client.post(reverse("saved_view_delete", args=[shared.pk])).status_code == 404
    outsider = UserFactory()
    client.force_login(outsider)
    assert "The other merchant" not in client.get("/aging/").content.decode()

    client.force_login(user)
    r = client.post(reverse("saved_view_create"), {"name": "Old debt", "url": "/aging/?basis=due", "share": ""})
    assert r.status_code == 302 and r["Location"] == "/aging/?basis=due"
    assert "Old debt" in client.get("/invoices/").content.decode()
    r = client.post(reverse("saved_view_create"), {"name": "x", "url": "/aging/", "share": str(MerchantFactory().pk)})
    assert r.status_code == 404
    assert client.post(reverse("saved_view_delete", args=[shared.pk])).status_code == 302
    assert not SavedView.objects.filter(pk=shared.pk).exists()
    assert list(AuditEntry.objects.filter(action__startswith="view_").values_list("action", flat=True)) == [
        "view_saved", "view_deleted"]
    assert secret.merchant_id == both.pk


def test_held_invoices_stay_in_the_aging_marked_per_bucket_and_a_filter_hides_them(client, merchant, user):
    customer, (disputed, fine) = owing(merchant, "Budi", (700_000, 45, "IDR"), (50_000, 10, "IDR"))
    whole, _ = owing(merchant, "Sari", (20_000, 5, "IDR"))
    hold_open(customer=customer, user=user, reason="Amount disputed", invoice=disputed)
    hold_open(customer=whole, user=user, reason="Amount disputed")
    client.force_login(user)
    html = client.get("/aging/").content.decode()
    assert "Rp 770.000" in html  # everything is still aged
    held_row = html[html.index('data-testid="on-hold"'):]
    held_row = held_row[:held_row.index("</tr>")]
    cells = dict(re.findall(r'data-bucket="([^"]+)">(.*?)</td>', held_row))
    # 31-60 holds the disputed 700,000; 1-30 the 20,000 of the customer held as a whole (not the
    # 50,000 that is not held).
    assert ">Rp 700.000<" in cells["31-60"] and ">Rp 20.000<" in cells["1-30"] and ">Rp 720.000<" in cells["all"]
    assert "held=only" in cells["all"] and "bucket=31-60" in cells["31-60"]
    hidden = client.get("/aging/", {"held": "hide"}).content.decode()
    assert 'data-testid="on-hold"' not in hidden and "Rp 50.000" in hidden and "700.000" not in hidden
    listed = client.get("/invoices/", {"held": "only"}).content.decode()
    assert disputed.number in listed and fine.number not in listed
    assert client.get("/invoices/", {"held": "bogus"}).status_code == 200


def test_an_open_promise_can_be_cancelled_once_and_another_merchants_is_a_404(client, merchant, user):
    customer, _ = owing(merchant, "Budi", (100_000, 5, "IDR"))
    promise = promise_make(customer=customer, user=user, amount="100", currency="IDR", promised_for=dt.date(2026, 11, 9))
    theirs, _ = owing(MerchantFactory(), "Sari", (100_000, 5, "IDR"))
    foreign = promise_make(customer=theirs, user=UserFactory(), amount="100", currency="IDR",
                           promised_for=dt.date(2026, 11, 9))
    client.force_login(user)
    page = client.get(reverse("customer_detail", args=[customer.pk])).content.decode()
    assert 'data-testid="promise"' in page and "Rp 100" in page
    assert client.post(reverse("promise_cancel", args=[foreign.pk])).status_code == 404
    assert client.post(reverse("promise_create", args=[theirs.pk]),
                       {"amount": "1", "currency": "IDR", "promised_for": "2026-11-09"}).status_code == 404
    assert client.get(reverse("promise_cancel", args=[promise.pk])).status_code == 405
    r = client.post(reverse("promise_cancel", args=[promise.pk]), follow=True)
    assert "Promise cancelled" in r.content.decode()
    r = client.post(reverse("promise_cancel", args=[promise.pk]), follow=True)
    assert "Not cancelled" in r.content.decode()
    promise.refresh_from_db()
    foreign.refresh_from_db()
    assert (promise.state, foreign.state) == ("cancelled", "open")
    assert list(AuditEntry.objects.filter(customer=customer).order_by("pk").values_list("action", flat=True)) == [
        "promise_made", "promise_cancelled"]


def test_another_collectors_held_customer_never_hides_one_of_mine(merchant, user):
    owing(merchant, "Mine", (100, 5, "IDR"), collector=user)
    theirs, (held,) = owing(merchant, "Theirs", (100, 5, "IDR"), collector=UserFactory())
    hold_open(customer=theirs, user=user, reason="Amount disputed", invoice=held)
    listing = worklist(user=user, merchants=[merchant])
    assert (listing.total, [i.customer.name for i in listing.items]) == (1, ["Mine"])


def test_a_payment_reversed_and_made_again_counts_once(merchant, user, clock):
    customer, (invoice,) = owing(merchant, "Budi", (100_000, 40, "IDR"))
    promise = promise_make(customer=customer, user=user, amount="150000", currency="IDR",
                           promised_for=dt.date(2026, 11, 6))
    clock.move_to(jakarta(3, 12))
    pay(invoice, Decimal(100_000), at=jakarta(3, 12))
    before = (invoice.status, invoice.outstanding, invoice.paid_at)
    invoice.status, invoice.outstanding = "open", Decimal(100_000)  # the provider reversed it
    invoice.save()
    InvoiceEvent.objects.append([InvoiceEvent(
        invoice=invoice, seen_at=jakarta(3, 13), source="sync", status_before=before[0], outstanding_before=before[1],
        paid_at_before=before[2], status_after="open", outstanding_after=Decimal(100_000), paid_at_after=before[2])])
    clock.move_to(jakarta(3, 14))
    pay(invoice, Decimal(100_000), at=jakarta(3, 14))
    promise.refresh_from_db()
    assert (promise.state, promise.paid) == ("open", Decimal(100_000))
