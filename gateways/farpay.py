"""FarPay (Denmark) client: `GET /{version}/invoices`, fanned out by payment status and due-date window.

Why the read is shaped like this (FarPay documents no paging and no updated-since filter, and a
list item carries no payment status):

- Every list call names one `paymentStatus` (sent as the number: whether names are accepted is an
  open question, numbers are documented) and one due-date window (calendar months over
  `self.window()`), so no single response is unbounded and the status of every item is known from
  the filter. Each (window, status) read is one `Page`.
- Windows are requested with `PAD` days of overlap on both sides and each item is kept only in the
  window that holds its UTC due date. FarPay does not say whether `toDueDate` is inclusive, whether
  it compares dates or datetimes, nor in which time zone; the overlap makes all those readings
  return the same set, without duplicates.
- N/A (1000) cannot be filtered. With `na_invoices="diff"` (default) each window gets one more,
  unfiltered read; whatever it returns that no status read of that window returned is N/A. This
  doubles the (cheap) list traffic but finds receivables stuck in FarPay's error state. (An
  invoice whose status changes between those reads may be reported as N/A once; the next sync
  corrects it.) N/A invoices without a due date are not found: that would take a read of everything.
- Old debt: the windows bound the settled history (Paid) only. Every owed status (100, 300-700) is
  also read once without dates on a full sync; FarPay needs no date bound for that, and the read
  returns that status's whole list, so it keeps both the invoices without a due date and those due
  before the window (back to `owed_from()`, `owed_years_back` = 10 years by default). With
  `undated="none"` the same old owed invoices come from one dated read per owed status instead
  ([owed_from, window start)). An owed invoice due before the window that a later full read no
  longer returns (paid since: Paid is not read that far back) is looked up by id (`lookup`).
- `PaymentDueDate` may be null, and such invoices never match a due-date filter. On a full sync
  (`since=None`) the undated reads keep them (`undated` option): "all" (default) reads Paid too, so a
  full sync mirrors the account exactly; "receivable" skips Paid, whose unfiltered read returns the
  whole paid history (an account with a very long history may prefer it: an undated invoice that
  gets paid is then found by its lookup); "none" skips undated invoices. Undated invoices are not
  read by incremental syncs; they show up at the next full sync.
- Dates: FarPay is Danish, so windows are calendar months of Europe/Copenhagen (`zone`), and an
  item belongs to the window holding its due date read in that zone.
- Incremental (`since`): FarPay has no updated-since filter. Every status that is still owed
  (100, 300, 400, 500, 600, 700) is read across the whole window, so a change into any of them is
  never missed (Chargeback is read in full too: it is rare, cheap, and money owed again). Paid is
  read only for invoices due from `paid_lookback_months` (3) before `since` to the window's end:
  an invoice due long ago and paid just now is picked up by the next full sync. N/A needs every
  status of a window, so it is only derived in windows where Paid was read as well.
- Currency and customer are only in the detail (`GET /{version}/invoices/{id}`). With
  `details="always"` (default) the client fetches it once per invoice and keeps the fields it uses
  in a per-client LRU cache: FarPay says invoice data cannot be updated, so currency, recipient and
  invoice date never go stale; status and amounts always come from the list. `details="never"`
  saves those calls: currency comes from the `currency` option (DKK), customer fields stay empty
  and `issued_at` is the list's `Created`.
- FarPay's list has no payment date, so `paid_at` stays None (the payment webhook carries it).
- A full read's due windows are independent: `read_concurrency` of them are read at once
  (`gateways.slices`), each window's steps (and their detail calls) in order in one thread.

`verify_webhook`/`sign_webhook` implement FarPay's Standard Webhooks signing for the receiver and
the sandbox.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from . import notify
from . import status as st
from .base import WINDOW_OPTIONS, GatewayClient, add_months, to_datetime, to_decimal
from .errors import AuthError, BadResponseError, ConfigurationError
from .fields import CHOICE, INT, Field
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope
from .slices import read_slices

logger = logging.getLogger("gateways.farpay")

#: FarPay payment states (number and name), plus the payment-webhook events, so the webhook
#: receiver can reuse the same table. 100 with 0 < ToBePaidAmount < InvoiceAmount becomes
#: partially_paid in `parse_invoice` (the table cannot see amounts).
_STATUSES: dict[str, str] = {
    # invoice payment states (documented numbers; names as in the create sample and the table)
    "100": st.OPEN, "NotPaid": st.OPEN, "Not Paid": st.OPEN,
    "200": st.PAID, "Paid": st.PAID,
    "300": st.PROCESSING, "Scheduled": st.PROCESSING,
    "400": st.PROCESSING, "Pending": st.PROCESSING,
    "500": st.FAILED, "Rejected": st.FAILED,
    "600": st.CHARGED_BACK, "Chargeback": st.CHARGED_BACK, "ChargeBack": st.CHARGED_BACK,
    "700": st.FAILED, "PaymentFailed": st.FAILED, "Payment failed": st.FAILED,
    "1000": st.UNKNOWN, "N/A": st.UNKNOWN, "NA": st.UNKNOWN,
    # payment webhook events (PaymentWebhook.md); 200 Succeeded coincides with 200 Paid
    "Succeeded": st.PAID,
    "210": st.CANCELLED, "Canceled": st.CANCELLED, "Cancelled": st.CANCELLED,
    "220": st.FAILED, "Failed": st.FAILED,
    "230": st.FAILED, "RejectedByCustomer": st.FAILED,
    "240": st.CHARGED_BACK, "ReimbursedByBank": st.CHARGED_BACK,
}
# map_status tries the value as sent, lower- and upper-cased: add lower-case aliases once.
STATUS_MAP: dict[str, str] = {**_STATUSES, **{k.lower(): v for k, v in _STATUSES.items()}}

NOT_PAID, PAID, NA = 100, 200, 1000
#: The states the list filter accepts (N/A 1000 cannot be filtered), in read order.
LIST_STATUSES = (100, 200, 300, 400, 500, 600, 700)
#: Still owed: read across the whole window on every sync, and without dates on full syncs.
OWED_STATUSES = (100, 300, 400, 500, 600, 700)
_RANK = {s: k for k, s in enumerate(LIST_STATUSES + (NA,))}

#: Days of overlap asked on each side of a due window (see the module docstring).
PAD = timedelta(days=2)
_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_DETAIL_KEYS = ("Id", "InvoiceNumber", "InvoiceDate", "Currency", "InvoiceTypeCode", "Created")


COPENHAGEN = ZoneInfo("Europe/Copenhagen")
#: The list fields a lookup keeps from the detail, so a looked-up invoice is stored as a list read
#: would store it (plus the status, which the list gives by its filter).
_REFERENCE_KEYS = ("Id", "Created", "InvoiceNumber", "PaymentDueDate", "InvoiceAmount", "ToBePaidAmount",
                   "PaymentReferenceStatus", "PaymentType", "SendStatus", "ErrorDescription")


@dataclass(frozen=True)
class _Step:
    """One list read: a due window [start, end) and a status, or an undated read (start None).

    An undated read of an owed status also keeps the items due in `older` = [from, to) (the owed
    invoices due before the window): one call finds both."""

    start: date | None
    end: date | None
    status: int
    older: tuple[date, date] | None = None

    @property
    def key(self) -> tuple:
        """Total order of steps; a resume marker is a key, and resuming skips keys <= it."""
        if self.start is None:
            return (1, "", _RANK[self.status])
        return (0, self.start.isoformat(), _RANK[self.status])

    @property
    def marker(self) -> str:
        if self.start is None:
            return json.dumps({"u": self.status}, separators=(",", ":"))
        return json.dumps({"w": self.start.isoformat(), "s": self.status}, separators=(",", ":"))


class Client(GatewayClient):
    """FarPay invoices through `X-API-KEY`; see the module docstring for the read strategy."""

    provider = "farpay"
    default_base_url = "https://api.farpay.io"
    required_secrets = (("api_key",),)
    secret_fields = (
        Field("api_key", "FarPay X-API-KEY."),
        Field("webhook_secret", "FarPay webhook signing secret (whsec_...), checks payment notifications."),
    )
    option_fields = (
        Field("version", "API version in the path (/{version}/invoices).", default="v2", pattern=_VERSION_RE.pattern),
        *WINDOW_OPTIONS,
        Field("window_months", "Months per due-date window of a read.", kind=INT, default=1, minimum=1),
        Field("paid_lookback_months", "An incremental sync reads Paid invoices due from this many months before "
              "the last sync.", kind=INT, default=3, minimum=0),
        Field("undated", "Full sync, invoices without a due date: all (Paid too), receivable (owed only) or none.",
              kind=CHOICE, default="all", choices=("all", "receivable", "none")),
        Field("na_invoices", "diff: find N/A invoices with one unfiltered read per window; skip: do not.",
              kind=CHOICE, default="diff", choices=("diff", "skip")),
        Field("details", "always: read each invoice's detail once (currency, customer); never: save those calls.",
              kind=CHOICE, default="always", choices=("always", "never")),
        Field("detail_cache_size", "Invoice details kept in memory during a sync.", kind=INT, default=5000, minimum=1),
        Field("currency", "Currency of invoices read without their detail (details=never).", default="DKK"),
        Field("read_concurrency", "A full read is split into its due-date windows (and one for the undated "
              "reads); this many are read at once, details included (1: one after another; at most 16).",
              kind=INT, default=8, minimum=1),
        Field("requests_per_minute", "At most this many calls per minute to FarPay (0: no cap of our own; a 429 "
              "with Retry-After pauses every reader anyway).", kind=INT, default=0, minimum=0),
    )
    STATUS_MAP = STATUS_MAP
    zone = COPENHAGEN
    can_lookup = True

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._details: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._details_lock = threading.Lock()  # a sliced read parses (and caches) in several threads
        self._missing_detail_logged = False
        self.http.pace(self.settings["requests_per_minute"])

    # -- configuration -------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.settings["version"]

    @property
    def _path(self) -> str:
        return f"/{self.version}/invoices"

    @property
    def _headers(self) -> dict[str, str]:
        return {"X-API-KEY": str(self.secrets["api_key"]).strip(), "Accept": "application/json"}

    # -- public API ----------------------------------------------------------------------------
    def check_connection(self) -> str:
        """One list call for a one-day due window (today, all statuses)."""
        today = self.today()
        refs = self._get_list({"fromDueDate": today.isoformat(), "toDueDate": today.isoformat()})
        count = len(refs)
        return f"Connected: {count} invoice{'' if count == 1 else 's'} due {today.isoformat()} visible"

    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        """One page per step that found invoices; a full read with `read_concurrency` > 1 reads
        its windows side by side (`_iter_slices`)."""
        sliced = self._parse_sliced_resume(resume) if resume else None
        if sliced is not None or (not resume and since is None and self.settings["read_concurrency"] > 1):
            yield from self._iter_slices(sliced if sliced is not None else self._slices(self._plan(None)))
            return
        after = self._parse_resume(resume) if resume else None
        # Per window: the ids every status read returned, and which statuses were read, so the
        # N/A step can take the difference (rebuilt by re-reading when a run resumed mid-window).
        seen: dict[date, set[str]] = {}
        read: dict[date, set[int]] = {}
        plan = self._plan(since)
        na_windows = {step.start for step in plan if step.status == NA}
        number = 0
        for step in plan:
            if after is not None and step.key <= after:
                continue
            if step.start is None:
                refs = self._read(step)
            elif step.status == NA:
                for missing in (s for s in LIST_STATUSES if s not in read.get(step.start, set())):
                    seen.setdefault(step.start, set()).update(
                        _id(r) for r in self._read(_Step(step.start, step.end, missing)))
                done = seen.pop(step.start, set())
                read.pop(step.start, None)
                refs = [r for r in self._read(step) if _id(r) not in done]
            else:
                refs = self._read(step)
                if step.start in na_windows:
                    seen.setdefault(step.start, set()).update(_id(r) for r in refs)
                    read.setdefault(step.start, set()).add(step.status)
            invoices = [self.parse_invoice(ref, step.status) for ref in refs]
            if invoices:
                number += 1
                yield Page(invoices=invoices, number=number, resume=step.marker)

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, since: datetime | None) -> list[_Step]:
        start, end = self.window()
        months = self.settings["window_months"]
        na = self.settings["na_invoices"] == "diff"
        paid_from: date | None = None
        if since is not None:
            since_day = since.astimezone(self.zone).date()
            paid_from = add_months(since_day, -self.settings["paid_lookback_months"])
        steps: list[_Step] = []
        for w_start, w_end in _calendar_windows(start, end, months):
            statuses = [s for s in LIST_STATUSES
                        if s in OWED_STATUSES or paid_from is None or w_end > paid_from]
            steps += [_Step(w_start, w_end, s) for s in statuses]
            if na and len(statuses) == len(LIST_STATUSES):
                steps.append(_Step(w_start, w_end, NA))
        if since is None:
            older = (self.owed_from(), start)
            undated = self.settings["undated"]
            if undated == "none":  # the owed invoices due before the window, by date
                if older[0] < older[1]:
                    steps += [_Step(older[0], older[1], s) for s in OWED_STATUSES]
            else:
                statuses = LIST_STATUSES if undated == "all" else OWED_STATUSES
                steps += [_Step(None, None, s, older if s in OWED_STATUSES else None) for s in statuses]
        return sorted(steps, key=lambda s: s.key)

    def _slices(self, plan: list[_Step]) -> list[dict[str, Any]]:
        """The plan as independent slices: one per due window, its steps in the plan's order (the
        N/A step after the status reads whose difference it takes), and one for the undated
        steps. An invoice belongs to one slice by its due date, so slices never overlap, and
        inside a slice a status change mid-read is seen as in a sequential read."""
        slices: dict[date | None, dict[str, Any]] = {}
        for step in plan:
            state = slices.setdefault(step.start, {
                "w": None if step.start is None else [step.start.isoformat(), step.end.isoformat()],
                "k": [], "o": None, "c": None, "d": False})
            state["k"].append(step.status)
            if step.older:
                state["o"] = [step.older[0].isoformat(), step.older[1].isoformat()]
        return list(slices.values())

    @staticmethod
    def _slice_step(state: dict[str, Any], index: int) -> _Step:
        status = state["k"][index]
        if state["w"] is not None:
            return _Step(date.fromisoformat(state["w"][0]), date.fromisoformat(state["w"][1]), status)
        older = state.get("o")
        return _Step(None, None, status, (date.fromisoformat(older[0]), date.fromisoformat(older[1]))
                     if older and status in OWED_STATUSES else None)

    def _iter_slices(self, states: list[dict[str, Any]]) -> Iterator[Page]:
        """Read the slices `read_concurrency` at once (`gateways.slices`); a slice's cursor is the
        index of its next step. Each step is parsed (its details fetched) in the reader's thread,
        so the details are read side by side too. Every page's marker holds each slice's cursor."""
        number = 0

        def fetch(state: dict[str, Any], cursor: int | None) -> tuple[list[RemoteInvoice], int | None]:
            index = cursor or 0
            step = self._slice_step(state, index)
            seen, read = state.setdefault("_seen", set()), state.setdefault("_read", set())
            if step.status == NA:  # the window's difference: re-read what a resumed run did not see
                for missing in (s for s in LIST_STATUSES if s not in read):
                    seen.update(_id(r) for r in self._read(_Step(step.start, step.end, missing)))
                refs = [r for r in self._read(step) if _id(r) not in seen]
            else:
                refs = self._read(step)
                if step.start is not None and NA in state["k"]:
                    seen.update(_id(r) for r in refs)
                    read.add(step.status)
            invoices = [self.parse_invoice(ref, step.status) for ref in refs]
            return invoices, (index + 1 if index + 1 < len(state["k"]) else None)

        def page(invoices: list[RemoteInvoice], now_states: list[dict[str, Any]]) -> Page:
            nonlocal number
            number += 1
            public = [{k: v for k, v in state.items() if not k.startswith("_")} for state in now_states]
            return Page(invoices=invoices, number=number, resume=json.dumps({"sl": public}, separators=(",", ":")))

        yield from read_slices(states, fetch=fetch, page=page, concurrency=self.settings["read_concurrency"])

    def _parse_sliced_resume(self, resume: str) -> list[dict[str, Any]] | None:
        """The slices of a sliced read's marker (checked), or None for a step marker."""
        try:
            data = json.loads(resume)
        except ValueError:
            raise ConfigurationError("farpay: the resume marker is not one this client wrote",
                                     provider=self.provider) from None
        if not isinstance(data, dict) or "sl" not in data:  # a step marker ({"w", "s"} or {"u"})
            return None
        try:
            states = []
            for raw in data["sl"]:
                state = {"w": None if raw["w"] is None else [date.fromisoformat(x).isoformat() for x in raw["w"]],
                         "k": [int(x) for x in raw["k"]],
                         "o": None if raw.get("o") is None else [date.fromisoformat(x).isoformat() for x in raw["o"]],
                         "c": None if raw.get("c") is None else int(raw["c"]), "d": bool(raw["d"])}
                if any(len(bounds) != 2 for bounds in (state["w"], state["o"]) if bounds is not None):
                    raise ValueError("bounds")
                if not state["k"] or set(state["k"]) - set(_RANK) or (
                        state["c"] is not None and not 0 <= state["c"] < len(state["k"])):
                    raise ValueError("range")
                states.append(state)
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError("farpay: the resume marker is not one this client wrote",
                                     provider=self.provider) from None
        return states

    def _parse_resume(self, resume: str) -> tuple:
        try:
            data = json.loads(resume)
            if "u" in data:
                return _Step(None, None, int(data["u"])).key
            return _Step(date.fromisoformat(data["w"]), None, int(data["s"])).key
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError("farpay: the resume marker is not one this client wrote",
                                     provider=self.provider) from None

    # -- HTTP ----------------------------------------------------------------------------------
    def _read(self, step: _Step) -> list[dict[str, Any]]:
        """One list call for a step; keeps only the items whose due date (in FarPay's zone) lies in
        its window; an undated step keeps the items without a due date, and those in `older`."""
        params: dict[str, str] = {}
        if step.status != NA:
            params["paymentStatus"] = str(step.status)
        if step.start is not None:
            params["fromDueDate"] = (step.start - PAD).isoformat()
            params["toDueDate"] = (step.end - timedelta(days=1) + PAD).isoformat()
        lo, hi = (step.start, step.end) if step.start is not None else (step.older or (None, None))
        kept = []
        for ref in self._get_list(params):
            due = self._due_day(ref)
            if due is None:
                if step.start is None:
                    kept.append(ref)
            elif lo is not None and lo <= due < hi:
                kept.append(ref)
        return kept

    def _due_day(self, ref: dict[str, Any]) -> date | None:
        due = to_datetime(ref.get("PaymentDueDate"), field="PaymentDueDate", provider=self.provider)
        return None if due is None else due.astimezone(self.zone).date()

    # -- one invoice ---------------------------------------------------------------------------
    def lookup(self, ref: InvoiceRef) -> RemoteInvoice | None:
        """`GET /{version}/invoices/{id}`: the detail carries the payment status, amounts and due
        date (the deep view); None on 404. Stored with the list's fields, like a list read."""
        external_id = str(ref.external_id).strip()
        if not external_id.isdigit():  # FarPay ids are integers: nothing else can be known there
            return None
        data = self._get(f"{self._path}/{external_id}", missing_ok=True)
        if data is None:
            return None
        if not isinstance(data, dict) or data.get("PaymentStatus") in (None, ""):
            raise BadResponseError(f"farpay: GET {self._path}/{{id}} did not return an invoice with a "
                                   "PaymentStatus", provider=self.provider)
        if self.settings["details"] != "never":
            self._keep_detail(external_id, data)  # `parse_invoice` reads it from the cache: one call
        reference = {k: data[k] for k in _REFERENCE_KEYS if k in data}
        reference.setdefault("Id", external_id)
        status = str(data["PaymentStatus"]).strip()
        return self.parse_invoice(reference, int(status) if status.isdigit() else status)

    def settled_scope(self) -> SettledScope:
        """Paid invoices are read when due in the window, and without a due date with `undated=all`."""
        start, end = self.window()
        return SettledScope(field="due_at", start=self.midnight(start), end=self.midnight(end + timedelta(days=1)),
                            undated=self.settings["undated"] == "all")

    def _get_list(self, params: dict[str, str]) -> list[dict[str, Any]]:
        data = self._get(self._path, params)
        if not isinstance(data, list):
            raise BadResponseError(f"farpay: GET {self._path} did not return a list", provider=self.provider)
        for ref in data:
            if not isinstance(ref, dict) or ref.get("Id") in (None, ""):
                raise BadResponseError(f"farpay: GET {self._path} returned an item without Id",
                                       provider=self.provider)
        return data

    def _get(self, path: str, params: dict[str, str] | None = None, *, missing_ok: bool = False) -> Any:
        """GET with FarPay's headers. FarPay reports errors as {"Message": "<code>::<text>"}, and a
        bad key ("9000::") may come as 401/403 (raised by HttpClient) or inside a 200/400 body."""
        accept = (400, 404) if missing_ok else (400,)
        response = self.http.request("GET", path, params=params or None, headers=self._headers,
                                     accept_status=accept)
        if missing_ok and response.status_code == 404:
            return None
        data = self.http.parse_json(response, method="GET", path=path)
        message = data.get("Message") if isinstance(data, dict) else None
        code = str(message).split("::", 1)[0].strip() if message is not None else ""
        if code == "9000":
            raise AuthError(f"farpay: GET {path} was refused (FarPay code 9000: X-API-KEY not "
                            f"authenticated, HTTP {response.status_code}); check the credential",
                            provider=self.provider, status_code=response.status_code)
        if response.status_code == 400 or message is not None:
            text = self.http.mask(str(message or ""))[:200]
            raise BadResponseError(f"farpay: GET {path} was rejected (HTTP {response.status_code}): {text}",
                                   provider=self.provider, status_code=response.status_code)
        return data

    def _detail(self, external_id: str) -> dict[str, Any] | None:
        """The immutable part of an invoice's detail (currency, recipient, dates), cached LRU."""
        if self.settings["details"] == "never":
            return None
        with self._details_lock:
            cached = self._details.get(external_id)
            if cached is not None:
                self._details.move_to_end(external_id)
                return cached
        data = self._get(f"{self._path}/{external_id}", missing_ok=True)
        if data is None:  # deleted between list and detail: keep the list's facts, say so once
            if not self._missing_detail_logged:
                self._missing_detail_logged = True
                logger.warning("provider=farpay invoice detail not found (404); using list fields only")
            return None
        return self._keep_detail(external_id, data)

    def _keep_detail(self, external_id: str, data: Any) -> dict[str, Any]:
        """Cache the immutable part of a detail answer (LRU) and return it."""
        if not isinstance(data, dict):
            raise BadResponseError(f"farpay: GET {self._path}/{{id}} did not return an object",
                                   provider=self.provider)
        kept = {k: data.get(k) for k in _DETAIL_KEYS if k in data}
        # The documents spell it "Recepient"; accept the correct spelling as well.
        recipient = data.get("Recepient") if data.get("Recepient") is not None else data.get("Recipient")
        if isinstance(recipient, dict):
            kept["Recepient"] = {k: recipient.get(k) for k in ("CustomerNumber", "Name", "Email")}
        with self._details_lock:
            self._details[external_id] = kept
            while len(self._details) > self.settings["detail_cache_size"]:
                self._details.popitem(last=False)
        return kept

    # -- parsing -------------------------------------------------------------------------------
    def parse_invoice(self, ref: dict[str, Any], status_code: int | str) -> RemoteInvoice:
        """A list reference (+ detail) as a RemoteInvoice; the status is the one the read filtered on."""
        p = self.provider
        external_id = _id(ref)
        # The list item has no payment status; should FarPay ever add one, it wins over the filter.
        provider_status = str(ref.get("PaymentStatus") if ref.get("PaymentStatus") is not None else status_code)
        state = self.map_status(provider_status)
        amount = to_decimal(ref.get("InvoiceAmount"), field="InvoiceAmount", provider=p)
        outstanding = to_decimal(ref.get("ToBePaidAmount"), field="ToBePaidAmount", provider=p)
        if state == st.OPEN and amount is not None and outstanding is not None and 0 < outstanding < amount:
            state = st.PARTIALLY_PAID
        paid = amount - outstanding if amount is not None and outstanding is not None else None

        detail = self._detail(external_id)
        raw: dict[str, Any] = dict(ref)
        currency = self.settings["currency"]
        name = email = customer = ""
        issued = to_datetime(ref.get("Created"), field="Created", provider=p)
        if detail is not None:
            raw["Detail"] = detail
            currency = str(detail.get("Currency") or currency)
            recipient = detail.get("Recepient") or {}
            name = str(recipient.get("Name") or "")
            email = str(recipient.get("Email") or "")
            customer = str(recipient.get("CustomerNumber") or "")
            issued = to_datetime(detail.get("InvoiceDate"), field="InvoiceDate", provider=p) or issued
            # A credit note (PCM) carries positive amounts (docs); DESIGN wants credits negative.
            if str(detail.get("InvoiceTypeCode") or "").upper() == "PCM":
                amount, outstanding, paid = (-x if x is not None else None for x in (amount, outstanding, paid))
        return RemoteInvoice(
            external_id=external_id,
            status=state,
            provider_status=provider_status,
            currency=currency.upper(),  # the create sample sends "dkk"
            number=str(ref.get("InvoiceNumber") or ""),
            customer_name=name,
            customer_email=email,
            customer_ref=customer,
            amount=amount,
            outstanding=outstanding,
            paid_amount=paid,
            issued_at=issued,
            due_at=to_datetime(ref.get("PaymentDueDate"), field="PaymentDueDate", provider=p),
            payment_channel=str(ref.get("PaymentType") or ""),
            raw=raw,
        )


