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
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

import gateways
from arbook import bulk
from arbook.celery import enqueue
from arbook.crypto import SecretsUnavailable
from arbook.models import (
    EspayBatch,
    EspayChunk,
    EspayLine,
    EspayVirtualAccount,
    GatewayCredential,
    Invoice,
    Merchant,
)
from arbook.services.credentials import credential_client, secrets_scrub
from arbook.services.espay_files import CHUNK_SIZE, ParsedUpload, Problem, UploadError, parse_upload
from arbook.services.invoice_write import invoices_upload
from gateways.espay import EspayInvoice, SendResult

logger = logging.getLogger(__name__)

__all__ = ["UploadError", "espay_batch_create", "espay_batch_confirm", "espay_batch_send", "espay_batch_retry_failed",
           "espay_batch_discard", "espay_batch_resume", "espay_batch_is_stalled", "espay_doc_nos_sent"]

#: A sending worker holds the batch this long, renewed after every chunk; a batch left SENDING
#: past it (the worker died) is taken over by the next task that runs for it.
LEASE = timedelta(minutes=10)
#: A QUEUED batch whose task never started (broker down at confirm time) may be queued again after this.
REQUEUE_AFTER = timedelta(minutes=2)
#: Waits between tries of one chunk (so len + 1 tries in all); settings.ESPAY_RETRY_DELAYS overrides.
RETRY_DELAYS: tuple[float, ...] = (2.0, 5.0, 15.0)
#: (connect, read) seconds for one sendinvoice call of up to 500 lines; settings.ESPAY_TIMEOUT overrides.
TIMEOUT: tuple[float, float] = (10.0, 90.0)

#: The registered name of `arbook.tasks.espay.espay_batch_send_task`.
SEND_TASK = "arbook.espay_batch_send"

NOT_SENT = "NOT_SENT"
NO_ANSWER = "NO_ANSWER"
VA_UNKNOWN_MESSAGE = ("Listed at Espay by an earlier try of this request whose answer was lost; Espay does not "
                      "repeat the VA numbers, so look them up in the Espay merchant dashboard.")


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# -- validation and creation ---------------------------------------------------------------------

def espay_doc_nos_sent(*, merchant: Merchant, doc_nos: Sequence[str],
                       exclude_batch_id: int | None = None) -> dict[str, str]:
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


def espay_batch_create(*, credential: GatewayCredential, user: AbstractBaseUser | None, file_name: str,
                       content: bytes) -> EspayBatch:
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
    already = espay_doc_nos_sent(merchant=credential.merchant, doc_nos=[line.doc_no for line in parsed.lines])
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
        bulk.insert_objects(EspayLine, [
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
    try:
        enqueue(SEND_TASK, batch_id)
    except Exception:  # kombu/redis connection errors: many classes
        logger.exception("espay batch=%s could not be queued; it stays QUEUED", batch_id)


def espay_batch_confirm(*, batch: EspayBatch, user: AbstractBaseUser | None) -> Outcome:
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
        conflicts = espay_doc_nos_sent(merchant=locked.merchant, doc_nos=doc_nos, exclude_batch_id=locked.pk)
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


def espay_batch_is_stalled(*, batch: EspayBatch, now: datetime | None = None) -> bool:
    """Queued but never picked up (broker was down), or SENDING with its worker's lease run out."""
    now = now or timezone.now()
    if batch.status == EspayBatch.Status.QUEUED:
        return bool(batch.confirmed_at and batch.confirmed_at < now - REQUEUE_AFTER)
    return batch.status == EspayBatch.Status.SENDING and (batch.lease_until is None or batch.lease_until < now)


def espay_batch_resume(*, batch: EspayBatch, user: AbstractBaseUser | None) -> Outcome:
    """Queue a stalled batch again. Harmless if it is not really stalled: only one run can claim it,
    and a resumed run resends open chunks with their stored rq_uuid."""
    batch.refresh_from_db(fields=["status", "confirmed_at", "lease_until"])
    if not espay_batch_is_stalled(batch=batch):
        return Outcome(False, "The batch is not stalled; it is being sent.")
    transaction.on_commit(lambda: _enqueue(batch.pk))
    logger.info("espay batch=%s resumed by user=%s", batch.pk, getattr(user, "pk", None))
    return Outcome(True, "The batch was queued again; it continues where it stopped.")


def espay_batch_discard(*, batch: EspayBatch, user: AbstractBaseUser | None) -> bool:
    """Drop a batch that was never confirmed (its lines go; the file and problems stay for the record)."""
    with transaction.atomic():
        updated = EspayBatch.objects.filter(
            pk=batch.pk, status__in=[EspayBatch.Status.READY, EspayBatch.Status.INVALID]
        ).update(status=EspayBatch.Status.DISCARDED, finished_at=timezone.now())
        if updated:
            EspayLine.objects.filter(batch_id=batch.pk).delete()
    return bool(updated)


def espay_batch_retry_failed(*, batch: EspayBatch, user: AbstractBaseUser | None) -> Outcome:
    """Send again only what did not get listed: chunks with an unknown outcome go again as they
    were (same rq_uuid, same lines); failed lines go in new chunks. A failed doc_no that another
    batch has listed since is marked SUPERSEDED instead of being sent twice."""
    with transaction.atomic():
        Merchant.objects.select_for_update().filter(pk=batch.merchant_id).first()
        locked = EspayBatch.objects.select_for_update().defer("file_content").get(pk=batch.pk)
        if locked.status not in EspayBatch.FINISHED:
            return Outcome(False, "Only a finished batch can retry its failed lines.")
        failed = locked.lines.filter(status=EspayLine.Status.FAILED)
        elsewhere = espay_doc_nos_sent(merchant=locked.merchant, doc_nos=list(failed.values_list("doc_no", flat=True)),
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


def espay_batch_send(*, batch: EspayBatch, client: Any = None,
                     sleep: Callable[[float], None] = time.sleep) -> EspayBatch:
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
            reason = secrets_scrub(text=f"The Espay credential cannot be used: {exc}", credential=credential)
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
            return _refuse(chunk, "AUTH", secrets_scrub(text=f"Espay refused the credential: {exc}",
                                                        credential=credential), maybe=maybe)
        except gateways.BadResponseError as exc:
            text = secrets_scrub(text=str(exc), credential=credential)
            if " was refused (error_code" in text or (exc.status_code is not None and 400 <= exc.status_code < 500):
                return _refuse(chunk, "REFUSED", text, maybe=maybe)
            maybe, last = True, text  # an answer we cannot read: the call may have been applied
            continue
        except gateways.GatewayError as exc:  # ConfigurationError and anything new
            return _refuse(chunk, "ERROR", secrets_scrub(text=str(exc), credential=credential), maybe=maybe)
        _record(batch, chunk, lines, result)
        return ""
    last = secrets_scrub(text=last, credential=credential)
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
        invoice_ids = invoices_upload(batch=batch, chunk=chunk, listed=listed, now=now)
        for line, _vas in listed:
            line.invoice_id = invoice_ids.get(line.doc_no)
        EspayVirtualAccount.objects.filter(line_id__in=[line.pk for line, _ in listed]).delete()
        bulk.insert_objects(EspayVirtualAccount, vas)
        bulk.update(lines, ["status", "result_code", "result_message", "doc_ref_no", "expires_at", "sent_at",
                            "attempts", "maybe_listed", "invoice"])
        EspayChunk.objects.filter(pk=chunk.pk).update(
            status=EspayChunk.Status.DONE, error_code=result.error_code[:16],
            error_message=result.error_message[:2000], finished_at=now)
        _recount(batch.pk)
