"""The collector's records: notes (with their history), holds (with expiry), assignment, the
audit trail; what the pages show, who may do what, and scoping (another merchant's is a 404)."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from arbook.models import AuditEntry, Customer, Hold, HoldReason, Note
from arbook.selectors.collections import held_invoices_q, invoice_holds
from arbook.selectors.customer_pages import customer_timeline
from arbook.services.collections import (
    DEFAULT_HOLD_REASONS,
    CollectionsError,
    hold_open,
    hold_reason_labels,
    hold_release,
    note_add,
    note_edit,
    promise_make,
)
from arbook.services.customers import customer_merge, customers_refresh
from arbook.models import Invoice
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
NOW = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.timezone.utc)  # 10:00 on 2 November in Jakarta


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def customer_with(merchant, name="Budi", n=2) -> tuple[Customer, list[Invoice]]:
    customer = Customer.objects.create(merchant=merchant, name=name)
    credential = CredentialFactory(merchant=merchant, provider="xendit")
    invoices = [InvoiceFactory(credential=credential, customer=customer, customer_name=name, number=f"{name}-{k}",
                               external_id=f"{name}-{k}", currency="IDR", amount=Decimal("100000"),
                               outstanding=Decimal("100000"), status="open",
                               due_at=NOW - dt.timedelta(days=10 * (k + 1)))
                for k in range(n)]
    customers_refresh(customer_ids=[customer.pk])
    return customer, invoices


def test_a_merchant_without_a_list_of_reasons_is_offered_the_defaults_and_keeps_those_it_uses(merchant, user):
    customer, _ = customer_with(merchant)
    assert hold_reason_labels(merchant=merchant) == list(DEFAULT_HOLD_REASONS)
    hold_open(customer=customer, user=user, reason="Amount disputed")
    # Now the merchant has a list (staff extend and retire entries in the admin): only it is offered.
    assert hold_reason_labels(merchant=merchant) == ["Amount disputed"]
    HoldReason.objects.create(merchant=merchant, label="Old", is_active=False)
    with pytest.raises(CollectionsError):
        hold_open(customer=customer, user=user, reason="Old")
    with pytest.raises(CollectionsError):
        hold_open(customer=customer, user=user, reason="Goods or service not received")


def test_notes_on_a_customer_and_an_invoice_show_on_both_pages_and_are_audited(signed_in, merchant, user):
    customer, (first, second) = customer_with(merchant)
    page = reverse("customer_detail", args=[customer.pk])
    r = signed_in.post(reverse("note_create", args=[customer.pk]), {"text": "Called: pays Friday", "next": page})
    assert r.status_code == 302 and r["Location"] == page
    r = signed_in.post(reverse("note_create", args=[customer.pk]),
                       {"text": "Asked for a copy of this one", "invoice": first.pk})
    assert r.status_code == 302
    notes = list(Note.objects.order_by("pk"))
    assert [(n.text, n.invoice_id, n.author_id) for n in notes] == [
        ("Called: pays Friday", None, user.pk), ("Asked for a copy of this one", first.pk, user.pk)]
    html = signed_in.get(page).content.decode()
    assert "Called: pays Friday" in html and "Asked for a copy of this one" in html
    invoice_html = signed_in.get(reverse("invoice_detail", args=[first.pk])).content.decode()
    assert "Asked for a copy of this one" in invoice_html and "Called: pays Friday" not in invoice_html
    assert "Asked for a copy" not in signed_in.get(reverse("invoice_detail", args=[second.pk])).content.decode()
    audit = list(AuditEntry.objects.order_by("pk").values_list("action", "user_id", "customer_id", "invoice_id"))
    assert audit == [("note_added", user.pk, customer.pk, None), ("note_added", user.pk, customer.pk, first.pk)]
    assert "Note added" in html  # the page's trail
    timeline = customer_timeline(customer=customer)
    assert [(t.kind, t.invoice_id, t.note.text) for t in timeline if t.kind == "note"] == [  # same instant: newest id first
        ("note", first.pk, "Asked for a copy of this one"), ("note", None, "Called: pays Friday")]


def test_an_empty_note_or_another_customers_invoice_is_refused_and_nothing_is_saved(signed_in, merchant):
    customer, _ = customer_with(merchant)
    _other, (foreign,) = customer_with(merchant, "Sari", n=1)
    r = signed_in.post(reverse("note_create", args=[customer.pk]), {"text": "   "}, follow=True)
    assert "Note not saved" in r.content.decode()
    r = signed_in.post(reverse("note_create", args=[customer.pk]), {"text": "x", "invoice": foreign.pk})
    assert r.status_code == 404
    r = signed_in.post(reverse("note_create", args=[customer.pk]), {"text": "x", "invoice": "not-a-number"},
                       follow=True)
    assert r.status_code == 200 and "Note not saved" in r.content.decode()
    assert not Note.objects.exists() and not AuditEntry.objects.exists()


def test_only_the_author_edits_a_note_and_every_earlier_text_is_kept(signed_in, client, merchant, user):
    customer, _ = customer_with(merchant)
    note = note_add(customer=customer, author=user, text="Promised 1 Dec")
    with time_machine.travel(NOW + dt.timedelta(hours=1), tick=False):
        r = signed_in.post(reverse("note_edit", args=[note.pk]), {"text": "Promised 3 Dec"})
    assert r.status_code == 302
    note.refresh_from_db()
    assert note.text == "Promised 3 Dec" and note.edited_at == NOW + dt.timedelta(hours=1)
    assert [(r.text, r.written_at) for r in note.revisions.all()] == [("Promised 1 Dec", NOW)]
    html = signed_in.get(reverse("customer_detail", args=[customer.pk])).content.decode()
    assert "Promised 3 Dec" in html and "Promised 1 Dec" in html and "Earlier text (1)" in html
    colleague = UserFactory()
    merchant.members.add(colleague)
    with pytest.raises(CollectionsError):
        note_edit(note=note, user=colleague, text="Never promised")
    client.force_login(colleague)
    r = client.post(reverse("note_edit", args=[note.pk]), {"text": "Never promised"}, follow=True)
    assert "only the author" in r.content.decode()
    note.refresh_from_db()
    assert note.text == "Promised 3 Dec" and note.revisions.count() == 1
    edits = AuditEntry.objects.filter(action="note_edited")
    assert [(e.user_id, e.data) for e in edits] == [(user.pk, {"before": "Promised 1 Dec", "after": "Promised 3 Dec"})]


def test_holds_cover_an_invoice_or_the_whole_customer_expire_by_themselves_and_are_released(signed_in, merchant,
                                                                                             user):
    customer, (first, second) = customer_with(merchant)
    reason = "Amount disputed"
    r = signed_in.post(reverse("hold_create", args=[customer.pk]),
                       {"reason": reason, "detail": "Says 90k, not 100k", "until": "2026-11-05", "invoice": first.pk})
    assert r.status_code == 302
    hold = Hold.objects.get()
    # It ends at the end of 5 November in the merchant's zone.
    assert hold.ends_at == dt.datetime(2026, 11, 6, tzinfo=JKT)
    assert "On hold: Amount disputed until 2026-11-05" in signed_in.get(
        reverse("invoice_detail", args=[first.pk])).content.decode()
    assert "On hold" not in signed_in.get(reverse("invoice_detail", args=[second.pk])).content.decode()
    held = set(Invoice.objects.filter(held_invoices_q()).values_list("pk", flat=True))
    assert held == {first.pk}
    with time_machine.travel(dt.datetime(2026, 11, 5, 16, 59, tzinfo=dt.timezone.utc), tick=False):
        assert set(Invoice.objects.filter(held_invoices_q()).values_list("pk", flat=True)) == {first.pk}
    with time_machine.travel(dt.datetime(2026, 11, 5, 17, 0, tzinfo=dt.timezone.utc), tick=False):  # 6 Nov, 00:00
        assert not Invoice.objects.filter(held_invoices_q()).exists()
        with pytest.raises(CollectionsError):
            hold_release(hold=hold, user=user)
    whole = hold_open(customer=customer, user=user, reason=reason)  # the same reason, now the merchant's
    assert set(Invoice.objects.filter(held_invoices_q()).values_list("pk", flat=True)) == {first.pk, second.pk}
    assert {h.pk for h in invoice_holds(invoice=second)} == {whole.pk}
    r = signed_in.post(reverse("hold_release", args=[whole.pk]))
    assert r.status_code == 302
    whole.refresh_from_db()
    assert whole.released_by == user and whole.released_at == NOW
    assert set(Invoice.objects.filter(held_invoices_q()).values_list("pk", flat=True)) == {first.pk}
    assert list(AuditEntry.objects.order_by("pk").values_list("action", flat=True)) == [
        "hold_opened", "hold_opened", "hold_released"]


def test_a_hold_needs_one_of_the_merchants_reasons_and_a_day_not_past(signed_in, merchant):
    customer, _ = customer_with(merchant)
    r = signed_in.post(reverse("hold_create", args=[customer.pk]), {"reason": "Because"}, follow=True)
    assert "Not held: Choose one of the listed reasons." in r.content.decode()
    r = signed_in.post(reverse("hold_create", args=[customer.pk]), {"reason": "Other", "until": "2026-11-01"},
                       follow=True)
    assert "Not held: a hold must last until today or later" in r.content.decode()
    r = signed_in.post(reverse("hold_create", args=[customer.pk]), {"reason": "Other", "until": "2026-13-01"},
                       follow=True)
    assert "Not held" in r.content.decode()
    assert not Hold.objects.exists()
    # Until today is fine: the hold ends at midnight in the merchant's zone.
    r = signed_in.post(reverse("hold_create", args=[customer.pk]), {"reason": "Other", "until": "2026-11-02"})
    assert Hold.objects.get().ends_at == dt.datetime(2026, 11, 3, tzinfo=JKT)


def test_bulk_assignment_from_the_list_takes_members_only_and_is_audited(signed_in, merchant, user):
    a, _ = customer_with(merchant, "Andi", n=1)
    b, _ = customer_with(merchant, "Bayu", n=1)
    collector = UserFactory(username="rina")
    merchant.members.add(collector)
    outsider = UserFactory(username="outsider")
    html = signed_in.get(reverse("customer_list")).content.decode()
    assert 'form="assign-form"' in html and ">rina<" in html and "outsider" not in html
    r = signed_in.post(reverse("customers_assign"), {"customer": [a.pk, b.pk], "collector": collector.pk})
    assert r.status_code == 302
    assert set(Customer.objects.values_list("collector_id", flat=True)) == {collector.pk}
    assert "rina" in signed_in.get(reverse("customer_list")).content.decode()
    assert AuditEntry.objects.filter(action="collector_assigned", user=user).count() == 2
    # Somebody who is not a member of the merchant cannot be made its collector.
    r = signed_in.post(reverse("customers_assign"), {"customer": [a.pk], "collector": outsider.pk}, follow=True)
    assert "Nobody assigned" in r.content.decode()
    a.refresh_from_db()
    assert a.collector == collector
    # Unassigning: nobody.
    r = signed_in.post(reverse("customers_assign"), {"customer": [a.pk], "collector": ""})
    a.refresh_from_db()
    assert a.collector is None and AuditEntry.objects.filter(action="collector_assigned").count() == 3


def test_another_merchants_customer_note_or_hold_is_a_404(signed_in, merchant, user):
    stranger = MerchantFactory()
    theirs, (their_invoice,) = customer_with(stranger, "Theirs", n=1)
    note = note_add(customer=theirs, author=UserFactory(), text="private")
    hold = hold_open(customer=theirs, user=None, reason="Other")
    reason = "Other"
    assert signed_in.post(reverse("note_create", args=[theirs.pk]), {"text": "x"}).status_code == 404
    assert signed_in.post(reverse("note_edit", args=[note.pk]), {"text": "x"}).status_code == 404
    assert signed_in.post(reverse("hold_create", args=[theirs.pk]), {"reason": reason}).status_code == 404
    assert signed_in.post(reverse("hold_release", args=[hold.pk])).status_code == 404
    assert signed_in.post(reverse("customers_assign"), {"customer": [theirs.pk], "collector": user.pk}).status_code == 404
    for name in ("note_create", "hold_create"):
        assert signed_in.get(reverse(name, args=[theirs.pk])).status_code == 405
    note.refresh_from_db()
    hold.refresh_from_db()
    assert note.text == "private" and hold.released_at is None
    assert "private" not in signed_in.get(reverse("customer_list")).content.decode()


def test_a_merge_keeps_what_collectors_recorded_about_the_merged_customers(merchant, user):
    kept, _ = customer_with(merchant, "Budi", n=1)
    gone, _ = customer_with(merchant, "Budi S", n=1)
    note = note_add(customer=gone, author=user, text="Calls back tomorrow")
    hold = hold_open(customer=gone, user=user, reason="Other")
    promise = promise_make(customer=gone, user=user, amount="100", currency="IDR", promised_for=dt.date(2026, 11, 9))
    customer_merge(target=kept, others=[gone], user=user)
    note.refresh_from_db()
    hold.refresh_from_db()
    promise.refresh_from_db()
    assert note.customer_id == hold.customer_id == promise.customer_id == kept.pk
    assert set(AuditEntry.objects.values_list("customer_id", flat=True)) == {kept.pk}
