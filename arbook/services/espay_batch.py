"""Espay batch upload: validate a spreadsheet, send it in chunks of ≤ 500, record every line.

The flow (issue 6): `espay_batch_create` (parse + validate; nothing can be sent while a problem
stands) → `espay_batch_confirm` (READY → QUEUED exactly once, under a row lock and a conditional
UPDATE, so a double click or a second tab cannot send twice) → the task runs `espay_batch_send`
(claims the batch with a lease, plans chunks whose `rq_uuid` is committed before any call, sends
them, records per-line results, VA numbers and `Invoice` rows) → `espay_batch_retry_failed`.

Never twice, never lost:
- A chunk whose outcome is unknown (read timeout after sending, garbled answer, worker killed
  mid-call) is resent with the same `rq_uuid` and the same lines. Espay keeps doc_nos per
  community code, so a line our first try did list answers "0002 Data already listed"; for a line
  marked `maybe_listed` that answer is recorded as ALREADY_LISTED (sent), not as a failure.
- Espay does not repeat the VA numbers in a 0002 answer and has no call to read them back, so
  for such a line the VA numbers are unknown to arbook: the line, its invoice and the export say
  so ("look them up in the Espay merchant dashboard"). The invoice is still created (it is owed).
- Every line ends SENT, ALREADY_LISTED, FAILED (with Espay's code and message, or NOT_SENT with
  the reason) or UNKNOWN (no answer after the tries; "retry" resends the same request).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.models import (
    EspayBatch,
    EspayChunk,
    EspayLine,
    EspayVirtualAccount,
    GatewayCredential,
    Invoice,
    InvoiceEvent,
    Merchant,
)
from arbook.services.credentials import credential_client, scrub
from arbook.services.espay_files import CHUNK_SIZE, ParsedUpload, Problem, UploadError, parse_upload
from arbook.status import InvoiceStatus
from gateways.espay import EspayInvoice, SendResult

logger = logging.getLogger(__name__)

__all__ = ["UploadError", "espay_batch_create", "espay_batch_confirm", "espay_batch_send", "espay_batch_retry_failed",
           "espay_batch_discard", "espay_batch_resume", "batch_is_stalled", "sent_doc_nos"]

#: A sending worker holds the batch this long, renewed after every chunk; a batch left SENDING
#: past it (the worker died) is taken over by the next task that runs for it.
LEASE = timedelta(minutes=10)
#: A QUEUED batch whose task never started (broker down at confirm time) may be queued again after this.
REQUEUE_AFTER = timedelta(minutes=2)
#: Waits between tries of one chunk (so len + 1 tries in all); settings.ESPAY_RETRY_DELAYS overrides.
RETRY_DELAYS: tuple[float, ...] = (2.0, 5.0, 15.0)
#: (connect, read) seconds for one sendinvoice call of up to 500 lines; settings.ESPAY_TIMEOUT overrides.
TIMEOUT: tuple[float, float] = (10.0, 90.0)

NOT_SENT = "NOT_SENT"
NO_ANSWER = "NO_ANSWER"
VA_UNKNOWN_MESSAGE = ("Listed at Espay by an earlier try of this request whose answer was lost; Espay does not "
                      "repeat the VA numbers, so look them up in the Espay merchant dashboard.")


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# -- validation and creation ---------------------------------------------------------------------

def sent_doc_nos(*, merchant: Merchant, doc_nos: Sequence[str], exclude_batch_id: int | None = None) -> dict[str, str]:
    """doc_no -> where it was sent already, for this merchant: a line of a confirmed batch that is
    listed, unknown or still to be sent, or an existing Espay invoice of the merchant."""
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(doc_nos))
    for start in range(0, len(unique), 2000):
        part = unique[start:start + 2000]
        lines = (EspayLine.objects
                 .filter(batch__merchant=merchant, doc_no__in=part,
                         batch__status__in=[*EspayBatch.ACTIVE, *EspayBatch.FINISHED])
                 .exclude(status__in=[EspayLine.Status.FAILED, EspayLine.Status.SUPERSEDED]))
        if exclude_batch_id is not None:
            lines = lines.exclude(batch_id=exclude_batch_id)
        for doc_no, batch_id in lines.values_list("doc_no", "batch_id"):
            found.setdefault(doc_no, f"already sent for this merchant in batch #{batch_id}")
        invoices = Invoice.objects.filter(merchant=merchant, provider="espay", external_id__in=part)
        if exclude_batch_id is not None:
            invoices = invoices.exclude(espay_lines__batch_id=exclude_batch_id)
        for doc_no in invoices.values_list("external_id", flat=True):
            found.setdefault(doc_no, "already sent for this merchant (it is an Espay invoice in arbook)")
    return found


def _currency(credential: GatewayCredential) -> str:
    return str((credential.options or {}).get("ccy") or "IDR").strip().upper()


def espay_batch_create(*, credential: GatewayCredential, user, file_name: str, content: bytes) -> EspayBatch:
    """Parse and validate an upload into a batch: READY (lines stored, waiting for confirmation)
    or INVALID (every problem stored by row and column; nothing can be sent).

    Raises `UploadError` (a message for the user) when the file as a whole cannot be read; then
    nothing is stored.
    """
    if credential.provider != "espay":
        raise UploadError("That credential is not an Espay credential.")
    currency = _currency(credential)
    parsed: ParsedUpload = parse_upload(content=content, file_name=file_name, currency=currency)
    problems = list(parsed.problems)
    problem_count = parsed.problem_count
    already = sent_doc_nos(merchant=credential.merchant, doc_nos=[line.doc_no for line in parsed.lines])
    if already:
        for line in parsed.lines:
            if line.doc_no in already:
                problems.append(Problem(line.row_number, "doc_no", line.doc_no, already[line.doc_no]))
                problem_count += 1
        problems.sort(key=lambda p: (p.row, p.column))
    status = EspayBatch.Status.INVALID if problem_count else EspayBatch.Status.READY
    lines = parsed.lines if status == EspayBatch.Status.READY else []
    with transaction.atomic():
        batch = EspayBatch.objects.create(
            merchant=credential.merchant, credential=credential, status=status, currency=currency,
            file_name=(file_name or "upload")[-255:], file_content=content, file_size=len(content),
            file_sha256=hashlib.sha256(content).hexdigest(), file_kind=parsed.kind,
            file_encoding=parsed.encoding, file_delimiter=parsed.delimiter, uploaded_by=user,
            problems=[p.as_dict() for p in problems], problem_count=problem_count, notes=parsed.notes,
            row_count=parsed.row_count,
            customer_count=len({line.member_code for line in lines}),
            total_amount=sum((line.amount for line in lines), Decimal(0)),
            chunk_total=-(-len(lines) // CHUNK_SIZE),
        )
        _insert(EspayLine, [
            {"batch_id": batch.pk, "row_number": line.row_number, "doc_no": line.doc_no,
             "member_code": line.member_code, "member_name": line.member_name, "amount": line.amount,
             "total_amount": line.total_amount, "number_of_installment": line.number_of_installment,
             "installment_amount": line.installment_amount, "balance_payment_amount": line.balance_payment_amount,
             "description": line.description, "billing_date": line.billing_date}
            for line in lines])
    logger.info("espay batch=%s created status=%s rows=%d problems=%d", batch.pk, status, parsed.row_count,
                problem_count)
    return batch


# -- confirmation (exactly once) -------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


def _enqueue(batch_id: int) -> None:
    """Hand the batch to a worker. A broker that is down leaves it QUEUED (the page offers to
    queue it again) rather than failing the request that already committed the confirmation."""
    from arbook.tasks.espay import espay_batch_send_task

    try:
        espay_batch_send_task.delay(batch_id)
    except Exception:  # kombu/redis connection errors: many classes
        logger.exception("espay batch=%s could not be queued; it stays QUEUED", batch_id)


def espay_batch_confirm(*, batch: EspayBatch, user) -> Outcome:
    """READY → QUEUED once, then enqueue the send after commit. Confirming again (double click,
    a second tab) finds the batch no longer READY and sends nothing."""
    now = timezone.now()
    with transaction.atomic():
        # One confirmation at a time per merchant, so two batches cannot both pass the
        # "doc_no already sent" check for the same doc_no.
        Merchant.objects.select_for_update().filter(pk=batch.merchant_id).first()
        locked = EspayBatch.objects.select_for_update().defer("file_content").get(pk=batch.pk)
        if locked.status == EspayBatch.Status.INVALID:
            return Outcome(False, "This batch has problems, so nothing can be sent. Fix the file and upload it again.")
        if locked.status == EspayBatch.Status.DISCARDED:
            return Outcome(False, "This batch was discarded; nothing was sent.")
        if locked.status != EspayBatch.Status.READY:
            return Outcome(False, f"This batch was already confirmed (status: {locked.get_status_display().lower()}); "
                                  "nothing was sent again.")
        doc_nos = list(locked.lines.values_list("doc_no", flat=True))
        conflicts = sent_doc_nos(merchant=locked.merchant, doc_nos=doc_nos, exclude_batch_id=locked.pk)
        if conflicts:
            rows = dict(locked.lines.filter(doc_no__in=list(conflicts)).values_list("doc_no", "row_number"))
            problems = sorted((Problem(rows[d], "doc_no", d, why) for d, why in conflicts.items()),
                              key=lambda p: p.row)
            EspayBatch.objects.filter(pk=locked.pk).update(
                status=EspayBatch.Status.INVALID, problems=[p.as_dict() for p in problems],
                problem_count=len(problems))
            return Outcome(False, f"{len(problems)} doc_no(s) were sent by another batch in the meantime; "
                                  "nothing was sent. Remove them and upload the file again.")
        updated = EspayBatch.objects.filter(pk=locked.pk, status=EspayBatch.Status.READY).update(
            status=EspayBatch.Status.QUEUED, confirmed_by=user, confirmed_at=now, rounds=1)
        if updated != 1:
            return Outcome(False, "This batch was already confirmed; nothing was sent again.")
        transaction.on_commit(lambda: _enqueue(locked.pk))
    logger.info("espay batch=%s confirmed by user=%s", batch.pk, getattr(user, "pk", None))
    return Outcome(True, "Confirmed: the batch is being sent to Espay.")


def batch_is_stalled(batch: EspayBatch, *, now=None) -> bool:
    """Queued but never picked up (broker was down), or SENDING with its worker's lease run out."""
    now = now or timezone.now()
    if batch.status == EspayBatch.Status.QUEUED:
        return bool(batch.confirmed_at and batch.confirmed_at < now - REQUEUE_AFTER)
    return batch.status == EspayBatch.Status.SENDING and (batch.lease_until is None or batch.lease_until < now)


