"""The customer pages: list (filters, sort, keyset pages, export), a customer's page, merge and
split, suggestions and the statement downloads; scoping, query counts and bad parameters."""
from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from openpyxl import load_workbook
from pypdf import PdfReader

from arbook.models import Customer, CustomerIdentity, Invoice, InvoiceEvent
from arbook.selectors.customer_pages import customer_timeline
from arbook.services.customers import customers_refresh, name_key
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
JKT = zoneinfo.ZoneInfo("Asia/Jakarta")
NOW = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)  # 10:00 in Jakarta


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=JKT)


def make_customer(merchant, name, *, invoices=(), email=None, credential=None):
    """A customer with invoices given as (number, due day, outstanding, currency[, status])."""
    customer = Customer.objects.create(merchant=merchant, name=name, name_key=name_key(name))
    if email:
        CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value=email.lower(),
                                        shown=email, provider="xendit")
    credential = credential or CredentialFactory(merchant=merchant, provider="xendit")
    for number, due, outstanding, currency, *status in invoices:
        state = status[0] if status else "open"
        InvoiceFactory(credential=credential, customer=customer, customer_name=name, number=number,
                       external_id=number, currency=currency, amount=outstanding or Decimal("100"),
                       outstanding=outstanding, status=state, issued_at=at(due) - dt.timedelta(days=30),
                       due_at=at(due), paid_at=at(due) if state == "paid" else None)
    customers_refresh(customer_ids=[customer.pk])
    customer.refresh_from_db()
    return customer


@pytest.fixture
def book(merchant):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    faspay = CredentialFactory(merchant=merchant, provider="faspay")
    maju = make_customer(merchant, "PT Maju", email="AP@maju.id", credential=xendit, invoices=[
        ("M-1", "2026-10-20", Decimal("100000"), "IDR"), ("M-2", "2026-12-01", Decimal("10.50"), "USD")])
    InvoiceFactory(credential=faspay, customer=maju, number="M-3", external_id="M-3", amount=Decimal("5000"),
                   outstanding=Decimal("5000"), due_at=at("2026-11-20"), issued_at=at("2026-10-20"))
    customers_refresh(customer_ids=[maju.pk])
    sinar = make_customer(merchant, "CV Sinar", credential=xendit, invoices=[
        ("S-1", "2026-11-15", Decimal("900000"), "IDR")])
    lunas = make_customer(merchant, "Toko Lunas", credential=faspay, invoices=[
        ("L-1", "2026-09-01", Decimal(0), "IDR", "paid")])
    return {"maju": maju, "sinar": sinar, "lunas": lunas}


def names(response) -> list[str]:
    return [c.name for c in response.context["table"].records]


# -- the list -------------------------------------------------------------------------------------

