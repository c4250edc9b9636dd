"""Xendit invoices, read through the Appgregator proxy (default) or from Xendit directly.

Sources: xendit-appgregator-list-invoices.txt and RESEARCH.md section C.

- `options.mode = "appgregator"` (default): GET `/xendit/invoices/` on
  https://us-central1-appgregator.cloudfunctions.net, header `x-api-key` = `secrets.api_key`, and
  the query params `name` and `connection_name` (from options) on every call.
- `options.mode = "direct"`: GET `/v2/invoices` on https://api.xendit.co, HTTP Basic auth with
  `secrets.secret_key` as the user name and an empty password.

The list answer is a bare JSON array sorted by `created`, newest first; `limit` is 1..100 and the
cursor is the id of the last invoice received. Date filters only work in pairs, so every read
here sends complete pairs:

- full read: one pass over `created_after`/`created_before` = the settled window (every status),
  then one pass for the invoices still owed that were created before it: `statuses=["PENDING",
  "EXPIRED"]` with `created_after` = `owed_from()` (10 years back) and `created_before` = the
  window's start (one call when there are none). The window keeps a decade-old account's paid
  history from being re-read every night. An owed invoice created before the window that a later
  full read no longer returns (paid since) is looked up by id (`lookup`).
- incremental read (`since`): three passes with the same bounds (since - overlap .. now +
  overlap): `created_*` (new invoices), `paid_*` (older invoices paid since), `expired_*` (older
  invoices that expired since). PAID -> SETTLED is not visible to any filter (no `updated`
  filter exists); both map to `paid`, so only `provider_status` lags until the next full read.
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests

from . import notify
from . import status as st
from .base import JAKARTA, WINDOW_OPTIONS, GatewayClient, to_datetime, to_decimal
from .errors import BadResponseError, ConfigurationError
from .fields import CHOICE, NUMBER, Field
from .http import require
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope

logger = logging.getLogger("gateways.xendit")

#: Xendit's invoice statuses (docs/invoice/InvoiceStatus.md). SETTLED = paid and moved to the
#: cash balance; for the merchant's receivable it is as paid as PAID. Lower-case forms are listed
#: too because Appgregator's stored copies are not guaranteed to keep Xendit's casing.
STATUS_MAP: dict[str, str] = {
    "PENDING": st.OPEN,
    "PAID": st.PAID,
    "SETTLED": st.PAID,
    "EXPIRED": st.EXPIRED,
    "pending": st.OPEN,
    "paid": st.PAID,
    "settled": st.PAID,
    "expired": st.EXPIRED,
}

APPGREGATOR_BASE_URL = "https://us-central1-appgregator.cloudfunctions.net"
DIRECT_BASE_URL = "https://api.xendit.co"
MODES = ("appgregator", "direct")
LIST_PATH = {"appgregator": "/xendit/invoices/", "direct": "/v2/invoices"}
PAGE_LIMIT = 100  # the documented maximum
#: Documented cursor name; Xendit's generated Python SDK sends `last_invoice` instead. We send
#: the documented one and fall back to the SDK's name only if the server visibly ignores it
#: (the same page comes back twice), so a proxy that drops the parameter cannot loop forever.
CURSOR_PARAMS = ("last_invoice_id", "last_invoice")
#: Fields that Appgregator's stored copies add and that must not be persisted or logged.
DROP_FIELDS = frozenset({"callback_token"})
FULL_PASSES = ("created", "owed")
INCREMENTAL_PASSES = ("created", "paid", "expired")
#: The statuses that still owe money (or are shown apart as owed): the `owed` pass reads these.
OWED_STATUSES = ("PENDING", "EXPIRED")


def iso(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and `Z`, as Xendit's own examples write it."""
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Client(GatewayClient):
    """Reads Xendit invoices (Appgregator proxy or direct) as `RemoteInvoice` pages."""

    provider = "xendit"
    default_base_url = APPGREGATOR_BASE_URL
    required_secrets = (("api_key",), ("secret_key",))
    secret_fields = (
        Field("api_key", "Appgregator x-api-key (mode appgregator)."),
        Field("secret_key", "Xendit secret API key (mode direct: HTTP Basic auth)."),
        Field("callback_token", "Xendit callback verification token (checks payment notifications)."),
    )
    option_fields = (
        Field("mode", f"appgregator: through the Appgregator proxy ({APPGREGATOR_BASE_URL}); direct: Xendit's "
              f"own API ({DIRECT_BASE_URL}).", kind=CHOICE, default="appgregator", choices=MODES),
        Field("name", "Appgregator project name (mode appgregator: required)."),
        Field("connection_name", "Appgregator connection name (mode appgregator: required)."),
        Field("overlap_minutes", "An incremental sync re-reads this many minutes before the last one.",
              kind=NUMBER, default=10, minimum=0),
        *WINDOW_OPTIONS,
    )
    STATUS_MAP = STATUS_MAP
    zone = JAKARTA
    can_lookup = True

    def __init__(self, **kwargs: Any):
        self._cursor_param = CURSOR_PARAMS[0]
        super().__init__(**kwargs)
        self.mode = self.settings["mode"]
        self.overlap = timedelta(minutes=self.settings["overlap_minutes"])
        if self.mode == "direct":
            token = base64.b64encode(f"{self.secrets['secret_key']}:".encode()).decode()
            self.http.add_secret(token)  # derived from the secret: mask it too
            self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
            self._base_params: dict[str, str] = {}
        else:
            self._headers = {"x-api-key": str(self.secrets["api_key"]), "Accept": "application/json"}
            self._base_params = {"name": self.settings["name"], "connection_name": self.settings["connection_name"]}

    def documented_base_url(self) -> str:
        return DIRECT_BASE_URL if self.settings["mode"] == "direct" else APPGREGATOR_BASE_URL

    # -- configuration ----------------------------------------------------------------------
    def validate(self) -> None:
        """Check only what the chosen mode needs: the other mode's secret may well be absent."""
        if self.settings["mode"] == "direct":
            require(self.secrets, "secret_key", provider=self.provider)
            return
        require(self.secrets, "api_key", provider=self.provider)
        missing = [n for n in ("name", "connection_name") if not self.settings[n]]
        if missing:
            raise ConfigurationError(
                f"xendit: Appgregator mode needs option(s): {', '.join(missing)}", provider=self.provider)

    # -- public API --------------------------------------------------------------------------
    def check_connection(self) -> str:
        items = self._list({"limit": 1})
        via = "via Appgregator" if self.mode == "appgregator" else "to Xendit"
        return f"Connected {via}: {'invoices' if items else 'no invoices yet'} visible"

    def get_invoice(self, invoice_id: str) -> RemoteInvoice | None:
        """One invoice by Xendit id (for webhooks); None when the provider does not know it.

        Direct: GET /v2/invoices/{id}. Appgregator: GET /xendit/find/{id}, which answers an array
        (Appgregator's stored copies) even for one id.
        """
        safe_id = quote(str(invoice_id), safe="")
        if self.mode == "direct":
            data = self._get(f"/v2/invoices/{safe_id}", {}, not_found=None)
            if data is None:
                return None
            if not isinstance(data, dict):
                raise BadResponseError("xendit: invoice answer is not a JSON object", provider=self.provider)
            return self.parse_invoice(data)
        # Appgregator answers an empty array for an unknown id; its 404 means an unknown
        # project/connection, which is a configuration error, not "not found".
        data = self._get(f"/xendit/find/{safe_id}", {})
        items = self._as_list(data)
        if not items:
            return None
        chosen = next((i for i in items if str(i.get("id")) == str(invoice_id)), items[0])
        return self.parse_invoice(chosen)

    def lookup(self, ref: InvoiceRef) -> RemoteInvoice | None:
        """One invoice by its Xendit id (`get_invoice`)."""
        return self.get_invoice(ref.external_id)

    def settled_scope(self) -> SettledScope:
        """Paid invoices are read when created in the window (every invoice has `created`)."""
        start, end = self.window()
        return SettledScope(field="issued_at", start=self.midnight(start),
                            end=self.midnight(end + timedelta(days=1)), undated=True)

    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        """Yield pages; `resume` continues the same query (same bounds) after a committed page.

        A resumed run keeps the interrupted run's bounds (stored in the marker), so it is the
        faithful continuation of that listing; `since` is ignored when `resume` is given.
        """
        plan = self._load_resume(resume) if resume else self._plan(since)
        # A full marker written before the owed pass existed has no "o": its plan ends with "created".
        passes = (FULL_PASSES if plan.get("o") else FULL_PASSES[:1]) if plan["m"] == "full" else INCREMENTAL_PASSES
        pass_index, cursor = plan["p"], plan["c"]
        number = 0
        seen: set[str] = set()  # ids already yielded by an earlier pass of this incremental run
        while pass_index < len(passes):
            field = passes[pass_index]
            if field == "owed":
                params = {"created_after": plan["o"], "created_before": plan["a"], "limit": PAGE_LIMIT,
                          "statuses": json.dumps(OWED_STATUSES, separators=(",", ":"))}
            else:
                params = {f"{field}_after": plan["a"], f"{field}_before": plan["b"], "limit": PAGE_LIMIT}
            previous_ids: set[str] = set()
            while True:
                items = self._fetch_page(params, cursor, previous_ids)
                full = len(items) >= PAGE_LIMIT
                if full:
                    next_pass, cursor = pass_index, str(items[-1]["id"])
                else:  # a short page ends this pass (the answer has no has_more flag)
                    next_pass, cursor = pass_index + 1, None
                fresh = [item for item in items if str(item["id"]) not in seen]
                if plan["m"] != "full" and pass_index + 1 < len(passes):
                    seen.update(str(item["id"]) for item in fresh)
                marker = json.dumps({**plan, "p": next_pass, "c": cursor}, separators=(",", ":"))
                if fresh:
                    number += 1
                    yield Page(items=fresh, parse=self.parse_invoice, identify=self.identify, salt=self.digest_salt,
                               number=number, resume=marker)
                previous_ids = {str(i["id"]) for i in items}
                if not full:
                    break
            pass_index = next_pass

    # -- parsing -----------------------------------------------------------------------------
    def identify(self, item: Any) -> tuple[str, dict[str, Any]]:
        """(id, the raw payload kept): all `parse_invoice` reads, so equal raws parse equally."""
        if not isinstance(item, Mapping):
            raise BadResponseError("xendit: an invoice is not a JSON object", provider=self.provider)
        invoice_id = str(item.get("id") or "").strip()
        if not invoice_id:
            raise BadResponseError("xendit: an invoice has no id", provider=self.provider)
        raw = {k: v for k, v in item.items() if k not in DROP_FIELDS} if DROP_FIELDS.intersection(item) else dict(item)
        return invoice_id, raw

    def parse_invoice(self, item: Mapping[str, Any]) -> RemoteInvoice:
        """One Xendit invoice object -> RemoteInvoice.

        Xendit invoices are paid in full in one payment (no partial payments), so `outstanding`
        is the amount while PENDING/EXPIRED and 0 once PAID/SETTLED; an unknown status leaves it
        unknown (None).
        """
        p = self.provider
        invoice_id, raw = self.identify(item)
        provider_status = str(item.get("status") or "")
        status = self.map_status(provider_status)
        amount = to_decimal(item.get("amount"), field="amount", provider=p)
        paid_amount = to_decimal(item.get("paid_amount"), field="paid_amount", provider=p)
        outstanding: Decimal | None = None
        if status == st.PAID:
            outstanding = Decimal(0)
            if paid_amount is None:
                paid_amount = amount
        elif status in (st.OPEN, st.EXPIRED):
            outstanding = amount
            if paid_amount is None:
                paid_amount = Decimal(0)
        customer = item.get("customer")
        customer = customer if isinstance(customer, Mapping) else {}
        name = f'{str(customer.get("given_names") or "").strip()} {str(customer.get("surname") or "").strip()}'.strip()
        email = str(customer.get("email") or item.get("payer_email") or "").strip()
        phone = str(customer.get("mobile_number") or customer.get("phone_number") or "").strip()
        channel = (item.get("payment_channel") or item.get("bank_code") or item.get("ewallet_type")
                   or item.get("retail_outlet_name") or item.get("payment_method") or "")
        return RemoteInvoice(
            external_id=invoice_id,
            status=status,
            provider_status=provider_status,
            # Older payloads lack `currency`; Xendit then means the account currency, IDR here.
            currency=str(item.get("currency") or "IDR").upper(),
            number=str(item.get("external_id") or ""),
            customer_name=name,
            customer_email=email,
            customer_phone=phone,
            amount=amount,
            outstanding=outstanding,
            paid_amount=paid_amount,
            issued_at=to_datetime(item.get("created"), field="created", provider=p),
            due_at=to_datetime(item.get("expiry_date"), field="expiry_date", provider=p),
            paid_at=to_datetime(item.get("paid_at"), field="paid_at", provider=p),
            provider_updated_at=to_datetime(item.get("updated"), field="updated", provider=p),
            payment_channel=str(channel),
            checkout_url=str(item.get("invoice_url") or ""),
            raw=raw,
        )

    # -- plan and resume ---------------------------------------------------------------------
    def _plan(self, since: datetime | None) -> dict[str, Any]:
        if since is None:
            start, end = self.window()
            owed = self.owed_from()
            return {"m": "full", "p": 0, "a": iso(self.midnight(start)), "b": iso(self.midnight(end + timedelta(days=1))),
                    "o": iso(self.midnight(owed)) if owed < start else None, "c": None}
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        # The overlap absorbs clock skew between us and Xendit; reading a little more is harmless.
        return {"m": "inc", "p": 0, "a": iso(since - self.overlap), "b": iso(self.now() + self.overlap),
                "c": None}

    def _load_resume(self, resume: str) -> dict[str, Any]:
        try:
            plan = json.loads(resume)
            ok = (isinstance(plan, dict) and plan.get("m") in ("full", "inc") and isinstance(plan.get("p"), int)
                  and isinstance(plan.get("a"), str) and isinstance(plan.get("b"), str)
                  and (plan.get("c") is None or isinstance(plan.get("c"), str))
                  and (plan.get("o") is None or isinstance(plan.get("o"), str)))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("xendit: not a resume marker of this client")
        return plan

    # -- HTTP --------------------------------------------------------------------------------
    def _fetch_page(self, params: dict[str, Any], cursor: str | None, previous_ids: set[str]) -> list[dict]:
        """One list call; detects a server that ignores the cursor and retries with the other name."""
        if cursor is None:
            return self._list(params)
        for attempt in range(len(CURSOR_PARAMS)):
            items = self._list({**params, self._cursor_param: cursor})
            repeated = any(str(i["id"]) in previous_ids or str(i["id"]) == cursor for i in items)
            if not repeated:
                return items
            if attempt + 1 < len(CURSOR_PARAMS):
                other = CURSOR_PARAMS[(CURSOR_PARAMS.index(self._cursor_param) + 1) % len(CURSOR_PARAMS)]
                logger.warning("provider=xendit cursor %s was ignored; trying %s", self._cursor_param, other)
                self._cursor_param = other
        raise BadResponseError("xendit: the list ignores the paging cursor (the same invoices came back)",
                               provider=self.provider)

    def _list(self, params: dict[str, Any]) -> list[dict]:
        return self._as_list(self._get(LIST_PATH[self.mode], params))

    def _as_list(self, data: Any) -> list[dict]:
        # Documented: a bare array. Appgregator's envelope is an open question (RESEARCH.md Q4),
        # so a {"data": [...]} wrapper is accepted as well; it costs one line.
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise BadResponseError("xendit: the invoice list is not a JSON array", provider=self.provider)
        for item in data:
            if not isinstance(item, dict) or not item.get("id"):
                raise BadResponseError("xendit: an invoice in the list has no id", provider=self.provider)
        return data

    _MISSING = object()

    def _get(self, path: str, params: Mapping[str, Any], *, not_found: Any = _MISSING) -> Any:
        """GET with the mode's auth; 400/404 bodies are read so the message says what went wrong."""
        response = self.http.request("GET", path, params={**self._base_params, **params},
                                     headers=self._headers, accept_status=(400, 404))
        if response.status_code == 404 and not_found is not self._MISSING:
            return not_found
        if response.status_code in (400, 404):
            self._raise_rejected(response, path)
        return self.http.parse_json(response, method="GET", path=path)

    def _raise_rejected(self, response: requests.Response, path: str) -> None:
        code, message = "", ""
        try:
            body = response.json()
            if isinstance(body, dict):
                code = str(body.get("error_code") or "")[:60]
                message = str(body.get("message") or "")[:200]
        except ValueError:
            pass
        detail = self.http.mask(" ".join(x for x in (code, message) if x)) or "no details"
        status = response.status_code
        if self.mode == "appgregator" and status == 404:
            raise ConfigurationError(
                f"xendit: Appgregator does not know this project/connection (HTTP 404: {detail}); "
                "check options name and connection_name", provider=self.provider, status_code=status)
        raise BadResponseError(f"xendit: GET {path} was rejected (HTTP {status}: {detail})",
                               provider=self.provider, status_code=status)