def espay_batch_resume(*, batch: EspayBatch, user) -> Outcome:
    """Queue a stalled batch again. Harmless if it is not really stalled: only one run can claim it,
    and a resumed run resends open chunks with their stored rq_uuid."""
    batch.refresh_from_db(fields=["status", "confirmed_at", "lease_until"])
    if not batch_is_stalled(batch):
        return Outcome(False, "The batch is not stalled; it is being sent.")
    transaction.on_commit(lambda: _enqueue(batch.pk))
    logger.info("espay batch=%s resumed by user=%s", batch.pk, getattr(user, "pk", None))
    return Outcome(True, "The batch was queued again; it continues where it stopped.")


def espay_batch_discard(*, batch: EspayBatch, user) -> bool:
    """Drop a batch that was never confirmed (its lines go; the file and problems stay for the record)."""
    with transaction.atomic():
        updated = EspayBatch.objects.filter(
            pk=batch.pk, status__in=[EspayBatch.Status.READY, EspayBatch.Status.INVALID]
        ).update(status=EspayBatch.Status.DISCARDED, finished_at=timezone.now())
        if updated:
            EspayLine.objects.filter(batch_id=batch.pk).delete()
    return bool(updated)


def espay_batch_retry_failed(*, batch: EspayBatch, user) -> Outcome:
    """Send again only what did not get listed: chunks with an unknown outcome go again as they
    were (same rq_uuid, same lines); failed lines go in new chunks. A failed doc_no that another
    batch has listed since is marked SUPERSEDED instead of being sent twice."""
    with transaction.atomic():
        Merchant.objects.select_for_update().filter(pk=batch.merchant_id).first()
        locked = EspayBatch.objects.select_for_update().defer("file_content").get(pk=batch.pk)
        if locked.status not in EspayBatch.FINISHED:
            return Outcome(False, "Only a finished batch can retry its failed lines.")
        failed = locked.lines.filter(status=EspayLine.Status.FAILED)
        elsewhere = sent_doc_nos(merchant=locked.merchant, doc_nos=list(failed.values_list("doc_no", flat=True)),
                                 exclude_batch_id=locked.pk)
        if elsewhere:
            failed.filter(doc_no__in=list(elsewhere)).update(
                status=EspayLine.Status.SUPERSEDED, result_code="", result_message="Sent by another batch since.")
        again = failed.filter(status=EspayLine.Status.FAILED).update(
            status=EspayLine.Status.PENDING, result_code="", result_message="")
        unknown = locked.lines.filter(status=EspayLine.Status.UNKNOWN).count()
        if not again and not unknown:
            _recount(locked.pk)
            return Outcome(False, "There are no failed lines to send again.")
        EspayBatch.objects.filter(pk=locked.pk, status__in=EspayBatch.FINISHED).update(
            status=EspayBatch.Status.QUEUED, rounds=F("rounds") + 1, finished_at=None, last_error="",
            confirmed_at=timezone.now())
        _recount(locked.pk)
        transaction.on_commit(lambda: _enqueue(locked.pk))
    logger.info("espay batch=%s retry: %d failed line(s), %d unknown", batch.pk, again, unknown)
    return Outcome(True, f"Sending {again + unknown} line(s) again.")


