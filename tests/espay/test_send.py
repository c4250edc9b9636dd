"""Sending batches through the gateway sandbox: chunks, per-line results, retries, idempotency."""
from __future__ import annotations

from decimal import Decimal

import pytest

from arbook.models import EspayBatch, EspayChunk, EspayLine, EspayVirtualAccount, Invoice, InvoiceEvent
from arbook.selectors.espay import invoice_virtual_accounts
from arbook.services.espay_batch import (
    espay_batch_confirm,
    espay_batch_create,
    espay_batch_retry_failed,
    espay_batch_send,
)
from gateways.espay import EspayInvoice, sendinvoice_signature
from gateways.sandbox import CREDENTIALS
from tests.factories import MerchantFactory

from .conftest import espay_calls, fault, make_credential, sandbox_truth
from .helpers import csv_bytes, row, rows, xlsx_bytes

pytestmark = pytest.mark.django_db


def confirmed(credential, user, data, *, name="batch.csv", content=None) -> EspayBatch:
    batch = espay_batch_create(credential=credential, user=user, file_name=name, content=content or csv_bytes(data))
    assert batch.status == EspayBatch.Status.READY, batch.problems[:3]
    assert espay_batch_confirm(batch=batch, user=user).ok
    return batch


def test_1201_rows_go_out_as_500_500_201_with_stored_rq_uuids_and_valid_signatures(espay_credential, user,
                                                                                    espay_server):
    batch = confirmed(espay_credential, user, None, name="big.xlsx", content=xlsx_bytes(rows(1201)))
    batch = espay_batch_send(batch=batch)

    assert batch.status == EspayBatch.Status.DONE
    assert (batch.sent_count, batch.failed_count, batch.unknown_count) == (1201, 0, 0)
    chunks = list(batch.chunks.order_by("number"))
    assert [c.size for c in chunks] == [500, 500, 201]
    calls = espay_calls(espay_server)
    assert [(c["rq_uuid"], c["total_invoices"], c["count"], c["signature_valid"]) for c in calls] == [
        (c.rq_uuid, str(c.size), c.size, True) for c in chunks]
    assert len({c.rq_uuid for c in chunks}) == 3 and all(c.tries == 1 and c.status == "done" for c in chunks)
    # The lines went out in sheet order, each in exactly one chunk.
    assert list(batch.lines.filter(chunk=chunks[2]).order_by("row_number").values_list("row_number", flat=True)) == \
        list(range(1002, 1203))

    # Each line: VA numbers per bank with expiry, and an open Invoice with an upload event.
    line = batch.lines.get(doc_no="INV-00007")
    truth = {t["external_id"]: t for t in sandbox_truth(espay_server)}
    assert {va.bank_code: va.va_number for va in line.virtual_accounts.all()} == truth["INV-00007"]["vas"]
    assert line.doc_ref_no == truth["INV-00007"]["doc_ref_no"] and line.expires_at == truth["INV-00007"]["expires_at"]
    invoice = line.invoice
    assert (invoice.provider, invoice.status, invoice.external_id, invoice.number) == ("espay", "open", "INV-00007",
                                                                                      "INV-00007")
    assert (invoice.customer_name, invoice.customer_ref) == ("Customer M0007", "M0007")
    assert invoice.amount == invoice.outstanding == Decimal(150000) and invoice.currency == "IDR"
    assert invoice.due_at == line.expires_at and invoice.merchant == espay_credential.merchant
    assert set(invoice.raw["list_va"]) == {"002", "008", "009", "014"}
    assert invoice.raw["list_va"]["014"]["va_number"] == truth["INV-00007"]["vas"]["014"]
    event = invoice.events.get()
    assert (event.source, event.status_after, event.outstanding_after) == ("upload", "open", Decimal(150000))
    assert invoice.last_event_at == invoice.changed_at == event.seen_at  # as-of aging splits on it
    assert Invoice.objects.count() == 1201 and InvoiceEvent.objects.count() == 1201
    assert EspayVirtualAccount.objects.count() == 1201 * 4
    vas = invoice_virtual_accounts(invoice=invoice)
    assert [(v["bank_code"], v["va_number"]) for v in vas] == sorted(truth["INV-00007"]["vas"].items())
    assert vas[0]["bank"] == "BRI (002)" and vas[0]["expires_at"] == line.expires_at


