"""Every filter of /invoices/, one test each; all of them live in the query string."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory

from .conftest import notices, numbers, totals

pytestmark = pytest.mark.django_db
UTC = ZoneInfo("UTC")


def test_search_matches_number_customer_email_and_external_id(signed_in, credential):
    InvoiceFactory(credential=credential, number="INV-2024-0042", customer_name="Apotek Sehat", external_id="x-1")
    InvoiceFactory(credential=credential, number="INV-9", customer_name="PT Sinar Jaya", external_id="x-2")
    InvoiceFactory(credential=credential, number="INV-10", customer_name="Toko Baru",
                   customer_email="billing@warung-bahagia.example", external_id="x-3")
    InvoiceFactory(credential=credential, number="INV-11", customer_name="CV Lain", external_id="ab-7731-zz")
    assert numbers(signed_in.get("/invoices/", {"q": "2024-004"})) == ["INV-2024-0042"]
    assert numbers(signed_in.get("/invoices/", {"q": "sinar jaya"})) == ["INV-9"]  # case-insensitive
    assert numbers(signed_in.get("/invoices/", {"q": "bahagia"})) == ["INV-10"]
    assert numbers(signed_in.get("/invoices/", {"q": "7731"})) == ["INV-11"]
    # Shorter than 3 characters: an exact number / external id match, and the page says so.
    short = signed_in.get("/invoices/", {"q": "x-2"})
    assert numbers(short) == ["INV-9"]
    two = signed_in.get("/invoices/", {"q": "IN"})
    assert numbers(two) == [] and any("at least 3 characters" in n for n in notices(two))


def test_customer_filter_is_an_exact_name(signed_in, credential):
    InvoiceFactory(credential=credential, number="A", customer_name="PT Maju")
    InvoiceFactory(credential=credential, number="B", customer_name="PT Maju Bersama")
    assert numbers(signed_in.get("/invoices/", {"customer": "PT Maju"})) == ["A"]


def test_merchant_filter(signed_in, user, credential):
    second = MerchantFactory(name="Second")
    second.members.add(user)
    InvoiceFactory(credential=credential, number="FIRST")
    InvoiceFactory(credential=CredentialFactory(merchant=second), number="SECOND")
    assert numbers(signed_in.get("/invoices/", {"merchant": second.pk})) == ["SECOND"]
    assert sorted(numbers(signed_in.get("/invoices/"))) == ["FIRST", "SECOND"]


def test_credential_filter(signed_in, merchant, credential):
    other = CredentialFactory(merchant=merchant, provider="faspay", label="second account")
    InvoiceFactory(credential=credential, number="ONE")
    InvoiceFactory(credential=other, number="TWO")
    response = signed_in.get("/invoices/", {"credential": other.pk})
    assert numbers(response) == ["TWO"]
    assert b"second account" in response.content  # the choices name the account


def test_provider_filter(signed_in, merchant, credential):
    xendit = CredentialFactory(merchant=merchant, provider="xendit")
    InvoiceFactory(credential=credential, number="FASPAY")
    InvoiceFactory(credential=xendit, number="XENDIT")
    assert numbers(signed_in.get("/invoices/", {"provider": "xendit"})) == ["XENDIT"]


def test_status_filter_takes_several_states(signed_in, credential):
    for status in ("open", "paid", "failed", "expired"):
        InvoiceFactory(credential=credential, number=status.upper(), status=status)
    response = signed_in.get("/invoices/?status=open&status=failed")
    assert sorted(numbers(response)) == ["FAILED", "OPEN"]


def test_overdue_only(signed_in, credential):
    now = timezone.now()
    InvoiceFactory(credential=credential, number="LATE", status="open", due_at=now - timedelta(days=3))
    InvoiceFactory(credential=credential, number="LATE-PARTIAL", status="partially_paid", due_at=now - timedelta(days=1))
    InvoiceFactory(credential=credential, number="NOT-YET", status="open", due_at=now + timedelta(days=3))
    InvoiceFactory(credential=credential, number="PAID-LATE", status="paid", due_at=now - timedelta(days=3))
    InvoiceFactory(credential=credential, number="NO-DUE", status="open", due_at=None)
    assert sorted(numbers(signed_in.get("/invoices/", {"overdue": "1"}))) == ["LATE", "LATE-PARTIAL"]


def test_currency_filter(signed_in, credential):
    InvoiceFactory(credential=credential, number="RUPIAH", currency="IDR")
    InvoiceFactory(credential=credential, number="KRONER", currency="DKK")
    response = signed_in.get("/invoices/", {"currency": "dkk"})
    assert numbers(response) == ["KRONER"]
    assert list(totals(signed_in.get("/invoices/", {"currency": "dkk", "_totals": "1"}))) == ["DKK"]


def test_due_date_range_is_in_the_merchants_time_zone(signed_in, user, credential):
    # 2025-03-01 18:30 UTC is already 2 March in Jakarta (UTC+7), still 1 March in Copenhagen.
    moment = datetime(2025, 3, 1, 18, 30, tzinfo=UTC)
    copenhagen = MerchantFactory(name="Nordisk", timezone="Europe/Copenhagen")
    copenhagen.members.add(user)
    InvoiceFactory(credential=credential, number="JKT", due_at=moment)
    InvoiceFactory(credential=CredentialFactory(merchant=copenhagen), number="CPH", due_at=moment)
    InvoiceFactory(credential=credential, number="EARLIER", due_at=moment - timedelta(days=5))
    assert numbers(signed_in.get("/invoices/", {"due_from": "2025-03-02", "due_to": "2025-03-02"})) == ["JKT"]
    assert numbers(signed_in.get("/invoices/", {"due_from": "2025-03-01", "due_to": "2025-03-01"})) == ["CPH"]
    assert sorted(numbers(signed_in.get("/invoices/", {"due_to": "2025-03-01"}))) == ["CPH", "EARLIER"]


def test_issued_date_range(signed_in, credential):
    jkt = ZoneInfo("Asia/Jakarta")
    InvoiceFactory(credential=credential, number="JAN", issued_at=datetime(2025, 1, 31, 23, 59, tzinfo=jkt))
    InvoiceFactory(credential=credential, number="FEB", issued_at=datetime(2025, 2, 1, 0, 0, tzinfo=jkt))
    InvoiceFactory(credential=credential, number="MAR", issued_at=datetime(2025, 3, 1, 0, 0, tzinfo=jkt))
    assert numbers(signed_in.get("/invoices/", {"issued_from": "2025-02-01", "issued_to": "2025-02-28"})) == ["FEB"]


def test_paid_date_range(signed_in, credential):
    jkt = ZoneInfo("Asia/Jakarta")
    InvoiceFactory(credential=credential, number="PAID-5", status="paid", paid_at=datetime(2025, 5, 5, 9, tzinfo=jkt))
    InvoiceFactory(credential=credential, number="PAID-9", status="paid", paid_at=datetime(2025, 5, 9, 9, tzinfo=jkt))
    InvoiceFactory(credential=credential, number="UNPAID", paid_at=None)
    assert numbers(signed_in.get("/invoices/", {"paid_from": "2025-05-04", "paid_to": "2025-05-06"})) == ["PAID-5"]
    assert sorted(numbers(signed_in.get("/invoices/", {"paid_from": "2025-05-01"}))) == ["PAID-5", "PAID-9"]


def test_outstanding_range(signed_in, credential):
    for n, amount in (("SMALL", "100000"), ("MID", "2500000"), ("BIG", "90000000"), ("CREDIT", "-50000")):
        InvoiceFactory(credential=credential, number=n, outstanding=Decimal(amount))
    response = signed_in.get("/invoices/", {"outstanding_min": "100000", "outstanding_max": "2500000"})
    assert sorted(numbers(response)) == ["MID", "SMALL"]
    assert numbers(signed_in.get("/invoices/", {"outstanding_max": "-1"})) == ["CREDIT"]


def test_filters_combine_and_keep_the_sort_in_the_url(signed_in, credential):
    now = timezone.now()
    InvoiceFactory(credential=credential, number="HIT", status="open", customer_name="PT Abadi",
                   due_at=now - timedelta(days=40))
    InvoiceFactory(credential=credential, number="MISS-STATUS", status="paid", customer_name="PT Abadi",
                   due_at=now - timedelta(days=40))
    InvoiceFactory(credential=credential, number="MISS-NAME", status="open", customer_name="PT Lain",
                   due_at=now - timedelta(days=40))
    response = signed_in.get("/invoices/", {"q": "abadi", "status": "open", "overdue": "1", "sort": "due_at"})
    assert numbers(response) == ["HIT"]
    body = response.content.decode()
    assert 'name="sort" value="due_at"' in body and 'value="abadi"' in body