# -- sending ----------------------------------------------------------------------------------------

def _recount(batch_id: int) -> dict[str, int]:
    counts = dict(EspayLine.objects.filter(batch_id=batch_id).values_list("status").annotate(n=Count("id")))
    sent = counts.get(EspayLine.Status.SENT, 0) + counts.get(EspayLine.Status.ALREADY_LISTED, 0)
    values = {"sent_count": sent, "failed_count": counts.get(EspayLine.Status.FAILED, 0),
              "unknown_count": counts.get(EspayLine.Status.UNKNOWN, 0)}
    EspayBatch.objects.filter(pk=batch_id).update(**values)
    return {**values, "pending": counts.get(EspayLine.Status.PENDING, 0)}


def _claim(batch: EspayBatch) -> bool:
    """QUEUED → SENDING (or take over a SENDING batch whose worker's lease ran out)."""
    now = timezone.now()
    return bool(EspayBatch.objects.filter(pk=batch.pk).filter(
        Q(status=EspayBatch.Status.QUEUED) | Q(status=EspayBatch.Status.SENDING, lease_until__lt=now)
    ).update(status=EspayBatch.Status.SENDING, lease_until=now + LEASE,
             started_at=Coalesce(F("started_at"), Value(now))))


def _plan(batch: EspayBatch) -> list[EspayChunk]:
    """Put the lines still to send into new chunks of ≤ 500, each with its rq_uuid, committed
    before any call. Chunks already open (planned, in flight, unknown) keep their lines."""
    open_states = list(EspayChunk.OPEN)
    with transaction.atomic():
        todo = list(batch.lines.filter(status=EspayLine.Status.PENDING)
                    .filter(Q(chunk__isnull=True) | ~Q(chunk__status__in=open_states))
                    .order_by("row_number").values_list("pk", flat=True))
        number = (batch.chunks.order_by("-number").values_list("number", flat=True).first() or 0)
        for start in range(0, len(todo), CHUNK_SIZE):
            ids = todo[start:start + CHUNK_SIZE]
            number += 1
            chunk = EspayChunk.objects.create(batch=batch, number=number, round=batch.rounds or 1,
                                              rq_uuid=str(uuid.uuid4()), size=len(ids))
            EspayLine.objects.filter(pk__in=ids).update(chunk=chunk)
        chunks = list(batch.chunks.filter(status__in=open_states).order_by("number"))
        EspayBatch.objects.filter(pk=batch.pk).update(chunk_total=len(chunks), chunk_done=0)
    return chunks