def _id(ref: dict[str, Any]) -> str:
    return str(ref["Id"])


def _calendar_windows(start: date, end: date, months: int) -> Iterator[tuple[date, date]]:
    """Half-open [from, to) windows over start..end (inclusive), cut at calendar-month starts so a
    window's identity does not move with the day the sync runs."""
    cursor, stop = start, end + timedelta(days=1)
    while cursor < stop:
        nxt = add_months(date(cursor.year, cursor.month, 1), months)
        yield cursor, min(nxt, stop)
        cursor = nxt


# -- Standard Webhooks (FarPay/Webhook WebhookSignatureVerification.md) ---------------------------

def _webhook_key(secret: str) -> bytes:
    """Strip `whsec_`, base64-decode; a remainder that is not valid base64 is used as raw UTF-8."""
    text = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8")


def sign_webhook(secret: str, msg_id: str, timestamp: str | int, body: bytes) -> str:
    """The `webhook-signature` value FarPay sends: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_webhook(secret: str, msg_id: str, timestamp: str, body: bytes, signature_header: str, *,
                   tolerance: int = 300, now: float | datetime | None = None) -> bool:
    """True when any `v1,` entry of the (space-separated) header matches and the timestamp lies
    within `tolerance` seconds of `now` (replay protection). Never raises on malformed input."""
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        return False
    if isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now) if now is not None else time.time()
    if abs(current - sent_at) > tolerance:
        return False
    # Sign the timestamp exactly as sent: it is part of the signed string.
    expected = sign_webhook(secret, msg_id, str(timestamp), body).split(",", 1)[1].encode("ascii")
    ok = False
    for entry in (signature_header or "").split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected):
            ok = True  # keep looping: the time taken does not depend on which entry matched
    return ok


#: Payment events that move money, and the sign of the amount they move.
PAYMENT_EVENTS = {"succeeded": 1, "200": 1, "reimbursedbybank": -1, "240": -1}
#: Standard Webhooks' replay window.
TOLERANCE_SECONDS = 300


def parse_notification(*, headers: Mapping[str, str], content_type: str, body: bytes, secrets: Mapping[str, Any],
                       options: Mapping[str, Any], now: datetime) -> notify.RemoteNotification:
    """FarPay's payment webhook, JSON, signed per Standard Webhooks: the signature covers the whole
    body (`vouched`). The body names the invoice by `InvoiceNumber` (FarPay's Id is not in it)."""
    msg_id, stamp = notify.header(headers, "webhook-id"), notify.header(headers, "webhook-timestamp")
    signature = notify.header(headers, "webhook-signature")
    if not (msg_id and stamp and signature):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE,
                                         "webhook-id, webhook-timestamp or webhook-signature is missing")
    webhook_secret = notify.secret(secrets, "webhook_secret")
    try:
        sent_at = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "webhook-timestamp is not a Unix time") from None
    if abs((now - sent_at).total_seconds()) > TOLERANCE_SECONDS:
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "webhook-timestamp is outside the 5-minute window (replay?)")
    if not verify_webhook(webhook_secret, msg_id, stamp, body, signature, now=now):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "the signature does not match")
    data = notify.json_object(body)
    payment = data.get("Payment")
    if not isinstance(payment, dict):
        raise notify.NotificationRefused(notify.MALFORMED, "Payment is missing")
    notify.scalars(payment, ("Event", "InvoiceNumber", "Amount", "Currency", "PaymentType"))
    event, number = notify.text(payment.get("Event")), notify.text(payment.get("InvoiceNumber"))
    if not event or not number:
        raise notify.NotificationRefused(notify.MALFORMED, "Payment.Event or Payment.InvoiceNumber is missing")
    status = STATUS_MAP.get(event) or STATUS_MAP.get(event.lower())
    if not status:
        raise notify.NotificationRefused(notify.MALFORMED, "Payment.Event is not a known payment event")
    amount = notify.positive(notify.decimal(payment.get("Amount"), "Payment.Amount"), "Payment.Amount")
    sign = PAYMENT_EVENTS.get(event.lower())
    return notify.RemoteNotification(
        external_id=number[:128], event_id=msg_id[:128], event_key=f"farpay:{msg_id}"[:255], event_at=sent_at,
        kind="payment" if sign else "state", status=status, provider_status=event[:64], match="number",
        amount=(None if amount is None else sign * amount) if sign else None,
        paid_at=sent_at if sign and sign > 0 else None,
        currency=notify.text(payment.get("Currency")).upper()[:3],
        payment_channel=notify.text(payment.get("PaymentType"))[:128], vouched=True)


__all__ = ["Client", "STATUS_MAP", "LIST_STATUSES", "OWED_STATUSES", "sign_webhook", "verify_webhook",
           "parse_notification"]
