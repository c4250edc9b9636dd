"""The Espay batch pages: upload, preview, confirm (once), progress, results, exports, scoping."""
from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from arbook.models import EspayBatch, Invoice
from tests.factories import UserFactory

from .conftest import espay_calls
from .helpers import csv_bytes, row, rows, xlsx_bytes

pytestmark = pytest.mark.django_db


def upload(client, credential, content: bytes, name: str = "batch.csv"):
    return client.post(reverse("espay_batch_new"), {"credential": credential.pk,
                                                    "file": SimpleUploadedFile(name, content)})


def body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8-sig")
    return response.content.decode("utf-8-sig")


def test_upload_preview_confirm_and_see_va_numbers(signed_in, espay_credential, espay_server, eager,
                                                   django_capture_on_commit_callbacks):
    page = signed_in.get(reverse("espay_batch_new"))
    assert page.status_code == 200 and "Excel template (XLSX)" in body(page)
    assert f'value="{espay_credential.pk}"' in body(page)

    response = upload(signed_in, espay_credential, xlsx_bytes(rows(3)), "october.xlsx")
    batch = EspayBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("espay_batch_detail", args=[batch.pk])
    preview = body(signed_in.get(response["Location"]))
    assert "Ready to send" in preview and "Send 3 invoices to Espay" in preview and "INV-00003" in preview
    assert espay_calls(espay_server) == []  # nothing is sent before the confirmation

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        confirm = signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]), follow=True)
        assert "Confirmed: the batch is being sent to Espay." in body(confirm)
    assert len(callbacks) == 1  # the task is enqueued after commit (and ran here, eagerly)
    batch.refresh_from_db()
    assert batch.status == "done" and batch.confirmed_by.pk == batch.uploaded_by.pk
    result = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk])))
    va = batch.lines.get(doc_no="INV-00002").virtual_accounts.get(bank_code="014").va_number
    assert va in result and "VA BCA (014)" in result and "VA numbers (XLSX)" in result

    # Confirming again (double click / another tab) sends nothing more.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]), follow=True)
    assert callbacks == [] and "already confirmed" in body(again)
    assert len(espay_calls(espay_server)) == 1

    listing = body(signed_in.get(reverse("espay_batch_list")))
    assert "october.xlsx" in listing and batch.uploaded_by.get_username() in listing and "Sent" in listing

    # The invoices are in the invoice list and detail (with their VA numbers).
    invoice = Invoice.objects.get(external_id="INV-00002")
    assert "INV-00002" in body(signed_in.get(reverse("invoice_list")))
    assert va in body(signed_in.get(reverse("invoice_detail", args=[invoice.pk])))


def test_errors_first_and_progress_json(signed_in, espay_credential, espay_server, eager,
                                        django_capture_on_commit_callbacks):
    data = rows(4)
    data[2]["member_code"] = "REJECT-3"
    upload(signed_in, espay_credential, csv_bytes(data))
    batch = EspayBatch.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]))
    page = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk])))
    assert page.index("INV-00003") < page.index("INV-00001")  # the failed line comes first
    assert "Member rejected" in page and "Retry 1 failed line" in page
    problems_only = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk]) + "?show=problems"))
    assert "INV-00003" in problems_only and "INV-00001" not in problems_only
    progress = signed_in.get(reverse("espay_batch_progress", args=[batch.pk])).json()
    assert progress | {"id": 0} == progress | {
        "id": 0, "status": "partial", "finished": True, "sent": 3, "failed": 1, "unknown": 0, "pending": 0,
        "chunks_done": 1, "chunks_total": 1, "percent": 100}

    with django_capture_on_commit_callbacks(execute=True):
        retry = signed_in.post(reverse("espay_batch_retry", args=[batch.pk]), follow=True)
    assert "Sending 1 line(s) again." in body(retry)
    assert espay_calls(espay_server)[-1]["total_invoices"] == "1"


def test_progress_page_polls_while_sending(signed_in, espay_credential, espay_server, django_capture_on_commit_callbacks):
    upload(signed_in, espay_credential, csv_bytes(rows(2)))
    batch = EspayBatch.objects.get()
    signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]))  # queued; no worker in this test
    page = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk])))
    assert f'data-espay-progress="{reverse("espay_batch_progress", args=[batch.pk])}"' in page
    assert "/static/arbook/espay-batch.js" in page and "Sending to Espay" in page
    progress = signed_in.get(reverse("espay_batch_progress", args=[batch.pk]))
    assert progress.json()["status"] == "queued" and progress["Cache-Control"].startswith("max-age=0")