def _espay_invoice(line: EspayLine) -> EspayInvoice:
    return EspayInvoice(
        doc_no=line.doc_no, member_code=line.member_code, member_name=line.member_name, amount=line.amount,
        total_amount=line.total_amount, number_of_installment=line.number_of_installment,
        installment_amount=line.installment_amount, balance_payment_amount=line.balance_payment_amount,
        description=line.description, billing_date=line.billing_date,
    )


def espay_batch_send(*, batch: EspayBatch, client=None, sleep: Callable[[float], None] = time.sleep) -> EspayBatch:
    """Send a confirmed batch (the Celery task calls this). Safe to run twice: only the run that
    claims the batch sends; a rerun after a crash resumes the open chunks with their rq_uuids."""
    if not _claim(batch):
        logger.info("espay batch=%s not claimed (status %s); nothing to do", batch.pk, batch.status)
        batch.refresh_from_db()
        return batch
    batch.refresh_from_db()
    credential = batch.credential
    reason = ""
    if client is None:
        try:
            client = credential_client(credential=credential, timeout=tuple(_setting("ESPAY_TIMEOUT", TIMEOUT)),
                                       max_retries=0)
        except (SecretsUnavailable, gateways.ConfigurationError) as exc:
            reason = scrub(f"The Espay credential cannot be used: {exc}", credential=credential)
    try:
        chunks = _plan(batch)
        delays = tuple(_setting("ESPAY_RETRY_DELAYS", RETRY_DELAYS))
        for index, chunk in enumerate(chunks):
            if reason:
                _skip(chunks[index:], reason)
                break
            reason = _send_chunk(batch, chunk, client, delays=delays, sleep=sleep)
            EspayBatch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() + LEASE,
                                                          chunk_done=F("chunk_done") + 1)
    except Exception as exc:
        # A bug or a database failure mid-round: leave the batch SENDING with its lease expired,
        # so "Resume" (or the next task) continues; an in-flight chunk is resent with its rq_uuid.
        logger.exception("espay batch=%s stopped unexpectedly", batch.pk)
        EspayBatch.objects.filter(pk=batch.pk).update(
            lease_until=timezone.now(), last_error=f"Sending stopped unexpectedly ({type(exc).__name__}); "
                                                   "use Resume to continue where it stopped.")
        raise
    return _finish(batch, reason)