def test_list_shows_outstanding_per_currency_overdue_days_and_gateways(signed_in, book):
    response = signed_in.get(reverse("customer_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert names(response)[:2] == ["PT Maju", "CV Sinar"]  # most overdue first, then the rest
    assert "Rp 105.000" in html and "USD 10.50" in html
    assert "12 days" in html  # due 2026-10-20, today 2026-11-01 in Jakarta
    assert "Faspay Billing, Xendit" in html
    assert reverse("customer_detail", args=[book["maju"].pk]) in html


@pytest.mark.parametrize("query, expected", [
    ({"q": "maju"}, ["PT Maju"]),
    ({"q": "ap@MAJU.id"}, ["PT Maju"]),
    ({"q": "@maju"}, ["PT Maju"]),
    ({"provider": "faspay"}, ["PT Maju", "Toko Lunas"]),
    ({"currency": "usd"}, ["PT Maju"]),
    ({"overdue": "1"}, ["PT Maju"]),
    ({"currency": "IDR", "outstanding_min": "200000"}, ["CV Sinar"]),
    ({"currency": "IDR", "outstanding_max": "200000"}, ["PT Maju"]),
])
def test_list_filters(signed_in, book, query, expected):
    response = signed_in.get(reverse("customer_list"), query)
    assert response.status_code == 200
    assert sorted(names(response)) == sorted(expected)
    assert not response.context["notices"]


def test_search_finds_a_phone_in_another_form(signed_in, merchant, book):
    CustomerIdentity.objects.create(merchant=merchant, customer=book["sinar"], kind="phone", value="+6281234567890",
                                    shown="081234567890")
    response = signed_in.get(reverse("customer_list"), {"q": "0812-3456-7890"})
    assert names(response) == ["CV Sinar"]


def test_outstanding_sort_needs_a_currency_when_there_are_several(signed_in, book):
    response = signed_in.get(reverse("customer_list"), {"sort": "-outstanding"})
    assert "Choose a currency to sort" in " ".join(response.context["notices"])
    response = signed_in.get(reverse("customer_list"), {"sort": "-outstanding", "currency": "IDR"})
    assert not response.context["notices"]
    assert names(response) == ["CV Sinar", "PT Maju"]


@pytest.mark.parametrize("sort, expected", [
    ("name", ["CV Sinar", "PT Maju", "Toko Lunas"]),
    ("-invoice_count", ["PT Maju", "CV Sinar", "Toko Lunas"]),
    ("-last_paid_at", ["Toko Lunas", "CV Sinar", "PT Maju"]),
])
def test_list_sorts(signed_in, book, sort, expected):
    response = signed_in.get(reverse("customer_list"), {"sort": sort})
    if sort == "-invoice_count":  # a tie between CV Sinar and Toko Lunas is broken by id, descending
        expected = ["PT Maju", "Toko Lunas", "CV Sinar"]
    assert names(response) == expected


@pytest.mark.parametrize("sort", ["name", "-oldest_open_due", "invoice_count", "-outstanding"])
def test_keyset_pages_walk_every_customer_once(signed_in, merchant, sort):
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    for i in range(30):
        make_customer(merchant, f"Customer {i:02d}", credential=cred, invoices=[
            (f"K-{i}-{j}", f"2026-{9 + i % 3:02d}-{1 + i % 27:02d}", Decimal(1000 * (i % 5 + 1)), "IDR")
            for j in range(i % 3)])
    seen, query = [], {"sort": sort, "size": "25"}
    while True:
        response = signed_in.get(reverse("customer_list"), query)
        assert response.status_code == 200 and not response.context["notices"]
        seen += names(response)
        page = response.context["page"]
        if not page.has_next:
            break
        query = {"sort": sort, "size": "25", "after": page.next_cursor}
    expected = 30 if sort != "-outstanding" else Customer.objects.filter(balances__currency="IDR").count()
    assert len(seen) == len(set(seen)) == expected
    # Back from the last page.
    last = signed_in.get(reverse("customer_list"), {"sort": sort, "size": "25", "last": "1"})
    assert names(last) == seen[-len(names(last)):]


def test_list_queries_stay_constant(signed_in, merchant):
    cred = CredentialFactory(merchant=merchant, provider="xendit")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert signed_in.get(reverse("customer_list"), {"currency": "IDR", "sort": "-outstanding"}).status_code == 200
        return len(queries)

    make_customer(merchant, "First", credential=cred, invoices=[("F-1", "2026-10-01", Decimal(5), "IDR")])
    small = count()
    for i in range(40):
        make_customer(merchant, f"More {i}", credential=cred, invoices=[
            (f"N-{i}", "2026-10-01", Decimal(5), "IDR"), (f"U-{i}", "2026-10-01", Decimal(5), "USD")])
    assert count() == small
    with CaptureQueriesContext(connection) as queries:
        signed_in.get(reverse("customer_list"))
    # session, user, merchants, page, balances, the collectors offered for the bulk assignment,
    # and the navigation's saved views
    assert len(queries) <= 8, [q["sql"][:80] for q in queries.captured_queries]


@pytest.mark.parametrize("query", [
    {"sort": "xyz"}, {"sort": "--name"}, {"after": "garbage"}, {"before": "%00"}, {"outstanding_min": "NaN"},
    {"outstanding_max": "1e999999", "currency": "IDR"}, {"currency": "rupiah"}, {"size": "²"}, {"provider": "paypal"},
    {"merchant": "999999999999999999999"}, {"q": "x" * 500}, {"size": "7"},
    {"sort": "invoice_count", "after": "WyJpbnZvaWNlX2NvdW50IiwidiIsIk5hTiIsMV0"},
    {"outstanding_min": "5"},
])
def test_bad_parameters_never_500(signed_in, book, query):
    response = signed_in.get(reverse("customer_list"), query)
    assert response.status_code == 200
    assert response.context["notices"]


def test_an_export_with_a_bad_filter_is_refused(signed_in, book):
    assert signed_in.get(reverse("customer_list"), {"_export": "csv", "currency": "rupiah"}).status_code == 400


def test_export_csv_and_xlsx_of_the_filtered_list(signed_in, book):
    response = signed_in.get(reverse("customer_list"), {"_export": "csv", "provider": "faspay", "sort": "name"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:4] == ["Merchant", "Customer", "Currency", "Outstanding"]
    body = [r[1:5] for r in rows[1:]]
    assert body == [["PT Maju", "IDR", "105000.00", "2"], ["PT Maju", "USD", "10.50", "1"], ["Toko Lunas", "", "", ""]]
    assert rows[1][6] == "12"  # days overdue

    response = signed_in.get(reverse("customer_list"), {"_export": "xlsx", "currency": "IDR", "sort": "-outstanding"})
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert [v[1] for v in values[1:]] == ["CV Sinar", "PT Maju", "PT Maju"]
    assert values[1][3] == 900000


# -- scoping --------------------------------------------------------------------------------------

@pytest.fixture
def foreign():
    other = MerchantFactory()
    return make_customer(other, "Not Yours", invoices=[("Z-1", "2026-10-01", Decimal(5), "IDR")])


def test_another_merchants_customer_is_a_404_everywhere(signed_in, book, foreign):
    for name in ("customer_detail", "customer_statement"):
        assert signed_in.get(reverse(name, args=[foreign.pk])).status_code == 404
    assert signed_in.post(reverse("customer_merge", args=[foreign.pk]), {"other": [book["maju"].pk]}).status_code == 404
    assert signed_in.post(reverse("customer_merge", args=[book["maju"].pk]), {"other": [foreign.pk]}).status_code == 404
    assert signed_in.post(reverse("customer_split", args=[foreign.pk]), {"identity": [1]}).status_code == 404
    assert "Not Yours" not in names(signed_in.get(reverse("customer_list")))
    assert Customer.objects.filter(pk=foreign.pk).exists()


def test_a_user_without_merchants_sees_an_empty_list(client, foreign):
    client.force_login(UserFactory())
    response = client.get(reverse("customer_list"))
    assert response.status_code == 200 and b"No merchants to show" in response.content
    assert client.get(reverse("customer_suggestions")).status_code == 200


def test_pages_need_sign_in(client, book):
    assert client.get(reverse("customer_list")).status_code == 302


# -- a customer's page ----------------------------------------------------------------------------

def test_customer_page(signed_in, merchant, book):
    maju = book["maju"]
    first = Invoice.objects.get(number="M-1")
    InvoiceEvent.objects.create(invoice=first, seen_at=at("2026-10-25"), status_before="open",
                                status_after="partially_paid", outstanding_before=Decimal("150000"),
                                outstanding_after=Decimal("100000"))
    twin = InvoiceFactory(credential=CredentialFactory(merchant=merchant, provider="munio"), customer=maju,
                          number="M-1-AGAIN", amount=first.amount, outstanding=first.amount, currency="IDR",
                          issued_at=first.issued_at + dt.timedelta(days=2), due_at=first.due_at)
    customers_refresh(customer_ids=[maju.pk])
    response = signed_in.get(reverse("customer_detail", args=[maju.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "PT Maju" in html and "AP@maju.id" in html  # identity, as shown
    assert [inv.number for inv in response.context["table"].records] == ["M-2", "M-3", "M-1-AGAIN", "M-1"]
    assert reverse("invoice_detail", args=[twin.pk]) in html
    assert response.context["duplicates"] and "Possible double billing" in html
    assert "Payment" in html and "Rp 50.000" in html  # the timeline's drop of the outstanding
    assert {t.currency for t in response.context["aging"].tables} == {"IDR", "USD"}
    assert "Rp 205.000" in html  # the IDR balance, with the twin


def test_customer_page_queries_do_not_grow_with_its_invoices(signed_in, merchant):
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    customer = make_customer(merchant, "Busy", credential=cred, invoices=[("B-0", "2026-10-01", Decimal(5), "IDR")])

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert signed_in.get(reverse("customer_detail", args=[customer.pk])).status_code == 200
        return len(queries)

    small = count()
    for i in range(1, 80):
        inv = InvoiceFactory(credential=cred, customer=customer, number=f"B-{i}", currency="IDR" if i % 2 else "USD",
                             due_at=at("2026-10-01"))
        InvoiceEvent.objects.create(invoice=inv, seen_at=at("2026-10-02"), status_before="open", status_after="paid")
    CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value="b@busy.id")
    customers_refresh(customer_ids=[customer.pk])
    # A short page reads the invoices without an issue date too (one more query); a full one does not.
    # 15 for the customer's data, up to 7 for the collector's records (notes, holds, the reasons
    # offered, the collectors offered, the audit trail, the promises), 1 for the saved views, 2
    # for reminders (those on the timeline, the address they go to).
    assert count() <= small <= 25


def test_timeline_is_the_newest_events_of_all_its_invoices(merchant):
    """The timeline reads only the invoices with the latest `last_event_at`; it must still equal
    the newest events across every invoice of the customer, ties on the cut-off included."""
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    customer = make_customer(merchant, "Many", credential=cred, invoices=[])
    other = make_customer(merchant, "Other", credential=cred, invoices=[("O-1", "2026-10-01", Decimal(5), "IDR")])
    InvoiceEvent.objects.create(invoice=Invoice.objects.get(number="O-1"), seen_at=at("2026-10-30"),
                                status_before="open", status_after="paid")
    for i in range(12):
        inv = InvoiceFactory(credential=cred, customer=customer, number=f"T-{i}", due_at=at("2026-10-01"))
        # Invoice i has i % 4 + 1 events; several invoices share their latest moment (ties).
        for j in range(i % 4 + 1):
            InvoiceEvent.objects.create(invoice=inv, seen_at=at("2026-10-01") + dt.timedelta(hours=3 * j + i % 3),
                                        status_before="open", status_after="partially_paid")
    naive = list(InvoiceEvent.objects.filter(invoice__customer=customer).order_by("-seen_at", "-id")
                 .values_list("id", flat=True))
    for limit in (1, 3, 5, 8, 13, 40):
        got = [t.event.pk for t in customer_timeline(customer=customer, limit=limit) if t.event]
        assert got == naive[:limit], limit
    assert customer_timeline(customer=other, limit=5)[0].invoice_number == "O-1"


# -- merge, split, suggestions --------------------------------------------------------------------

def test_suggestions_and_merge_from_them(signed_in, merchant, user):
    a = make_customer(merchant, "PT. Maju Jaya", invoices=[("A-1", "2026-10-01", Decimal(5), "IDR")])
    b = make_customer(merchant, "maju jaya, pt", invoices=[("B-1", "2026-10-01", Decimal(7), "IDR")])
    response = signed_in.get(reverse("customer_suggestions"))
    assert response.status_code == 200
    assert [c.pk for c in response.context["suggestions"][0].customers] == sorted([a.pk, b.pk], key=lambda pk: (
        Customer.objects.get(pk=pk).name, pk))
    response = signed_in.post(reverse("customer_merge", args=[a.pk]),
                              {"other": [b.pk], "next": reverse("customer_suggestions")}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("customer_suggestions")
    assert "Merged maju jaya, pt into PT. Maju Jaya: 1 invoice moved." in response.content.decode()
    assert not Customer.objects.filter(pk=b.pk).exists()
    a.refresh_from_db()
    assert a.invoice_count == 2
    assert not signed_in.get(reverse("customer_suggestions")).context["suggestions"]


def test_merge_needs_a_choice_and_answers_only_post(signed_in, book):
    maju = book["maju"]
    assert signed_in.get(reverse("customer_merge", args=[maju.pk])).status_code == 405
    response = signed_in.post(reverse("customer_merge", args=[maju.pk]), {"other": ["x"]}, follow=True)
    assert "Select a valid choice" in response.content.decode() or "Choose" in response.content.decode()
    response = signed_in.post(reverse("customer_merge", args=[maju.pk]), {"other": [maju.pk]}, follow=True)
    assert "Choose another customer" in response.content.decode()


def test_split_moves_identities_and_their_invoices(signed_in, merchant, user):
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    customer = Customer.objects.create(merchant=merchant, name="Two People")
    one = CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value="one@x.id")
    CustomerIdentity.objects.create(merchant=merchant, customer=customer, kind="email", value="two@x.id")
    InvoiceFactory(credential=cred, customer=customer, customer_email="one@x.id", number="ONE")
    InvoiceFactory(credential=cred, customer=customer, customer_email="two@x.id", number="TWO")
    customers_refresh(customer_ids=[customer.pk])
    response = signed_in.post(reverse("customer_split", args=[customer.pk]), {"identity": [one.pk], "name": "One"},
                              follow=True)
    new = Customer.objects.get(name="One")
    assert response.redirect_chain[-1][0] == reverse("customer_detail", args=[new.pk])
    assert list(new.invoices.values_list("number", flat=True)) == ["ONE"]
    one.refresh_from_db()
    assert one.customer_id == new.pk and one.decided_by_id == user.pk
    # Splitting off every identity is refused by the service, with its reason.
    response = signed_in.post(reverse("customer_split", args=[new.pk]), {"identity": [one.pk]}, follow=True)
    assert "Not split" in response.content.decode()


# -- the statement --------------------------------------------------------------------------------

def test_statement_pdf_has_the_customer_and_its_total(signed_in, book):
    response = signed_in.get(reverse("customer_statement", args=[book["maju"].pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"] and "2026-11-01" in response["Content-Disposition"]
    data = b"".join(response.streaming_content)
    assert data.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "PT Maju" in text and "Rp 105.000" in text and "USD 10.50" in text
    assert "2026-10-03 to 2026-11-01" in text  # the default period: the last 30 days


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_statement_csv_and_xlsx(signed_in, book, fmt):
    response = signed_in.get(reverse("customer_statement", args=[book["maju"].pk]),
                             {"format": fmt, "as_of": "2026-11-01", "from": "2026-10-01", "to": "2026-10-31"})
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    else:
        rows = [[c.value for c in r] for r in load_workbook(io.BytesIO(data)).active.iter_rows()]
    totals = {r[1]: str(r[8]) for r in rows if r[0] == "Total owed"}
    assert totals == {"IDR": "105000.00", "USD": "10.50"} or totals == {"IDR": "105000", "USD": "10.5"}


@pytest.mark.parametrize("query", [{"as_of": "0000-00-00"}, {"as_of": "2026-02-30"}, {"from": "garbage"},
                                   {"to": "99999-01-01"}, {"format": "docx"},
                                   {"from": "2026-10-10", "to": "2026-10-01"}])
def test_statement_bad_parameters_answer_400_with_a_notice(signed_in, book, query):
    response = signed_in.get(reverse("customer_statement", args=[book["maju"].pk]), query)
    assert response.status_code == 400
    assert b"Nothing was downloaded" in response.content and b"statement-form" in response.content


def test_customer_page_links_and_nav(signed_in, book):
    invoice = Invoice.objects.get(number="S-1")
    html = signed_in.get(reverse("invoice_detail", args=[invoice.pk])).content.decode()
    assert reverse("customer_detail", args=[book["sinar"].pk]) in html
    html = signed_in.get(reverse("invoice_list")).content.decode()
    assert reverse("customer_detail", args=[book["sinar"].pk]) in html
    assert f'href="{reverse("customer_list")}"' in html  # the main navigation


def test_merchant_filter_when_the_user_has_several(signed_in, user, book):
    second = MerchantFactory(name="Second Shop", timezone="Asia/Jayapura")
    second.members.add(user)
    make_customer(second, "Far East", invoices=[("F-1", "2026-10-31", Decimal(5), "IDR")])
    response = signed_in.get(reverse("customer_list"))
    assert "Far East" in names(response) and "Second Shop" in response.content.decode()  # the merchant column
    response = signed_in.get(reverse("customer_list"), {"merchant": str(second.pk)})
    assert names(response) == ["Far East"]
    # Overdue is counted in each merchant's own zone: due 2026-10-31 is a day late in Jayapura too.
    assert "Far East" in names(signed_in.get(reverse("customer_list"), {"overdue": "1"}))