def test_every_bad_input_gets_its_message_and_nothing_is_sent(signed_in, espay_credential, espay_server):
    cases = [
        (b"", "empty.csv", "The file is empty."),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.csv", "The file is a PNG image"),
        (b"PK\x03\x04broken" * 20, "broken.xlsx", "damaged"),
        (b"%PDF-1.4", "doc.pdf", "Upload a .csv or .xlsx file"),
        (b"a,b\r\n1,2\r\n", "cols.csv", "missing: doc_no"),
        (csv_bytes(rows(10_001)), "huge.csv", "more than 10,000 rows"),
    ]
    for content, name, message in cases:
        response = upload(signed_in, espay_credential, content, name)
        assert response.status_code == 200, name
        assert message in body(response), name
    assert EspayBatch.objects.count() == 0

    data = rows(3)
    data[0]["amount"] = "12,5"
    data[1]["billing_date"] = "40"
    data[2]["doc_no"] = data[0]["doc_no"]
    response = upload(signed_in, espay_credential, csv_bytes(data), "bad.csv")
    batch = EspayBatch.objects.get()
    page = body(signed_in.get(response["Location"]))
    assert batch.status == "invalid" and "3 problems in 3 rows — nothing was sent" in page
    assert "amount uses a decimal comma" in page and "billing_date must be a day of the month, 01-31" in page
    assert "doc_no appears twice in the file (also on row 2)" in page
    assert reverse("espay_batch_confirm", args=[batch.pk]) not in page  # no confirm button while problems stand
    confirm = signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]), follow=True)
    assert "This batch has problems, so nothing can be sent." in body(confirm)
    problems = body(signed_in.get(reverse("espay_batch_problems", args=[batch.pk, "csv"])))
    assert problems.splitlines()[0] == "row,column,value,problem" and "2,amount,\"12,5\"" in problems
    assert espay_calls(espay_server) == []


def test_oversized_upload_is_refused_before_reading(signed_in, espay_credential):
    response = signed_in.post(reverse("espay_batch_new"), {"credential": espay_credential.pk,
                                                           "file": SimpleUploadedFile("big.csv", b"x" * (6 * 1024 * 1024))})
    assert response.status_code == 413 and "the limit is 5 MB" in body(response)
    assert EspayBatch.objects.count() == 0


def test_templates_download(signed_in):
    csv_file = signed_in.get(reverse("espay_template", args=["csv"]))
    assert csv_file["Content-Disposition"] == 'attachment; filename="espay-invoices-template.csv"'
    assert body(csv_file).startswith("doc_no,member_code,member_name,amount,total_amount,number_of_installment,"
                                     "installment_amount,balance_payment_amount,description,billing_date")
    xlsx_file = signed_in.get(reverse("espay_template", args=["xlsx"]))
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx_file.content)).worksheets[0]
    assert [c.value for c in sheet[1]][:2] == ["doc_no", "member_code"] and sheet["A2"].value == "EXAMPLE-0001"
    assert signed_in.get(reverse("espay_template", args=["pdf"])).status_code == 404


def test_results_export_one_row_per_customer_invoice_with_a_column_per_bank(signed_in, espay_credential, user,
                                                                           espay_server):
    from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send

    data = [row("EXP-1", member_name="=HYPERLINK(\"http://evil\")"), row("EXP-2", member_code="REJECT-1")]
    batch = espay_batch_create(credential=espay_credential, user=user, file_name="e.csv", content=csv_bytes(data))
    espay_batch_confirm(batch=batch, user=user)
    espay_batch_send(batch=batch)
    text = body(signed_in.get(reverse("espay_batch_export", args=[batch.pk, "csv"])))
    lines = text.splitlines()
    assert lines[0] == ("row,doc_no,member_code,member_name,currency,amount,total_amount,billing_date,status,"
                        "result_code,result_message,doc_ref_no,va_expires (Asia/Jakarta),VA BRI (002),"
                        "VA Mandiri (008),VA BNI (009),VA BCA (014)")
    va = batch.lines.get(doc_no="EXP-1").virtual_accounts.get(bank_code="008").va_number
    assert lines[1].startswith("2,EXP-1,M-001,\"'=HYPERLINK(\"\"http://evil\"\")\",IDR,150000.00,")  # neutralized
    assert va in lines[1] and lines[2].startswith("3,EXP-2,REJECT-1") and "Member rejected" in lines[2]

    from openpyxl import load_workbook

    xlsx = signed_in.get(reverse("espay_batch_export", args=[batch.pk, "xlsx"]))
    sheet = load_workbook(io.BytesIO(b"".join(xlsx.streaming_content))).worksheets[0]
    assert sheet["D2"].data_type == "s" and sheet["D2"].value.startswith("'=")
    assert sheet["O2"].value == va and sheet["O2"].data_type == "s"  # a 16-digit VA stays text
    assert signed_in.get(reverse("espay_batch_export", args=[batch.pk, "pdf"])).status_code == 404
    original = signed_in.get(reverse("espay_batch_file", args=[batch.pk]))
    assert original.content == csv_bytes(data)