def test_per_line_errors_land_on_the_right_lines_and_retry_sends_only_those(espay_credential, user, espay_server):
    data = rows(6)
    data[1]["member_code"] = "REJECT-7"
    data[4]["member_code"] = "REJECT-8"
    batch = espay_batch_send(batch=confirmed(espay_credential, user, data))
    assert batch.status == EspayBatch.Status.PARTIAL and (batch.sent_count, batch.failed_count) == (4, 2)
    failed = batch.lines.filter(status="failed").order_by("row_number")
    assert [(line.row_number, line.doc_no, line.result_code, line.result_message) for line in failed] == [
        (3, "INV-00002", "0005", "Member rejected"), (6, "INV-00005", "0005", "Member rejected")]
    assert not failed[0].virtual_accounts.exists() and failed[0].invoice is None
    assert Invoice.objects.count() == 4

    outcome = espay_batch_retry_failed(batch=batch, user=user)
    assert outcome.ok and outcome.message == "Sending 2 line(s) again."
    batch = espay_batch_send(batch=EspayBatch.objects.get(pk=batch.pk))
    retry_call = espay_calls(espay_server)[-1]
    assert (retry_call["total_invoices"], retry_call["count"]) == ("2", 2)
    new_chunk = batch.chunks.get(round=2)
    assert retry_call["rq_uuid"] == new_chunk.rq_uuid != batch.chunks.get(round=1).rq_uuid
    assert batch.failed_count == 2 and batch.lines.get(doc_no="INV-00002").attempts == 2
    assert Invoice.objects.count() == 4 and len(sandbox_truth(espay_server)) == 4  # nothing listed twice
    assert list(batch.lines.filter(status="failed").values_list("result_code", flat=True)) == ["0005", "0005"]


def test_timeout_after_sending_is_retried_with_the_same_rq_uuid_and_listed_lines_count_as_sent(
        espay_credential, user, espay_server, settings):
    settings.ESPAY_TIMEOUT = (1, 0.5)
    data = rows(3)
    data[2]["member_code"] = "REJECT-1"
    batch = confirmed(espay_credential, user, data)
    fault(espay_server, kind="hang_after", seconds=1.5)  # the first call is applied, its answer never comes
    batch = espay_batch_send(batch=batch)

    chunk = batch.chunks.get()
    calls = espay_calls(espay_server)
    assert [c["rq_uuid"] for c in calls] == [chunk.rq_uuid, chunk.rq_uuid] and chunk.tries == 2
    assert chunk.maybe_applied
    lines = {line.doc_no: line for line in batch.lines.all()}
    assert lines["INV-00001"].status == lines["INV-00002"].status == EspayLine.Status.ALREADY_LISTED
    assert lines["INV-00001"].result_code == "0002" and "look them up" in lines["INV-00001"].result_message
    assert lines["INV-00003"].status == "failed" and lines["INV-00003"].result_code == "0005"
    assert batch.status == EspayBatch.Status.PARTIAL and batch.sent_count == 2
    # No duplicate anywhere: once at Espay, one invoice each (VA numbers unknown: Espay did not repeat them).
    assert sorted(t["external_id"] for t in sandbox_truth(espay_server)) == ["INV-00001", "INV-00002"]
    invoice = Invoice.objects.get(external_id="INV-00001")
    assert Invoice.objects.count() == 2 and invoice.status == "open" and invoice.raw["va_numbers_known"] is False
    assert invoice.due_at is None and invoice_virtual_accounts(invoice=invoice) == []


