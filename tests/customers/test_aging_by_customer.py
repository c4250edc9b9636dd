"""Aging by customer groups by the customer across gateways (its id), not by a name string; each
group's link opens the invoice list of exactly that customer; the list filters double billing."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from arbook.models import Customer
from arbook.services.customers import customers_refresh
from tests.factories import CredentialFactory, InvoiceFactory

pytestmark = pytest.mark.django_db


def test_groups_are_customers_not_names(signed_in, merchant):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    faspay = CredentialFactory(merchant=merchant, provider="faspay")
    budi = Customer.objects.create(merchant=merchant, name="Budi")
    namesake = Customer.objects.create(merchant=merchant, name="Budi")  # another debtor with the same name
    due = timezone.now() - dt.timedelta(days=10)
    InvoiceFactory(credential=xendit, customer=budi, customer_name="Budi", outstanding=Decimal("100"), due_at=due)
    InvoiceFactory(credential=faspay, customer=budi, customer_name="Budi Santoso", outstanding=Decimal("50"),
                   due_at=due)
    InvoiceFactory(credential=faspay, customer=namesake, customer_name="Budi", outstanding=Decimal("7"), due_at=due)
    page = signed_in.get("/aging/?group=customer")
    assert page.status_code == 200
    report = page.context["report"]
    [table] = report.tables
    groups = {line.group_value: line.total.amount for line in table.lines if line.kind == "group"}
    assert groups == {budi.pk: Decimal("150"), namesake.pk: Decimal("7")}
    line = next(l for l in table.lines if l.group_value == budi.pk)
    assert line.label == "Budi"
    assert f'<a href="/customers/{budi.pk}/">Budi</a>' in page.content.decode()  # the group opens its customer
    link = line.total.url
    assert parse_qs(urlsplit(link).query)["customer_id"] == [str(budi.pk)]
    listed = signed_in.get(link)
    assert sorted(i.outstanding for i in listed.context["page"].rows) == [Decimal("50"), Decimal("100")]


def test_invoice_list_filters_possible_double_billing(signed_in, merchant):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    espay = CredentialFactory(merchant=merchant, provider="espay")
    c = Customer.objects.create(merchant=merchant, name="Siti")
    issued = timezone.now() - dt.timedelta(days=3)
    InvoiceFactory(credential=xendit, customer=c, number="A", amount=Decimal("500000"), issued_at=issued)
    InvoiceFactory(credential=espay, customer=c, number="B", amount=Decimal("500000"),
                   issued_at=issued + dt.timedelta(days=2))
    InvoiceFactory(credential=espay, customer=c, number="C", amount=Decimal("1"), issued_at=issued)
    customers_refresh(customer_ids=[c.pk])
    page = signed_in.get("/invoices/", {"double_billing": "1"})
    assert sorted(i.number for i in page.context["page"].rows) == ["A", "B"]
    assert 'name="double_billing" value="1" id="id_double_billing" checked' in page.content.decode()


@pytest.mark.parametrize("value", ["abc", "-1", "0", "99999999999999999999", "1.5"])
def test_a_bad_customer_id_never_errors(signed_in, value):
    assert signed_in.get("/invoices/", {"customer_id": value}).status_code in (200, 400)


def test_the_invoice_page_links_to_its_customer_and_all_its_invoices(signed_in, merchant):
    c = Customer.objects.create(merchant=merchant, name="Dewi")
    invoice = InvoiceFactory(credential=CredentialFactory(merchant=merchant), customer=c, customer_name="Dewi K.")
    html = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert f'href="/customers/{c.pk}/"' in html and f"?customer_id={c.pk}" in html
