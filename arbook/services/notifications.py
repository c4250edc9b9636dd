"""Payment notifications: receive (store raw + verify, synchronously), then apply (in a task).

Each provider's protocol (signature, fields, what a delivery claims, the reply it expects) lives
in its gateway module (`parse_notification`, returning a `gateways.notify.RemoteNotification`);
this module stores, confirms, applies and settles, and names no provider field.

Receiving (`notification_receive`, called by the view for `/hooks/<provider>/<token>/`):
every delivery is stored as a `Notification` row with its verification result *before* anything
is applied, and answered in the provider's own format. Only a verified delivery is applied; the
apply runs in a Celery task enqueued on commit, so the receiver answers within milliseconds.

| provider | verification (RESEARCH.md) | success reply | dedupe key | ordering key |
|---|---|---|---|---|
| Espay | PAYMENTREPORT signature over `key, rq_datetime, order_id` (A4); comm_code must be the credential's | 200 JSON signed with PAYMENTREPORT-RS, error_code 0000 | order_id, rq_datetime (what is signed) | rq_datetime |
| Xendit | `x-callback-token` equals `secrets["callback_token"]` (C4) | 200 | id, status, updated | `updated` (the invoice's own last change) |
| Faspay | `sha1(md5(username + password + transaction_number))` (B3) | 200 JSON `response_code` 00 | transaction_number, payment_id | the confirmation's time |
| FarPay | Standard Webhooks HMAC-SHA256, 5-minute replay window (E) | 200 | webhook-id | webhook-timestamp |

Failures answer 401 (bad signature or token), 404 (unknown hook URL, or a provider that sends no
notifications), 400 (malformed body), 413 (body over 64 KB) and 503 (the credential lacks the
secret to verify with: the provider retries, so fixing the credential loses nothing); Espay gets
its JSON reply shape with a non-0000 error_code, Faspay `response_code` 01.

Applying (`notification_apply`), under a row lock on the invoice:
- *Duplicate*: another delivery of the same provider event (same dedupe key) was already settled →
  nothing changes.
- *Invoice not synced yet*: the notification waits (`pending`) and a sync of its credential is
  requested; `notifications_apply_pending` (called by the sync after each page) applies it when
  the invoice appears.
- *State* notifications (Xendit, Faspay, FarPay's non-payment events) carry the invoice's state
  after the event. One whose provider time is older than the invoice's watermark (its
  `provider_updated_at` or the newest provider time of a notification applied to it) is `stale`
  and changes nothing. One without a provider time never undoes a final state (paid, cancelled).
- *Payment* notifications (Espay always, FarPay "Succeeded" and "ReimbursedByBank") report money
  moved, not a state: each distinct payment (dedupe key) counts once, whatever the order, so two
  instalments that arrive newest first both count; a payment for an invoice that is paid already
  changes nothing. For a polled provider (FarPay) the applied payment also clears the row's
  `content_hash`, so the next sync rewrites it with the provider's own figures: should that sync's
  read already have contained the payment, the count is corrected within one sync interval.
- A change updates the invoice and appends an `InvoiceEvent` (source `notification`, with the
  notification as its FK); the notification records its outcome.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.jsonutil import RawJSONEncoder
from arbook.models import GatewayCredential, Invoice, InvoiceEvent, SyncRun
from arbook.models.notifications import BODY_MAX, STORED_BODY_MAX, Notification
from arbook.services import invoice_rules
from arbook.status import InvoiceStatus
from gateways import espay as espay_gw
from gateways import farpay as farpay_gw
from gateways import faspay as faspay_gw
from gateways import notify
from gateways import xendit as xendit_gw
from gateways.numbers import parse_decimal

logger = logging.getLogger(__name__)

V = Notification.Verification
Out = Notification.Outcome
FINAL_STATES = invoice_rules.FINAL
#: Headers never stored: they carry a secret (or a session).
SECRET_HEADERS = frozenset({"x-callback-token", "authorization", "proxy-authorization", "cookie", "x-api-key"})
SECRET_HEADER_WORDS = ("token", "secret", "password", "api-key", "apikey")
#: Body fields masked before the body is stored (Espay's optional `password`, Appgregator's token).
SECRET_BODY_FIELDS = frozenset({"password", "callback_token"})
#: HTTP status per rejection.
REJECT_STATUS = {V.BAD_SIGNATURE: 401, V.UNKNOWN_TOKEN: 404, V.UNSUPPORTED: 404, V.MALFORMED: 400,
                 V.OVERSIZE: 413, V.NOT_CONFIGURED: 503}
PENDING_BATCH = 500


# -- what the view hands over, what it answers -------------------------------------------------

@dataclass(frozen=True)
class Received:
    """One HTTP delivery as the view read it (the body at most BODY_MAX + 1 bytes)."""

    method: str
    content_type: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    body_size: int
    remote_addr: str = ""

    @property
    def oversize(self) -> bool:
        return self.body_size > BODY_MAX or len(self.body) > BODY_MAX

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


class Rejected(Exception):
    def __init__(self, verification: str, reason: str):
        super().__init__(reason)
        self.verification = verification
        self.reason = reason[:255]


@dataclass
class Parsed:
    """A verified delivery, normalized: which invoice, which event, what change."""

    external_id: str
    event_id: str
    event_key: str
    event_at: datetime | None
    change: dict[str, Any]  # see `_apply_change`; JSON-safe
    fields: dict[str, Any] = field(default_factory=dict)  # provider fields the reply echoes


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _secret(credential: GatewayCredential, name: str) -> str:
    try:
        value = _text(credential.secrets.get(name))
    except SecretsUnavailable:
        raise Rejected(V.NOT_CONFIGURED, "the credential's secrets cannot be decrypted") from None
    if not value:
        raise Rejected(V.NOT_CONFIGURED, f"the credential has no {name} to verify notifications with")
    return value


def _json_reply(status: int, payload: dict[str, Any]) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode())


# -- the providers ---------------------------------------------------------------------------------

class Receiver:
    """One provider's receiving end: the gateway module's `parse_notification` (signature,
    fields, what is claimed) and the reply the provider expects."""

    provider = ""
    parse: Any = None

    def verify(self, *, credential: GatewayCredential, received: Received) -> Parsed:
        try:
            secrets = credential.secrets
        except SecretsUnavailable:
            raise Rejected(V.NOT_CONFIGURED, "the credential's secrets cannot be decrypted") from None
        try:
            remote = type(self).parse(headers=received.headers, content_type=received.content_type,
                                      body=received.body, secrets=secrets, options=credential.options or {},
                                      now=timezone.now())
        except notify.NotificationRefused as exc:
            raise Rejected(exc.verification, exc.reason) from None
        return Parsed(external_id=remote.external_id, event_id=remote.event_id, event_key=remote.event_key,
                      event_at=remote.event_at, change=_change_of(remote), fields=dict(remote.reply_fields))

    def redact(self, body: bytes) -> str:
        """The body as text for storage, with secret-bearing fields masked (JSON or form)."""
        text = body[:STORED_BODY_MAX].decode("utf-8", "replace")
        if not any(name in text for name in SECRET_BODY_FIELDS):
            return text
        try:
            data = json.loads(text, parse_float=Decimal)
            if isinstance(data, dict):
                return json.dumps({k: ("***" if k in SECRET_BODY_FIELDS and v else v) for k, v in data.items()},
                                  cls=RawJSONEncoder)
        except ValueError:
            pass
        pairs = parse_qsl(text, keep_blank_values=True)
        if pairs and any(k in SECRET_BODY_FIELDS for k, _ in pairs):
            return urlencode([(k, "***" if k in SECRET_BODY_FIELDS and v else v) for k, v in pairs])
        return text

    def reply_ok(self, notification: Notification, parsed: Parsed, credential: GatewayCredential) -> Reply:
        return _json_reply(200, {"received": True})

    def reply_error(self, verification: str, reason: str, received: Received) -> Reply:
        return _json_reply(REJECT_STATUS[verification], {"received": False, "error": reason})


def _change_of(remote: notify.RemoteNotification) -> dict[str, Any]:
    """A verified notification as the JSON-safe change stored with it (see `_apply_change`)."""
    change: dict[str, Any] = {"kind": remote.kind, "status": remote.status, "provider_status": remote.provider_status,
                              "currency": remote.currency, "payment_channel": remote.payment_channel}
    for name in ("amount", "outstanding", "paid_amount", "invoice_amount"):
        if getattr(remote, name) is not None:
            change[name] = _money(getattr(remote, name))
    if remote.paid_at is not None:
        change["paid_at"] = _iso(remote.paid_at)
    if remote.clear_paid_at:
        change["clear_paid_at"] = True
    if remote.match != "external_id":
        change["match"] = remote.match
    if remote.vouched:
        change["vouched"] = True
    if remote.confirm:
        change["confirm"] = True
        change.update(remote.lookup_hints)
    if remote.invoice is not None:  # the whole invoice came with it: store it as a read would
        from arbook.services.sync import content_hash

        change["raw"] = json.loads(json.dumps(remote.invoice.raw, cls=RawJSONEncoder))
        change["content_hash"] = content_hash(remote.invoice)
    return change


class EspayReceiver(Receiver):
    """Espay's payment report; the reply is its signed JSON (`gateways.espay.notification_reply`)."""

    provider = "espay"
    parse = staticmethod(espay_gw.parse_notification)

    def reply_ok(self, notification, parsed, credential):
        return _json_reply(200, espay_gw.notification_reply(
            key=_secret(credential, "signature_key"), rq_uuid=parsed.fields["rq_uuid"],
            order_id=parsed.fields["order_id"], code="0000", message="Success", now=timezone.now(),
            reconcile_id=str(notification.pk)))

    def reply_error(self, verification, reason, received):
        code, message = espay_gw.NOTIFICATION_ERRORS[verification]
        try:
            fields = espay_gw.notification_fields(received.content_type, received.body) \
                if verification != V.OVERSIZE else {}
        except notify.NotificationRefused:
            fields = {}
        return _json_reply(REJECT_STATUS[verification], espay_gw.notification_reply(
            key="", rq_uuid=_text(fields.get("rq_uuid"))[:64], order_id=_text(fields.get("order_id"))[:64],
            code=code, message=message, now=timezone.now()))