def test_a_chunk_that_never_answers_stays_unknown_and_retry_resends_the_same_request(
        espay_credential, user, espay_server, settings):
    settings.ESPAY_TIMEOUT = (1, 0.3)
    settings.ESPAY_RETRY_DELAYS = (0,)
    batch = confirmed(espay_credential, user, rows(2))
    fault(espay_server, kind="hang_after", seconds=0.6, times=2)
    batch = espay_batch_send(batch=batch)
    chunk = batch.chunks.get()
    assert batch.status == EspayBatch.Status.FAILED and batch.unknown_count == 2
    assert chunk.status == EspayChunk.Status.UNKNOWN and chunk.tries == 2
    assert set(batch.lines.values_list("status", flat=True)) == {"unknown"}
    assert "Espay did not answer" in batch.last_error
    assert Invoice.objects.count() == 0

    assert espay_batch_retry_failed(batch=batch, user=user).ok
    batch = espay_batch_send(batch=EspayBatch.objects.get(pk=batch.pk))
    assert [c["rq_uuid"] for c in espay_calls(espay_server)] == [chunk.rq_uuid] * 3
    assert batch.chunks.count() == 1 and batch.status == EspayBatch.Status.DONE
    assert set(batch.lines.values_list("status", flat=True)) == {"already_listed"}
    assert Invoice.objects.count() == 2 and len(sandbox_truth(espay_server)) == 2


def test_a_worker_that_died_mid_call_is_resumed_with_the_same_rq_uuid(espay_credential, user, espay_server):
    from datetime import timedelta

    from django.utils import timezone

    from arbook.services.credentials import credential_client
    from arbook.services.espay_batch import _plan

    batch = confirmed(espay_credential, user, rows(3))
    EspayBatch.objects.filter(pk=batch.pk).update(status="sending", lease_until=timezone.now() - timedelta(seconds=1))
    batch.refresh_from_db()
    (chunk,) = _plan(batch)
    EspayChunk.objects.filter(pk=chunk.pk).update(status="sending", tries=1)
    # What the dead worker's call did at Espay before it died:
    client = credential_client(credential=espay_credential)
    lines = batch.lines.order_by("row_number")
    client.send_invoices(rq_uuid=chunk.rq_uuid, invoices=[
        EspayInvoice(doc_no=x.doc_no, member_code=x.member_code, amount=x.amount, billing_date=x.billing_date)
        for x in lines])

    batch = espay_batch_send(batch=batch)
    assert batch.status == EspayBatch.Status.DONE and batch.sent_count == 3
    assert set(batch.lines.values_list("status", flat=True)) == {"already_listed"}
    assert [c["rq_uuid"] for c in espay_calls(espay_server)] == [chunk.rq_uuid] * 2


def test_confirming_twice_or_running_the_task_twice_sends_once(espay_credential, user, espay_server):
    batch = espay_batch_create(credential=espay_credential, user=user, file_name="b.csv", content=csv_bytes(rows(3)))
    stale_tab = EspayBatch.objects.get(pk=batch.pk)
    assert espay_batch_confirm(batch=batch, user=user).ok
    second = espay_batch_confirm(batch=stale_tab, user=user)
    assert not second.ok and "already confirmed" in second.message
    espay_batch_send(batch=batch)
    espay_batch_send(batch=stale_tab)  # a redelivered task
    assert len(espay_calls(espay_server)) == 1
    assert not espay_batch_confirm(batch=batch, user=user).ok
    assert len(espay_calls(espay_server)) == 1 and Invoice.objects.count() == 3