def _skip(chunks: Sequence[EspayChunk], reason: str) -> None:
    """Chunks not sent because an earlier one stopped the round: their lines fail as NOT_SENT."""
    ids = [c.pk for c in chunks if c.status == EspayChunk.Status.PLANNED]
    with transaction.atomic():
        EspayChunk.objects.filter(pk__in=ids).update(status=EspayChunk.Status.SKIPPED, finished_at=timezone.now())
        EspayLine.objects.filter(chunk_id__in=ids, status=EspayLine.Status.PENDING).update(
            status=EspayLine.Status.FAILED, result_code=NOT_SENT, result_message=f"Not sent: {reason}"[:255])


def _finish(batch: EspayBatch, reason: str) -> EspayBatch:
    counts = _recount(batch.pk)
    if counts["failed_count"] == 0 and counts["unknown_count"] == 0 and counts["pending"] == 0:
        status = EspayBatch.Status.DONE
    elif counts["sent_count"] == 0:
        status = EspayBatch.Status.FAILED
    else:
        status = EspayBatch.Status.PARTIAL
    EspayBatch.objects.filter(pk=batch.pk).update(status=status, finished_at=timezone.now(), lease_until=None,
                                                  last_error=reason[:2000])
    batch.refresh_from_db()
    logger.info("espay batch=%s finished status=%s sent=%d failed=%d unknown=%d", batch.pk, status,
                counts["sent_count"], counts["failed_count"], counts["unknown_count"])
    return batch


def _send_chunk(batch: EspayBatch, chunk: EspayChunk, client, *, delays: Sequence[float],
                sleep: Callable[[float], None]) -> str:
    """Send one chunk, retrying with the same rq_uuid. Returns "" when Espay answered per line,
    else the reason the round stops (the lines then say why)."""
    lines = list(chunk.lines.order_by("row_number"))
    if not lines:
        EspayChunk.objects.filter(pk=chunk.pk).update(status=EspayChunk.Status.DONE, finished_at=timezone.now())
        return ""
    invoices = [_espay_invoice(line) for line in lines]
    maybe = chunk.maybe_applied or chunk.status == EspayChunk.Status.SENDING  # a worker died mid-call
    credential = batch.credential
    last = ""
    for attempt in range(len(delays) + 1):
        if attempt:
            sleep(delays[attempt - 1])
        now = timezone.now().replace(microsecond=0)
        # Committed before the call: if this process dies now, the next run knows the call may have gone out.
        EspayChunk.objects.filter(pk=chunk.pk).update(status=EspayChunk.Status.SENDING, tries=F("tries") + 1,
                                                      rq_datetime=now, maybe_applied=maybe)
        if maybe:
            EspayLine.objects.filter(chunk=chunk).update(maybe_listed=True)
            for line in lines:
                line.maybe_listed = True
        try:
            result = client.send_invoices(rq_uuid=chunk.rq_uuid, invoices=invoices, rq_datetime=now)
        except gateways.OutcomeUnknownError as exc:
            maybe, last = True, str(exc)
            # Mark before the retry so a crash between tries still counts the first one.
            EspayChunk.objects.filter(pk=chunk.pk).update(maybe_applied=True)
            continue
        except gateways.TransientError as exc:
            # A 5xx may come from a proxy after Espay applied the call; a refused connection or
            # a 429 means nothing was applied.
            if exc.status_code is not None and exc.status_code >= 500:
                maybe = True
            last = str(exc)
            continue
        except gateways.AuthError as exc:
            return _refuse(chunk, "AUTH", scrub(f"Espay refused the credential: {exc}", credential=credential),
                           maybe=maybe)
        except gateways.BadResponseError as exc:
            text = scrub(str(exc), credential=credential)
            if " was refused (error_code" in text or (exc.status_code is not None and 400 <= exc.status_code < 500):
                return _refuse(chunk, "REFUSED", text, maybe=maybe)
            maybe, last = True, text  # an answer we cannot read: the call may have been applied
            continue
        except gateways.GatewayError as exc:  # ConfigurationError and anything new
            return _refuse(chunk, "ERROR", scrub(str(exc), credential=credential), maybe=maybe)
        _record(batch, chunk, lines, result)
        return ""
    last = scrub(last, credential=credential)
    tries = len(delays) + 1
    with transaction.atomic():
        if maybe:
            EspayChunk.objects.filter(pk=chunk.pk).update(
                status=EspayChunk.Status.UNKNOWN, maybe_applied=True, error_code=NO_ANSWER,
                error_message=last[:2000], finished_at=timezone.now())
            EspayLine.objects.filter(chunk=chunk).update(
                status=EspayLine.Status.UNKNOWN, result_code=NO_ANSWER, maybe_listed=True,
                result_message=(f"No answer from Espay after {tries} tries; it may have listed this line. "
                                "Retry sends the same request again, so nothing is listed twice.")[:255])
            return f"Espay did not answer chunk {chunk.number} after {tries} tries ({last})"
        EspayChunk.objects.filter(pk=chunk.pk).update(
            status=EspayChunk.Status.SKIPPED, error_code=NOT_SENT, error_message=last[:2000],
            finished_at=timezone.now())
        EspayLine.objects.filter(chunk=chunk).update(
            status=EspayLine.Status.FAILED, result_code=NOT_SENT,
            result_message=f"Not sent: Espay could not be reached ({last})"[:255])
    return f"Espay could not be reached ({last})"