def test_a_user_of_another_merchant_can_neither_see_nor_send_the_batch(client, signed_in, espay_credential, stranger,
                                                                       espay_server,
                                                                       django_capture_on_commit_callbacks):
    upload(signed_in, espay_credential, csv_bytes(rows(2)))
    batch = EspayBatch.objects.get()
    client.force_login(stranger)
    for name, args in [("espay_batch_detail", [batch.pk]), ("espay_batch_progress", [batch.pk]),
                       ("espay_batch_export", [batch.pk, "csv"]), ("espay_batch_problems", [batch.pk, "csv"]),
                       ("espay_batch_file", [batch.pk])]:
        assert client.get(reverse(name, args=args)).status_code == 404, name
    for name in ("espay_batch_confirm", "espay_batch_retry", "espay_batch_resume", "espay_batch_discard"):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert client.post(reverse(name, args=[batch.pk])).status_code == 404, name
        assert callbacks == []
    batch.refresh_from_db()
    assert batch.status == "ready" and espay_calls(espay_server) == []
    assert "batch.csv" not in body(client.get(reverse("espay_batch_list")))
    # ...and cannot upload with the other merchant's credential either.
    response = upload(client, espay_credential, csv_bytes(rows(1)))
    assert response.status_code == 200 and "Choose one of your merchants" in body(response)
    assert EspayBatch.objects.count() == 1


def test_a_member_without_an_espay_account_is_told_so(client, db):
    client.force_login(UserFactory())
    page = body(client.get(reverse("espay_batch_new")))
    assert "No Espay account to send with" in page
    assert "No batches yet" in body(client.get(reverse("espay_batch_list")))


def test_discard_a_ready_batch(signed_in, espay_credential):
    upload(signed_in, espay_credential, csv_bytes(rows(2)))
    batch = EspayBatch.objects.get()
    response = signed_in.post(reverse("espay_batch_discard", args=[batch.pk]), follow=True)
    assert "was discarded; nothing was sent" in body(response)
    batch.refresh_from_db()
    assert batch.status == "discarded" and batch.lines.count() == 0
    confirm = signed_in.post(reverse("espay_batch_confirm", args=[batch.pk]), follow=True)
    assert "This batch was discarded; nothing was sent." in body(confirm)


def test_detail_page_query_count_does_not_grow_with_lines(signed_in, espay_credential, user, espay_server,
                                                          django_assert_max_num_queries):
    from arbook.services.espay_batch import espay_batch_confirm, espay_batch_create, espay_batch_send

    batch = espay_batch_create(credential=espay_credential, user=user, file_name="q.csv", content=csv_bytes(rows(150)))
    espay_batch_confirm(batch=batch, user=user)
    espay_batch_send(batch=batch)
    with django_assert_max_num_queries(14):
        assert signed_in.get(reverse("espay_batch_detail", args=[batch.pk])).status_code == 200


def test_batch_and_line_badges_come_from_the_status_registry(signed_in, espay_credential, user):
    """The list, the detail heading and each line show the registry's badge of their state."""
    from django.utils.html import escape

    from arbook.models import EspayLine
    from arbook.status import ESPAY_BATCH, ESPAY_LINE

    from .helpers import make_batch

    batches = {s: make_batch(espay_credential, user=user, status=s) for s in EspayBatch.Status}
    listing = body(signed_in.get(reverse("espay_batch_list")))
    for status, batch in batches.items():
        badge = f'<span class="badge badge--{ESPAY_BATCH.colour(status)}">{ESPAY_BATCH.label(status)}</span>'
        assert badge in listing, status
        detail = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk])))
        assert (f'<span class="badge badge--{ESPAY_BATCH.colour(status)}" data-testid="batch-status">'
                f'{ESPAY_BATCH.label(status)}</span>') in detail, status

    batch = batches[EspayBatch.Status.PARTIAL]
    for i, status in enumerate(EspayLine.Status):
        EspayLine.objects.create(batch=batch, row_number=i + 2, doc_no=f"DOC-{i}", member_code="M-1", amount=1,
                                 total_amount=1, number_of_installment=1, installment_amount=1, billing_date="05",
                                 status=status)
    detail = body(signed_in.get(reverse("espay_batch_detail", args=[batch.pk])))
    for status in EspayLine.Status:
        assert f'<span class="badge badge--{ESPAY_LINE.colour(status)}">{escape(ESPAY_LINE.label(status))}</span>' \
            in detail, status