def test_nothing_is_sent_for_an_invalid_or_unconfirmed_batch(espay_credential, user, espay_server):
    data = rows(3)
    data[0]["amount"] = "abc"
    invalid = espay_batch_create(credential=espay_credential, user=user, file_name="b.csv", content=csv_bytes(data))
    assert invalid.status == "invalid" and invalid.lines.count() == 0
    assert not espay_batch_confirm(batch=invalid, user=user).ok
    ready = espay_batch_create(credential=espay_credential, user=user, file_name="c.csv", content=csv_bytes(rows(2)))
    for batch in (invalid, ready):
        espay_batch_send(batch=batch)
    assert espay_calls(espay_server) == []
    assert EspayBatch.objects.get(pk=ready.pk).status == "ready"


def test_doc_no_already_sent_for_this_merchant_is_a_problem_but_not_for_another_merchant(
        espay_credential, user, espay_server):
    espay_batch_send(batch=confirmed(espay_credential, user, rows(3)))
    again = espay_batch_create(credential=espay_credential, user=user, file_name="again.csv",
                               content=csv_bytes(rows(2, start=3)))
    assert again.status == "invalid"
    assert again.problems == [{"row": 2, "column": "doc_no", "value": "INV-00003",
                               "message": f"already sent for this merchant in batch #{again.pk - 1}"}]
    other = MerchantFactory()
    other.members.add(user)
    elsewhere = make_credential(other, espay_server, options={"comm_code": "OTHERCOMM", "ccy": "IDR"})
    assert espay_batch_create(credential=elsewhere, user=user, file_name="o.csv",
                              content=csv_bytes(rows(2, start=3))).status == "ready"


def test_two_ready_batches_with_the_same_doc_no_only_the_first_confirmation_sends(espay_credential, user, espay_server):
    first = espay_batch_create(credential=espay_credential, user=user, file_name="1.csv", content=csv_bytes(rows(2)))
    second = espay_batch_create(credential=espay_credential, user=user, file_name="2.csv",
                                content=csv_bytes(rows(2, start=2)))
    assert first.status == second.status == "ready"
    assert espay_batch_confirm(batch=first, user=user).ok
    outcome = espay_batch_confirm(batch=second, user=user)
    assert not outcome.ok and "sent by another batch" in outcome.message
    second.refresh_from_db()
    assert second.status == "invalid" and second.problems[0]["row"] == 2 and second.problems[0]["value"] == "INV-00002"


def test_a_refused_credential_sends_nothing_and_says_why_without_the_secret(merchant, user, espay_server):
    credential = make_credential(merchant, espay_server, secrets={"signature_key": "wrong-key-123456"})
    batch = espay_batch_send(batch=confirmed(credential, user, rows(501)))
    assert batch.status == EspayBatch.Status.FAILED and batch.failed_count == 501
    first, second = batch.chunks.order_by("number")
    assert (first.status, second.status) == ("refused", "skipped")
    line = batch.lines.get(row_number=2)
    assert line.result_code == "AUTH" and "refused the credential" in line.result_message
    assert batch.lines.get(doc_no="INV-00501").result_message.startswith("Not sent: Espay refused the credential")
    assert len(espay_calls(espay_server)) == 1 and Invoice.objects.count() == 0
    for text in (batch.last_error, line.result_message, first.error_message):
        assert "wrong-key-123456" not in text and CREDENTIALS["espay"]["signature_key"] not in text


def test_espay_unreachable_fails_the_lines_as_not_sent_and_retry_sends_them(espay_credential, user, espay_server,
                                                                           settings):
    settings.ESPAY_RETRY_DELAYS = (0,)
    batch = confirmed(espay_credential, user, rows(600))
    fault(espay_server, kind="429", times=2)  # refused before anything was applied, twice
    batch = espay_batch_send(batch=batch)
    assert batch.status == EspayBatch.Status.FAILED and batch.failed_count == 600
    assert set(batch.lines.values_list("result_code", flat=True)) == {"NOT_SENT"}
    assert [c.status for c in batch.chunks.order_by("number")] == ["skipped", "skipped"]
    assert len(espay_calls(espay_server)) == 0  # the 429 came before the handler

    assert espay_batch_retry_failed(batch=batch, user=user).ok
    batch = espay_batch_send(batch=EspayBatch.objects.get(pk=batch.pk))
    assert batch.status == EspayBatch.Status.DONE and batch.sent_count == 600
    calls = espay_calls(espay_server)
    assert [c["total_invoices"] for c in calls] == ["500", "100"] and all(c["signature_valid"] for c in calls)
    assert {c["rq_uuid"] for c in calls} == set(batch.chunks.filter(round=2).values_list("rq_uuid", flat=True))


