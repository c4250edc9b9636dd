"""Payment notifications: receive (store raw + verify, synchronously); the apply runs in a task.

Each provider's protocol (signature, fields, what a delivery claims, the reply it expects) lives
in its gateway module (`parse_notification`, returning a `gateways.notify.RemoteNotification`);
this module stores them and answers, and names no provider field.

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

Applying a stored notification (the task, `notification_apply`) is the write path's:
`arbook.services.invoice_write`, which also settles the ones that wait for their invoice.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.db import transaction
from django.utils import timezone

from arbook.celery import enqueue
from arbook.crypto import SecretsUnavailable
from arbook.jsonutil import RawJSONEncoder
from arbook.models import GatewayCredential
from arbook.models.notifications import BODY_MAX, STORED_BODY_MAX, Notification
from arbook.services.invoice_write import change_of
from gateways import espay as espay_gw
from gateways import farpay as farpay_gw
from gateways import faspay as faspay_gw
from gateways import notify
from gateways import xendit as xendit_gw

logger = logging.getLogger(__name__)

V = Notification.Verification
Out = Notification.Outcome
#: Headers never stored: they carry a secret (or a session).
SECRET_HEADERS = frozenset({"x-callback-token", "authorization", "proxy-authorization", "cookie", "x-api-key"})
SECRET_HEADER_WORDS = ("token", "secret", "password", "api-key", "apikey")
#: Body fields masked before the body is stored (Espay's optional `password`, Appgregator's token).
SECRET_BODY_FIELDS = frozenset({"password", "callback_token"})
#: HTTP status per rejection.
REJECT_STATUS = {V.BAD_SIGNATURE: 401, V.UNKNOWN_TOKEN: 404, V.UNSUPPORTED: 404, V.MALFORMED: 400,
                 V.OVERSIZE: 413, V.NOT_CONFIGURED: 503}
#: The registered name of `arbook.tasks.notifications.notification_apply_task`.
APPLY_TASK = "arbook.notification_apply"


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
                      event_at=remote.event_at, change=change_of(remote), fields=dict(remote.reply_fields))

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
    try:
        enqueue(APPLY_TASK, notification_id)
    except Exception:  # broker down: many exception classes
        logger.exception("notification id=%s could not be queued", notification_id)
        return False
    return True