# -- invoice callbacks (RESEARCH C4) ---------------------------------------------------------------

_CALLBACK_TEXT = ("id", "status", "external_id", "currency", "created", "updated", "paid_at", "expiry_date",
                  "payment_method", "payment_channel", "bank_code", "payer_email", "merchant_name", "user_id",
                  "payment_id", "description", "invoice_url", "ewallet_type", "retail_outlet_name")
_CALLBACK_NUMBERS = ("amount", "paid_amount", "adjusted_received_amount", "fees_paid_amount")
_callback_parser: Client | None = None


def _check_callback_shape(data: Mapping[str, Any]) -> None:
    """An invoice callback of Xendit's shape: id, status (one Xendit has) and amount, with text
    where Xendit sends text and numbers where it sends numbers; anything else is malformed."""
    for name in _CALLBACK_TEXT:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise notify.NotificationRefused(notify.MALFORMED, f"{name} is not text")
    for name in _CALLBACK_NUMBERS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, Decimal))):
            raise notify.NotificationRefused(notify.MALFORMED, f"{name} is not a number")
    if not notify.text(data.get("id")) or data.get("amount") is None:
        raise notify.NotificationRefused(notify.MALFORMED, "id or amount is missing")
    if notify.text(data.get("status")) not in STATUS_MAP:
        raise notify.NotificationRefused(notify.MALFORMED, "status is not one of Xendit's invoice statuses")
    notify.positive(notify.decimal(data.get("amount"), "amount"), "amount")