class XenditReceiver(Receiver):
    provider = "xendit"
    parse = staticmethod(xendit_gw.parse_notification)


class FaspayReceiver(Receiver):
    """No reply format is documented: 200 with `response_code` 00, as Faspay's own APIs answer."""

    provider = "faspay"
    parse = staticmethod(faspay_gw.parse_notification)

    def reply_ok(self, notification, parsed, credential):
        return _json_reply(200, {"response_code": "00", "response_message": "Success"})

    def reply_error(self, verification, reason, received):
        return _json_reply(REJECT_STATUS[verification], {"response_code": "01", "response_message": reason})


class FarpayReceiver(Receiver):
    provider = "farpay"
    parse = staticmethod(farpay_gw.parse_notification)


RECEIVERS: dict[str, Receiver] = {r.provider: r for r in (EspayReceiver(), XenditReceiver(), FaspayReceiver(),
                                                           FarpayReceiver())}


def _clean_headers(headers: dict[str, str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in list(headers.items())[:60]:
        lower = name.lower()
        if lower in SECRET_HEADERS or any(word in lower for word in SECRET_HEADER_WORDS):
            kept[lower] = "***"
            continue
        kept[lower] = str(value)[:500]
    return kept


# -- receiving -------------------------------------------------------------------------------------

@dataclass
class Receipt:
    notification: Notification
    reply: Reply


def notification_receive(*, provider: str, token: str, received: Received) -> Receipt:
    """Store one delivery with its verification result, enqueue its apply, and build the reply.

    Never raises for anything the sender controls; a rejected delivery is stored and answered
    with the provider's failure status, and nothing of it is ever applied."""
    receiver = RECEIVERS.get(provider)
    credential = None
    if receiver is not None and token and len(token) <= 64:
        credential = (GatewayCredential.objects.filter(provider=provider, hook_token=token)
                      .select_related("merchant").first())
    parsed: Parsed | None = None
    internal_error = False
    try:
        if receiver is None:
            raise Rejected(V.UNSUPPORTED, "this provider sends no notifications arbook can receive")
        if received.oversize:
            raise Rejected(V.OVERSIZE, f"the body is larger than {BODY_MAX} bytes")
        if credential is None:
            raise Rejected(V.UNKNOWN_TOKEN, "no credential has this notification URL")
        if received.method != "POST":
            raise Rejected(V.MALFORMED, "notifications are POSTed")
        parsed = receiver.verify(credential=credential, received=received)
        verification, reason = V.VALID, ""
    except Rejected as exc:
        verification, reason = exc.verification, exc.reason
    except Exception:  # a bug of ours: keep the delivery, answer 503 so the provider delivers again
        logger.exception("notification could not be read provider=%s credential=%s", provider[:16],
                         getattr(credential, "pk", None))
        verification, reason, parsed = V.MALFORMED, "internal error while reading it (see the log)", None
        internal_error = True

    body_text = (receiver or Receiver()).redact(received.body)
    queued: dict[str, bool] = {}
    with transaction.atomic():
        notification = Notification.objects.create(
            credential=credential, provider=provider[:16], method=received.method[:8],
            content_type=received.content_type[:100], remote_addr=received.remote_addr[:64],
            headers=_clean_headers(received.headers), body=body_text, body_size=received.body_size,
            body_truncated=len(received.body) > STORED_BODY_MAX or received.body_size > len(received.body),
            verification=verification, verification_reason=reason,
            parsed=parsed.change if parsed else None,
            event_id=parsed.event_id if parsed else "", event_key=parsed.event_key if parsed else "",
            event_at=parsed.event_at if parsed else None, external_id=parsed.external_id if parsed else "",
            outcome=Out.QUEUED if parsed else Out.REJECTED,
        )
        if parsed:
            transaction.on_commit(lambda: queued.update(ok=_enqueue(notification.pk)))

    if parsed is None:
        logger.warning("notification rejected id=%s provider=%s credential=%s verification=%s reason=%s",
                       notification.pk, provider[:16], getattr(credential, "pk", None), verification, reason)
        if internal_error:
            return Receipt(notification, receiver.reply_error(V.NOT_CONFIGURED, "temporarily unavailable", received))
        return Receipt(notification, (receiver or Receiver()).reply_error(verification, reason, received))
    logger.info("notification received id=%s provider=%s credential=%s invoice=%s event=%s",
                notification.pk, provider, credential.pk, parsed.external_id, parsed.event_id)
    if queued.get("ok") is False:
        # Stored, but no worker will hear of it: ask the provider to deliver again (the retry's
        # record is applied; this one then counts as a duplicate if it is ever applied).
        return Receipt(notification, receiver.reply_error(V.NOT_CONFIGURED, "temporarily unavailable", received))
    return Receipt(notification, receiver.reply_ok(notification, parsed, credential))


def _enqueue(notification_id: int) -> bool:
    from arbook.tasks.notifications import apply_notification

    try:
        apply_notification.delay(notification_id)
    except Exception:  # broker down: many exception classes
        logger.exception("notification id=%s could not be queued", notification_id)
        return False
    return True


# -- applying --------------------------------------------------------------------------------------

def _find_invoice(notification: Notification, *, lock: bool) -> Invoice | None:
    invoices = Invoice.objects.filter(credential_id=notification.credential_id)
    if lock:
        invoices = invoices.select_for_update()
    if (notification.parsed or {}).get("match") == "number":
        return invoices.filter(number=notification.external_id).order_by("-id").first()
    return invoices.filter(external_id=notification.external_id).first()


def _finish(notification: Notification, outcome: str, reason: str = "", *, invoice: Invoice | None = None) -> Notification:
    notification.outcome = outcome
    notification.outcome_reason = reason[:255]
    if invoice is not None:
        notification.invoice = invoice
    if outcome in (Out.APPLIED, Out.UNCHANGED):
        notification.applied_at = timezone.now()
    notification.save(update_fields=["outcome", "outcome_reason", "invoice", "applied_at", "attempts"])
    return notification


APPLICABLE = (Out.QUEUED, Out.PENDING, Out.FAILED)


@dataclass(frozen=True)
class Review:
    """The provider's own API did not confirm what a notification claims: store, do not apply."""

    reason: str


def notification_apply(*, notification: Notification) -> Notification:
    """Apply one verified notification (idempotent: a settled one is left as it is).

    A notification whose facts its signature does not cover (`change["confirm"]`: Espay, Faspay)
    is first checked with the provider's own API, outside the transaction (an HTTP call must not
    hold the invoice's row lock), and what the provider says is applied instead of the claim. A
    provider that cannot be reached leaves it `failed` and raises, so the task retries."""
    notification = Notification.objects.get(pk=notification.pk)
    if notification.verification != V.VALID or notification.outcome not in APPLICABLE:
        return notification
    confirmed: dict[str, Any] | Review | None = None
    if (notification.parsed or {}).get("confirm") and notification.credential_id is not None:
        invoice = _find_invoice(notification, lock=False)
        if invoice is not None:
            confirmed = _confirmed(notification, invoice)
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(pk=notification.pk)
        if notification.verification != V.VALID or notification.outcome not in APPLICABLE:
            return notification
        notification.attempts += 1
        if notification.credential_id is None:
            return _finish(notification, Out.FAILED, "its credential was deleted")
        invoice = _find_invoice(notification, lock=True)
        if invoice is None:
            return _pending(notification)
        if (notification.parsed or {}).get("confirm"):
            if confirmed is None:  # the invoice appeared meanwhile: confirm on the next attempt
                return _finish(notification, Out.PENDING, "the invoice appeared while it was confirmed; retried")
            if isinstance(confirmed, Review):
                return _finish(notification, Out.NEEDS_REVIEW, confirmed.reason, invoice=invoice)
        return _apply_to(notification, invoice, confirmed)


def _confirmed(notification: Notification, invoice: Invoice) -> dict[str, Any] | Review:
    """What the provider's own API says of the invoice, as the change to apply (or a Review)."""
    from arbook.services.credentials import credential_client

    try:
        client = credential_client(credential=notification.credential)
        if notification.provider == "espay":
            return _confirmed_espay(notification, invoice, client)
        return _confirmed_faspay(notification, invoice, client)
    except gateways.TransientError as exc:
        Notification.objects.filter(pk=notification.pk).update(
            outcome=Out.FAILED, outcome_reason=f"could not be confirmed yet: {exc}"[:255])
        raise
    except (gateways.GatewayError, SecretsUnavailable) as exc:
        return Review(f"the provider could not confirm it: {exc}")


def _confirmed_espay(notification: Notification, invoice: Invoice, client: Any) -> dict[str, Any] | Review:
    status = client.check_status(invoice.external_id, rq_uuid=uuid.uuid4().hex)
    if status is None:
        return Review("Espay's Check Payment Status does not know this order")
    if not status.paid_amount or status.paid_amount <= 0:
        return Review(f"Espay reports no payment for this order (tx_status {status.tx_status})")
    if invoice.amount is not None and status.amount is not None and status.amount != invoice.amount:
        return Review(f"Espay's order amount {status.amount} is not the invoice's {invoice.amount}")
    total = status.amount if status.amount is not None else invoice.amount
    claimed = notification.parsed or {}
    return {"kind": "state", "status": status.status, "provider_status": status.tx_status,
            "outstanding": _money(None if total is None else total - status.paid_amount),
            "paid_amount": _money(status.paid_amount),
            "paid_at": _iso(status.paid_at) or claimed.get("paid_at"), "currency": status.currency,
            "payment_channel": claimed.get("payment_channel", ""), "vouched": True,
            "confirmed_by": "Espay Check Payment Status"}


def _confirmed_faspay(notification: Notification, invoice: Invoice, client: Any) -> dict[str, Any] | Review:
    """Faspay's inquiry (status, total, payments with their dates) when the callback names its
    billing and service ids, else the bill's row in get-all-billing (status and outstanding; the
    list has no payment date, so none is set)."""
    claimed = notification.parsed or {}
    if claimed.get("billing_id") and claimed.get("service_id"):
        remote = client.inquire(billing_id=claimed["billing_id"], service_id=claimed["service_id"],
                                transaction_number=invoice.external_id)
        source = "Faspay inquiry"
    else:
        remote = client.lookup(gateways.InvoiceRef(external_id=invoice.external_id, status=invoice.status,
                                                   issued_at=invoice.issued_at, due_at=invoice.due_at,
                                                   customer_ref=invoice.customer_ref))
        source = "Faspay get-all-billing"
    if remote is None:
        return Review(f"{source} does not know this bill")
    amount = remote.amount if remote.amount is not None else invoice.amount
    if invoice.amount is not None and remote.amount is not None and remote.amount != invoice.amount:
        return Review(f"{source} says the bill's total is {remote.amount}, not {invoice.amount}")
    change: dict[str, Any] = {"kind": "state", "status": remote.status, "provider_status": remote.provider_status,
                              "outstanding": _money(remote.outstanding), "currency": remote.currency,
                              "invoice_amount": _money(remote.amount),
                              "payment_channel": claimed.get("payment_channel", ""),
                              "vouched": True, "confirmed_by": source, "now": True}
    if remote.paid_amount is not None:
        change["paid_amount"] = _money(remote.paid_amount)
    elif amount is not None and remote.outstanding is not None:
        change["paid_amount"] = _money(max(amount - remote.outstanding, Decimal(0)))
    if remote.paid_at is not None:
        change["paid_at"] = _iso(remote.paid_at)
    elif remote.status in (InvoiceStatus.OPEN, InvoiceStatus.CANCELLED, InvoiceStatus.DRAFT, InvoiceStatus.EXPIRED):
        change["clear_paid_at"] = True
    return change


def _pending_flag(credential_id: int) -> str:
    return f"arbook:notifications-pending:{credential_id}"


def _pending(notification: Notification) -> Notification:
    first = notification.outcome != Out.PENDING
    _finish(notification, Out.PENDING, "the invoice is not in arbook yet; applied when a sync or upload brings it")
    # Tells the sync's per-page hook that there is something to look for (no query otherwise).
    flag, value = _pending_flag(notification.credential_id), uuid.uuid4().hex
    transaction.on_commit(lambda: cache.set(flag, value, timeout=None))
    if first:
        from arbook.services.sync import sync_enqueue

        credential = notification.credential
        if sync_enqueue(credential=credential, full=False, trigger=SyncRun.Trigger.NOTIFICATION):
            logger.info("notification id=%s waits for invoice %s; sync of credential %s requested",
                        notification.pk, notification.external_id, credential.pk)
    return notification


def _watermark(invoice: Invoice, notification: Notification) -> datetime | None:
    """The newest provider time the invoice's state is known to reflect."""
    newest = (Notification.objects.filter(invoice=invoice, outcome=Out.APPLIED).exclude(pk=notification.pk)
              .aggregate(m=Max("event_at"))["m"])
    candidates = [t for t in (invoice.provider_updated_at, newest) if t is not None]
    return max(candidates) if candidates else None


def _apply_to(notification: Notification, invoice: Invoice, confirmed: dict[str, Any] | None = None) -> Notification:
    duplicate = (Notification.objects.filter(credential_id=notification.credential_id, event_key=notification.event_key,
                                             outcome__in=Notification.SETTLED)
                 .exclude(pk=notification.pk).order_by("pk").values_list("pk", flat=True).first())
    if duplicate is not None:
        return _finish(notification, Out.DUPLICATE, f"the same event was applied by notification #{duplicate}",
                       invoice=invoice)
    change = confirmed or notification.parsed or {}
    if change.get("now"):  # the provider's current state: as of now, not of an unsigned date
        notification.event_at = timezone.now()
        notification.save(update_fields=["event_at"])
    event_at = notification.event_at
    if change.get("kind") == "payment":
        amount = _dec(change.get("amount"))
        if (amount is None or amount > 0) and invoice.status == InvoiceStatus.PAID and (invoice.outstanding or 0) <= 0:
            return _finish(notification, Out.UNCHANGED, "the invoice is paid already", invoice=invoice)
    else:
        watermark = _watermark(invoice, notification)
        if event_at and watermark and event_at < watermark:
            return _finish(notification, Out.STALE, f"older than the invoice's state ({watermark.isoformat()})",
                           invoice=invoice)
        if event_at is None and invoice.status in FINAL_STATES and change.get("status") != invoice.status:
            return _finish(notification, Out.STALE, "no provider time: it cannot undo a final state", invoice=invoice)
    applied = _apply_change(notification, invoice, change)
    claimed = (notification.parsed or {}).get("status")
    if confirmed and applied.outcome == Out.UNCHANGED and claimed and claimed != change.get("status"):
        # The provider contradicts what the notification claims: nothing to apply, but staff should know.
        return _finish(notification, Out.NEEDS_REVIEW, f"it says {claimed}; {change.get('confirmed_by')} says "
                       f"{change.get('status')} (the invoice was left as the provider has it)", invoice=invoice)
    return applied


def _dec(value: Any) -> Decimal | None:
    return parse_decimal(value)  # the change's amounts were checked by the gateway parser


def _apply_change(notification: Notification, invoice: Invoice, change: dict[str, Any]) -> Notification:
    before = (invoice.status, invoice.outstanding, invoice.paid_at)
    updates: dict[str, Any] = {}
    paid_at = datetime.fromisoformat(change["paid_at"]) if change.get("paid_at") else None
    if change.get("kind") == "payment":
        amount = _dec(change.get("amount"))
        base = invoice.outstanding if invoice.outstanding is not None else invoice.amount
        if amount is None:  # "paid", no amount given: nothing is left
            outstanding, paid_amount = Decimal(0), invoice.amount
        else:
            outstanding = None if base is None else base - amount
            paid_amount = (invoice.paid_amount or Decimal(0)) + amount
        status = change["status"]
        if status == InvoiceStatus.PAID and outstanding is not None and outstanding > 0:
            status = InvoiceStatus.PARTIALLY_PAID
        updates.update(status=status, outstanding=outstanding, paid_amount=paid_amount)
        if paid_at and (invoice.paid_at is None or paid_at > invoice.paid_at):
            updates["paid_at"] = paid_at
        if gateways.client_class(invoice.provider).lists_invoices:
            # The provider's list is the truth about what is left to pay: make the next sync
            # rewrite this row even if its read already contained this payment.
            updates["content_hash"] = ""
    else:
        updates["status"] = change["status"]
        for name in ("outstanding", "paid_amount"):
            if change.get(name) is not None:
                updates[name] = _dec(change[name])
        if paid_at:
            updates["paid_at"] = paid_at
        elif change.get("clear_paid_at"):
            updates["paid_at"] = None
        if change.get("raw") is not None:
            updates.update(raw=change["raw"], content_hash=change.get("content_hash", ""))
    updates["provider_status"] = change.get("provider_status", invoice.provider_status)
    if change.get("payment_channel"):
        updates["payment_channel"] = change["payment_channel"]
    if invoice.amount is None and change.get("invoice_amount") is not None:
        updates["amount"] = _dec(change["invoice_amount"])
    if notification.event_at and (invoice.provider_updated_at is None
                                  or notification.event_at > invoice.provider_updated_at):
        updates["provider_updated_at"] = notification.event_at
    after_state = {name: updates.get(name, getattr(invoice, name))
                   for name in ("amount", "outstanding", "paid_amount", "status")}
    broken = invoice_rules.money_rule_violations(**after_state)
    if broken:
        return _finish(notification, Out.NEEDS_REVIEW, f"not applied: {'; '.join(broken)}", invoice=invoice)
    if invoice_rules.is_regression(invoice.status, after_state["status"]) and not change.get("vouched"):
        return _finish(notification, Out.NEEDS_REVIEW,
                       f"not applied: {invoice.status} -> {after_state['status']} needs a confirmed source",
                       invoice=invoice)
    changed = [name for name, value in updates.items() if getattr(invoice, name) != value]
    for name in changed:
        setattr(invoice, name, updates[name])
    if changed:
        invoice.save(update_fields=changed)
    after = (invoice.status, invoice.outstanding, invoice.paid_at)
    if after == before:
        return _finish(notification, Out.UNCHANGED, "the invoice already was in this state", invoice=invoice)
    InvoiceEvent.objects.create(
        invoice=invoice, seen_at=timezone.now(), source=InvoiceEvent.Source.NOTIFICATION, notification=notification,
        status_before=before[0], status_after=after[0], outstanding_before=before[1], outstanding_after=after[1],
        paid_at_before=before[2], paid_at_after=after[2],
        note=f"{invoice.get_provider_display()} notification #{notification.pk}: "
             f"{change.get('provider_status') or change.get('status')}"
             f"{' (confirmed by ' + change['confirmed_by'] + ')' if change.get('confirmed_by') else ''}"
             f"{' (event ' + notification.event_id + ')' if notification.event_id else ''}"[:255],
    )
    logger.info("notification id=%s applied to invoice=%s %s -> %s", notification.pk, invoice.pk, before[0], after[0])
    return _finish(notification, Out.APPLIED, invoice=invoice)


def notifications_apply_pending(*, credential: GatewayCredential) -> int:
    """Apply the credential's notifications that wait for an invoice which now exists.

    Called by the sync after each page, inside that page's transaction (so a page and the
    notifications it unblocks commit together), and usable after an upload creates invoices.
    Costs no query unless a notification of this credential went pending (a cache flag set when
    one does, cleared here once none waits); returns how many were settled.
    """
    flag = _pending_flag(credential.pk)
    marker = cache.get(flag)
    if marker is None:
        return 0
    waiting = list(Notification.objects.filter(credential=credential, outcome=Out.PENDING).order_by("pk")[:PENDING_BATCH])
    if not waiting:
        if cache.get(flag) == marker:  # not re-set meanwhile by a notification that just went pending
            cache.delete(flag)
        return 0
    by_number = {n.external_id for n in waiting if (n.parsed or {}).get("match") == "number"}
    by_id = {n.external_id for n in waiting} - by_number
    known_ids = set(Invoice.objects.filter(credential=credential, external_id__in=by_id)
                    .values_list("external_id", flat=True)) if by_id else set()
    known_numbers = set(Invoice.objects.filter(credential=credential, number__in=by_number)
                        .values_list("number", flat=True)) if by_number else set()
    settled = 0
    for notification in waiting:
        if notification.external_id in (known_numbers if notification.external_id in by_number else known_ids):
            if notification_apply(notification=notification).outcome != Out.PENDING:
                settled += 1
    return settled