def _refuse(chunk: EspayChunk, code: str, message: str, *, maybe: bool) -> str:
    """A request-level refusal: this try listed nothing. If an earlier try of the chunk went
    unanswered, its lines keep `maybe_listed`, so a later retry (new rq_uuid) that gets 0002 for
    them records them as sent."""
    line_message = message
    if maybe:
        line_message = f"{message} An earlier try went unanswered and may have listed this line; retry to find out."
    with transaction.atomic():
        EspayChunk.objects.filter(pk=chunk.pk).update(status=EspayChunk.Status.REFUSED, error_code=code,
                                                      error_message=message[:2000], finished_at=timezone.now())
        EspayLine.objects.filter(chunk=chunk).update(status=EspayLine.Status.FAILED, result_code=code,
                                                     result_message=line_message[:255], attempts=F("attempts") + 1)
    return message


def _update_lines(lines: Sequence[EspayLine], names: Sequence[str]) -> None:
    """`bulk_update` in one statement built directly: Django's bulk_update spends ~1 s of Python per
    500 rows × 9 fields resolving CASE expressions. PostgreSQL: UPDATE ... FROM jsonb_to_recordset;
    SQLite: the CASE ... WHEN id SQL that bulk_update would write."""
    if not lines:
        return
    fields = [EspayLine._meta.get_field(name) for name in names]
    postgres = connection.vendor == "postgresql"
    params: list[Any] = []
    sets = []
    quote = connection.ops.quote_name
    if postgres:
        # One JSON parameter unpacked by jsonb_to_recordset: a join, linear in the rows (a CASE is
        # rows × rows), and no thousands of placeholders for the driver to parse.
        payload = json.dumps([
            {"id": line.pk, **{f"c{i}": getattr(line, field.attname) for i, field in enumerate(fields)}}
            for line in lines], cls=DjangoJSONEncoder)
        record = ", ".join(["id bigint", *[f"c{i} {field.cast_db_type(connection)}" for i, field in enumerate(fields)]])
        assignments = ", ".join(f"{quote(field.column)} = v.c{i}" for i, field in enumerate(fields))
        sql = (f"UPDATE {quote(EspayLine._meta.db_table)} AS t SET {assignments} "
               f"FROM jsonb_to_recordset(%s::jsonb) AS v({record}) WHERE t.id = v.id")
        with connection.cursor() as cursor:
            cursor.execute(sql, [payload])
        return
    for field in fields:
        whens = " ".join("WHEN %s THEN %s" for _ in lines)
        sets.append(f"{quote(field.column)} = CASE {quote('id')} {whens} ELSE {quote(field.column)} END")
        for line in lines:
            params += [line.pk, field.get_db_prep_save(getattr(line, field.attname), connection)]
    sql = (f"UPDATE {quote(EspayLine._meta.db_table)} SET {', '.join(sets)} "
           f"WHERE {quote('id')} IN ({', '.join(['%s'] * len(lines))})")
    params += [line.pk for line in lines]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _insert(model, rows: Sequence[dict[str, Any]], *, need_ids: bool = False) -> list[int]:
    """Insert many new rows given as {attname: value} (fields left out take their default).

    PostgreSQL: COPY, about ten times faster than INSERT for the ~7 rows a sent line makes, and no
    model instances (50 µs each) are built; ids come from the table's sequence first when asked.
    Other databases: `bulk_create`. Returns the new ids when `need_ids`."""
    if not rows:
        return []
    if connection.vendor != "postgresql":
        objs = [model(**row) for row in rows]
        model.objects.bulk_create(objs, batch_size=1000)
        return [obj.pk for obj in objs]
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not f.primary_key and not f.generated]
    ids: list[int] = []
    with connection.cursor() as cursor:
        if need_ids:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                           [meta.db_table, len(rows)])
            ids = [pk for (pk,) in cursor.fetchall()]
        plan = []
        for f in fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                default = timezone.now()
            else:
                default = f.get_default()
            plan.append((f.attname, f.name, default, _copy_adapter(f)))
        columns = ", ".join(quote(c) for c in (["id"] if need_ids else []) + [f.column for f in fields])
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for index, row in enumerate(rows):
                values = [ids[index]] if need_ids else []
                for attname, name, default, adapt in plan:
                    value = row[attname] if attname in row else row.get(name, default)
                    values.append(adapt(value) if adapt else value)
                copy.write_row(values)
    return ids