def parse_notification(*, headers: Mapping[str, str], content_type: str, body: bytes, secrets: Mapping[str, Any],
                       options: Mapping[str, Any], now: datetime | None = None) -> notify.RemoteNotification:
    """Xendit's invoice callback: the body mirrors the invoice object; the `x-callback-token`
    header authenticates the sender, so its facts are Xendit's word (`vouched`). No field is
    signed: the event is identified by invoice id + status + `updated`."""
    global _callback_parser
    token = notify.header(headers, "x-callback-token")
    expected = notify.secret(secrets, "callback_token")
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "x-callback-token is missing or wrong")
    data = notify.json_object(body)
    _check_callback_shape(data)
    if _callback_parser is None:  # parses bodies only, no HTTP: direct mode needs just a placeholder key
        _callback_parser = Client(secrets={"secret_key": "parser-only"}, options={"mode": "direct"})
    try:
        remote = _callback_parser.parse_invoice(data)
    except BadResponseError as exc:
        raise notify.NotificationRefused(notify.MALFORMED, str(exc)[:200]) from None
    key = f"xendit:{remote.external_id}:{remote.provider_status}:{remote.provider_updated_at.isoformat() if remote.provider_updated_at else None}"
    event_id = notify.header(headers, "webhook-id") or notify.text(data.get("payment_id")) or remote.external_id
    return notify.RemoteNotification(
        external_id=remote.external_id[:128], event_id=event_id[:128], event_key=key[:255],
        event_at=remote.provider_updated_at, kind="state", status=remote.status,
        provider_status=remote.provider_status[:64], outstanding=remote.outstanding, paid_amount=remote.paid_amount,
        invoice_amount=remote.amount, paid_at=remote.paid_at, clear_paid_at=remote.paid_at is None,
        currency=remote.currency, payment_channel=remote.payment_channel[:128], vouched=True, invoice=remote)
