"""End to end: an Espay invoice uploaded through the batch flow is paid at the (sandbox) gateway,
whose notification reaches the live receiver over HTTP; the invoice shows as paid in the list and
leaves the aging. The apply runs through `transaction.on_commit` of the real request."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from arbook.models import Invoice, Notification
from arbook.selectors.aging import aging_drilldown, invoice_aging

from .conftest import espay_invoice, hook_path, make_credential, notify

pytestmark = pytest.mark.django_db(transaction=True)


def receivable(merchant) -> list[str]:
    cell = aging_drilldown(Invoice.objects.filter(merchant=merchant), as_of=None, basis="due", bucket="all",
                           row="receivable")
    return list(cell.values_list("external_id", flat=True))


def test_an_uploaded_espay_invoice_is_paid_by_its_notification_and_leaves_the_aging(
        merchant, user, sandbox, live_server, signed_in):
    credential = make_credential(merchant, sandbox, "espay")
    invoice = espay_invoice(credential, user, doc_no="AR-2026-0042", amount="2750000")
    assert receivable(merchant) == ["AR-2026-0042"]
    report = invoice_aging(queryset=Invoice.objects.filter(merchant=merchant), as_of=timezone.localdate())
    assert report.tables[0].totals[0].amount == Decimal(2750000)

    answer = notify(sandbox, live_server.url + hook_path(credential), credential, invoice)

    assert answer["status"] == 200 and json.loads(answer["body"])["error_code"] == "0000"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding, invoice.paid_amount) == ("paid", 0, Decimal(2750000))
    assert Notification.objects.get().outcome == "applied"
    # The gateway's own record agrees.
    truth = next(t for t in sandbox.sandbox.providers["espay"].truth() if t["external_id"] == "AR-2026-0042")
    assert truth["status"] == "paid"

    listing = signed_in.get("/invoices/", {"q": "AR-2026-0042"}).content.decode()
    rows = [r for r in re.findall(r"<tr><td.*?</tr>", listing, re.S) if "AR-2026-0042" in r]
    assert len(rows) == 1 and '<span class="badge badge--green"' in rows[0] and ">Paid</span>" in rows[0]
    assert "AR-2026-0042" not in signed_in.get("/invoices/", {"status": "open"}).content.decode()
    assert receivable(merchant) == []
    report = invoice_aging(queryset=Invoice.objects.filter(merchant=merchant), as_of=timezone.localdate())
    assert all(cell.amount == 0 for table in report.tables for cell in table.totals)
