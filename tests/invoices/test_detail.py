"""/invoices/<id>/: every normalized field, raw status and payload, history, checkout link, VAs."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from arbook.models import EspayBatch, EspayLine, EspayVirtualAccount
from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory, SyncRunFactory

pytestmark = pytest.mark.django_db
JKT = ZoneInfo("Asia/Jakarta")


def test_detail_shows_fields_raw_payload_and_history(signed_in, credential):
    invoice = InvoiceFactory(
        credential=credential, number="INV-77", customer_name="PT Sentosa", customer_email="ap@sentosa.example",
        customer_ref="CUST-9", amount=Decimal("2500000"), outstanding=Decimal("1000000"),
        paid_amount=Decimal("1500000"), status="partially_paid", provider_status="Dibayar Sebagian",
        issued_at=datetime(2025, 4, 1, 9, 15, tzinfo=JKT), due_at=datetime(2025, 4, 15, 17, 0, tzinfo=JKT),
        checkout_url="https://pay.example/inv/77", payment_channel="BCA VA",
        raw={"bill_no": "INV-77", "bill_status": "Dibayar Sebagian", "nested": {"x": 1}})
    run = SyncRunFactory(credential=credential, trigger="manual")
    InvoiceEventFactory(invoice=invoice, sync_run=run, status_before="open", status_after="partially_paid",
                        outstanding_before=Decimal("2500000"), outstanding_after=Decimal("1000000"),
                        seen_at=datetime(2025, 4, 10, 8, 0, tzinfo=JKT))
    InvoiceEventFactory(invoice=invoice, source="notification", status_before="", status_after="open",
                        seen_at=datetime(2025, 4, 1, 9, 20, tzinfo=JKT))
    body = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    for text in ("INV-77", "PT Sentosa", "ap@sentosa.example", "CUST-9", "Rp 2.500.000", "Rp 1.000.000",
                 "Rp 1.500.000", "Partially paid", "Dibayar Sebagian", "2025-04-01 09:15", "2025-04-15 17:00",
                 "BCA VA", 'href="https://pay.example/inv/77"', "Asia/Jakarta", "Faspay Billing"):
        assert text in body, text
    assert "&quot;bill_status&quot;: &quot;Dibayar Sebagian&quot;" in body  # pretty-printed JSON
    assert '"nested": {\n    "x": 1\n  }'.replace('"', "&quot;") in body
    assert f"sync run #{run.pk}" in body and "Notification" in body and "first seen as" in body
    assert body.index("2025-04-10 08:00") < body.index("2025-04-01 09:20")  # newest first


def test_a_non_http_checkout_link_is_not_made_clickable(signed_in, credential):
    invoice = InvoiceFactory(credential=credential, checkout_url="javascript:alert(1)")
    body = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert 'href="javascript:' not in body and "javascript:alert(1)" in body


def test_unknown_amount_is_said_so(signed_in, credential):
    invoice = InvoiceFactory(credential=credential, amount=None)
    assert b"unknown" in signed_in.get(f"/invoices/{invoice.pk}/").content


def test_espay_virtual_accounts_from_the_payload(signed_in, merchant):
    cred = CredentialFactory(merchant=merchant, provider="espay")
    invoice = InvoiceFactory(credential=cred, raw={"list_va": {
        "009": {"bank_code": "009", "va_number": "8871215238775939", "expired": "2025-05-17 14:00:00"},
        "008": {"bank_code": "008", "va_number": "6280615238775939", "expired": "2025-05-17 14:00:00"}}})
    body = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert "6280615238775939" in body and "8871215238775939" in body
    assert body.index("6280615238775939") < body.index("8871215238775939")  # by bank code
    assert "2025-05-17 14:00" in body


def test_espay_virtual_accounts_from_the_batch_lines(signed_in, merchant, user):
    cred = CredentialFactory(merchant=merchant, provider="espay")
    invoice = InvoiceFactory(credential=cred, raw={})
    batch = EspayBatch.objects.create(merchant=merchant, credential=cred, file_name="b.csv", file_content=b"x",
                                      file_size=1, file_sha256="0" * 64, file_kind="csv", uploaded_by=user)
    line = EspayLine.objects.create(batch=batch, row_number=2, doc_no="INV-1", member_code="M1",
                                    amount=Decimal("100000"), total_amount=Decimal("100000"), number_of_installment=1,
                                    installment_amount=Decimal("100000"), billing_date="01", invoice=invoice)
    EspayVirtualAccount.objects.create(line=line, bank_code="014", va_number="3901000012345678",
                                       expires_at=datetime(2025, 6, 1, 23, 59, tzinfo=JKT))
    body = signed_in.get(f"/invoices/{invoice.pk}/").content.decode()
    assert "3901000012345678" in body and "2025-06-01 23:59" in body and f"batch #{batch.pk}" in body


def test_an_espay_invoice_without_va_says_what_happens_next(signed_in, merchant):
    invoice = InvoiceFactory(credential=CredentialFactory(merchant=merchant, provider="espay"), raw={})
    assert b"has not returned a VA number" in signed_in.get(f"/invoices/{invoice.pk}/").content