def test_signature_of_the_stored_rq_uuid_verifies(espay_credential, user, espay_server):
    from urllib.parse import parse_qs

    import requests

    batch = espay_batch_send(batch=confirmed(espay_credential, user, [row("SIG-1")]))
    form = {k: v[-1] for k, v in parse_qs(
        requests.get(espay_server.url + "/_sandbox/requests/espay", timeout=5).json()[-1]["body"]).items()}
    chunk = batch.chunks.get()
    assert form["rq_uuid"] == chunk.rq_uuid and form["total_invoices"] == "1"
    assert form["signature"] == sendinvoice_signature(chunk.rq_uuid, form["rq_datetime"], "SGWARBOOK",
                                                      CREDENTIALS["espay"]["signature_key"])


def test_a_garbled_answer_is_retried_with_the_same_rq_uuid(espay_credential, user, espay_server):
    batch = confirmed(espay_credential, user, rows(2))
    fault(espay_server, kind="malformed")  # the sandbox answers garbage (nothing applied)
    batch = espay_batch_send(batch=batch)
    chunk = batch.chunks.get()
    assert chunk.tries == 2 and chunk.maybe_applied and batch.status == EspayBatch.Status.DONE
    # The second try was the first to reach the handler: a real 0000 with VA numbers.
    assert set(batch.lines.values_list("status", flat=True)) == {"sent"}
    assert EspayVirtualAccount.objects.count() == 8
    assert [c["rq_uuid"] for c in espay_calls(espay_server)] == [chunk.rq_uuid]


def test_refused_after_an_unanswered_try_keeps_the_lines_maybe_listed_and_a_retry_resolves_them(
        espay_credential, user, espay_server, settings):
    settings.ESPAY_TIMEOUT = (1, 0.4)
    batch = confirmed(espay_credential, user, rows(2))
    fault(espay_server, kind="hang_after", seconds=0.8)  # try 1: applied, no answer
    fault(espay_server, kind="bad_signature")  # try 2: refused at request level
    batch = espay_batch_send(batch=batch)
    assert batch.status == EspayBatch.Status.FAILED and batch.chunks.get().status == "refused"
    line = batch.lines.get(doc_no="INV-00001")
    assert line.maybe_listed and "may have listed this line" in line.result_message

    espay_batch_retry_failed(batch=batch, user=user)
    batch = espay_batch_send(batch=EspayBatch.objects.get(pk=batch.pk))
    assert batch.status == EspayBatch.Status.DONE
    assert set(batch.lines.values_list("status", flat=True)) == {"already_listed"}
    assert len(sandbox_truth(espay_server)) == 2 and Invoice.objects.count() == 2


def test_uploaded_invoices_belong_to_the_customer_of_their_member_code(espay_credential, user, espay_server):
    data = [row("INV-C1", member_code="M-7"), row("INV-C2", member_code="M-7"), row("INV-C3", member_code="M-8")]
    batch = espay_batch_send(batch=confirmed(espay_credential, user, data))
    assert batch.status == EspayBatch.Status.DONE
    owners = dict(Invoice.objects.filter(credential=espay_credential).values_list("external_id", "customer_id"))
    assert owners["INV-C1"] == owners["INV-C2"] != owners["INV-C3"]
    customer = Invoice.objects.get(external_id="INV-C1").customer
    assert (customer.name, customer.invoice_count, customer.open_count) == ("Customer M-7", 2, 2)
    assert list(customer.identities.values_list("kind", "value")) == [("ref", "M-7")]