def _copy_adapter(field) -> Callable[[Any], Any] | None:
    """How a value goes into COPY: psycopg adapts str, int, bool, Decimal and aware datetimes
    itself (None = as is); JSON goes as its text; anything else through the field."""
    if isinstance(field, models.JSONField):
        return lambda value: None if value is None else json.dumps(value, cls=field.encoder or DjangoJSONEncoder)
    if isinstance(field, (models.CharField, models.TextField, models.IntegerField, models.BooleanField,
                          models.DecimalField, models.DateTimeField, models.ForeignKey)):
        return None
    return lambda value: field.get_db_prep_save(value, connection)


def _va_json(va) -> dict[str, Any]:
    return {"bank_code": va.bank_code, "va_number": va.va_number,
            "expired": va.expires_at.isoformat() if va.expires_at else None, "description": va.description}


def _record(batch: EspayBatch, chunk: EspayChunk, lines: Sequence[EspayLine], result: SendResult) -> None:
    """Store one answer: per-line status, VA numbers, and an open `Invoice` (+ event) per listed line."""
    now = timezone.now()
    sent_at = result.sent_at or now
    vas: list[dict[str, Any]] = []
    listed: list[tuple[EspayLine, list]] = []
    for line in lines:
        answer = result.results.get(line.doc_no)
        line.attempts += 1
        line.sent_at = sent_at
        if answer is None or answer.missing:
            # Espay answered but not about this line: it may or may not be listed.
            line.status, line.result_code = EspayLine.Status.FAILED, "MISSING"
            line.result_message = "Espay's answer did not mention this line; retry sends it again safely."
            line.maybe_listed = True
        elif answer.ok:
            line.status, line.result_code = EspayLine.Status.SENT, answer.code
            line.result_message = (answer.message or "success")[:255]
            line.doc_ref_no = answer.doc_ref_no[:64]
            expiries = [va.expires_at for va in answer.vas if va.expires_at is not None]
            line.expires_at = min(expiries) if expiries else None
            vas.extend({"line_id": line.pk, "bank_code": va.bank_code[:8], "va_number": va.va_number[:64],
                        "expires_at": va.expires_at, "description": va.description[:255]} for va in answer.vas)
            listed.append((line, list(answer.vas)))
        elif answer.already_listed and line.maybe_listed:
            line.status, line.result_code = EspayLine.Status.ALREADY_LISTED, answer.code
            line.result_message = VA_UNKNOWN_MESSAGE[:255]
            listed.append((line, []))
        else:
            line.status, line.result_code = EspayLine.Status.FAILED, answer.code[:16]
            line.result_message = (answer.message or "failed")[:255]
    with transaction.atomic():
        invoice_ids = _upsert_invoices(batch, chunk, listed, now=now)
        for line, _vas in listed:
            line.invoice_id = invoice_ids.get(line.doc_no)
        EspayVirtualAccount.objects.filter(line_id__in=[line.pk for line, _ in listed]).delete()
        _insert(EspayVirtualAccount, vas)
        _update_lines(lines, ["status", "result_code", "result_message", "doc_ref_no", "expires_at", "sent_at",
                              "attempts", "maybe_listed", "invoice"])
        EspayChunk.objects.filter(pk=chunk.pk).update(
            status=EspayChunk.Status.DONE, error_code=result.error_code[:16],
            error_message=result.error_message[:2000], finished_at=now)
        _recount(batch.pk)


