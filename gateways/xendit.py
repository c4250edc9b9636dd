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
from .fields import CHOICE, INT, NUMBER, Field
from .http import require
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope
from .slices import read_slices, split_range

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


def parse_ms(value: str) -> int:
    """Milliseconds since the epoch of an `iso` string."""
    moment = datetime.fromisoformat(value)
    return round(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


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
        Field("read_concurrency", "A full read is split into date slices (by creation date); this many are read "
              "at once (1: page after page; at most 16).", kind=INT, default=8, minimum=1),
        Field("requests_per_minute", "At most this many calls per minute to Xendit (0: no cap of our own; a 429 "
              "with Retry-After pauses every reader anyway).", kind=INT, default=0, minimum=0),
        *WINDOW_OPTIONS,
    )
    STATUS_MAP = STATUS_MAP
    zone = JAKARTA
    can_lookup = True

    def __init__(self, **kwargs: Any):
        self._cursor_param = CURSOR_PARAMS[0]
        super().__init__(**kwargs)
        self.http.pace(self.settings["requests_per_minute"])
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
        if plan.get("s") is not None or (plan["m"] == "full" and not resume and self.settings["read_concurrency"] > 1):
            yield from self._iter_slices(plan)
            return
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

    #: A full read is cut into this many date slices per reader (uneven months balance out).
    SLICES_PER_READER = 4

    def _slices(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        """The full read as disjoint creation-date slices: the settled window, then the old owed
        years (`owed` pass). Xendit's pairs are strict (after < created < before): an inner bound
        starts 1 ms early so that no millisecond falls between two slices."""
        parts = self.settings["read_concurrency"] * self.SLICES_PER_READER
        out: list[dict[str, Any]] = []
        ranges = [("created", plan["a"], plan["b"], parts)]
        if plan.get("o"):
            ranges.append(("owed", plan["o"], plan["a"], max(1, parts // 4)))
        for field, after, before, n in ranges:
            start, end = parse_ms(after), parse_ms(before)
            for k, (lo, hi) in enumerate(split_range(start, end, n)):
                out.append({"f": field, "a": after if k == 0 else iso_ms(lo - 1), "b": iso_ms(hi), "c": None, "d": False})
        return out

    def _iter_slices(self, plan: dict[str, Any]) -> Iterator[Page]:
        """A full read, `read_concurrency` slices at once (`gateways.slices`); every page's marker
        holds each slice's cursor, so a resumed run continues every slice where it stopped."""
        states = plan["s"] if plan.get("s") is not None else self._slices(plan)
        base = {"m": "full", "a": plan["a"], "b": plan["b"], "o": plan.get("o")}
        number = 0

        def fetch(state: dict[str, Any], cursor: str | None) -> tuple[list[dict], str | None]:
            if state["f"] == "owed":
                params = {"created_after": state["a"], "created_before": state["b"], "limit": PAGE_LIMIT,
                          "statuses": json.dumps(OWED_STATUSES, separators=(",", ":"))}
            else:
                params = {"created_after": state["a"], "created_before": state["b"], "limit": PAGE_LIMIT}
            items = self._fetch_page(params, cursor, state.get("_ids", set()))
            state["_ids"] = {str(i["id"]) for i in items}  # the worker's own copy: detects an ignored cursor
            return items, (str(items[-1]["id"]) if len(items) >= PAGE_LIMIT else None)

        def page(items: list[dict], now_states: list[dict[str, Any]]) -> Page:
            nonlocal number
            number += 1
            marker = json.dumps({**base, "p": 0, "c": None, "s": now_states}, separators=(",", ":"))
            return Page(items=items, parse=self.parse_invoice, identify=self.identify, salt=self.digest_salt,
                        number=number, resume=marker)

        yield from read_slices(states, fetch=fetch, page=page, concurrency=self.settings["read_concurrency"])

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
                  and (plan.get("o") is None or isinstance(plan.get("o"), str))
                  and (plan.get("s") is None or (plan["m"] == "full" and isinstance(plan["s"], list) and all(
                      isinstance(x, dict) and x.get("f") in ("created", "owed") and isinstance(x.get("a"), str)
                      and isinstance(x.get("b"), str) and isinstance(x.get("d"), bool)
                      and (x.get("c") is None or isinstance(x.get("c"), str)) for x in plan["s"]))))
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
            param = self._cursor_param  # read once: a sliced read's other threads may switch it meanwhile
            items = self._list({**params, param: cursor})
            repeated = any(str(i["id"]) in previous_ids or str(i["id"]) == cursor for i in items)
            if not repeated:
                return items
            if attempt + 1 < len(CURSOR_PARAMS):
                other = next(p for p in CURSOR_PARAMS if p != param)
                if self._cursor_param == param:
                    logger.warning("provider=xendit cursor %s was ignored; trying %s", param, other)
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