def _upsert_invoices(batch: EspayBatch, chunk: EspayChunk, listed: Sequence[tuple[EspayLine, list]], *,
                     now) -> dict[str, int]:
    """An open Invoice per listed line (provider espay, outstanding = amount, due = VA expiry), and
    an `upload` event for each new one; returns doc_no -> invoice id. An invoice that exists already
    (same credential and doc_no) keeps its state: it is linked, and given the VA numbers if it had none."""
    if not listed:
        return {}
    docs = [line.doc_no for line, _ in listed]
    existing = {i.external_id: i for i in Invoice.objects.filter(credential_id=batch.credential_id,
                                                                 external_id__in=docs)}
    new: list[dict[str, Any]] = []
    touched: list[Invoice] = []
    for line, vas in listed:
        list_va = {va.bank_code: _va_json(va) for va in vas}
        raw = {
            "source": "espay_batch", "batch_id": batch.pk, "line_id": line.pk, "row_number": line.row_number,
            "rq_uuid": chunk.rq_uuid, "doc_no": line.doc_no, "doc_ref_no": line.doc_ref_no,
            "member_code": line.member_code, "member_name": line.member_name, "description": line.description,
            "billing_date": line.billing_date, "amount": str(line.amount), "total_amount": str(line.total_amount),
            "number_of_installment": line.number_of_installment,
            "installment_amount": str(line.installment_amount),
            "balance_payment_amount": None if line.balance_payment_amount is None else str(line.balance_payment_amount),
            "list_va": list_va, "va_numbers_known": bool(list_va),
            "result": line.result_code,
        }
        banks = ", ".join(list_va)
        invoice = existing.get(line.doc_no)
        if invoice is None:
            new.append({
                "merchant_id": batch.merchant_id, "credential_id": batch.credential_id, "provider": "espay",
                "external_id": line.doc_no, "number": line.doc_no, "customer_name": line.member_name,
                "customer_ref": line.member_code, "currency": batch.currency, "amount": line.amount,
                "outstanding": line.amount, "paid_amount": Decimal(0), "status": InvoiceStatus.OPEN,
                "provider_status": "LISTED", "issued_at": line.sent_at, "due_at": line.expires_at,
                "payment_channel": f"VA {banks}" if banks else "VA", "raw": raw, "first_seen_at": now,
                "last_synced_at": now, "last_event_at": now,  # its upload event below
            })
        elif list_va and not (invoice.raw or {}).get("list_va"):
            invoice.raw = {**(invoice.raw or {}), **raw}
            invoice.due_at = invoice.due_at or line.expires_at
            invoice.payment_channel = invoice.payment_channel or f"VA {banks}"
            touched.append(invoice)
    ids = {doc_no: invoice.pk for doc_no, invoice in existing.items()}
    if new:
        new_ids = _insert(Invoice, new, need_ids=True)
        ids.update(zip((row["external_id"] for row in new), new_ids))
        # The first event of a new invoice: no previous one, so prev_seen_at stays null.
        _insert(InvoiceEvent, [
            {"invoice_id": invoice_id, "seen_at": now, "source": InvoiceEvent.Source.UPLOAD, "status_before": "",
             "status_after": InvoiceStatus.OPEN, "outstanding_before": None, "outstanding_after": row["outstanding"],
             "note": f"Espay batch #{batch.pk}, row {row['raw']['row_number']}, rq_uuid {chunk.rq_uuid}"[:255]}
            for row, invoice_id in zip(new, new_ids)])
    if touched:
        Invoice.objects.bulk_update(touched, ["raw", "due_at", "payment_channel"], batch_size=500)
    # A payment notification that arrived before its invoice existed waits for it: settle it now
    # (Espay has no list API, so no sync would ever bring these invoices).
    from arbook.services.notifications import notifications_apply_pending

    notifications_apply_pending(credential=batch.credential)
    return ids
