"""Faspay Billing: read invoices through "Get List Invoice" (`get-all-billing`).

The API (docs.faspay.co.id, Faspay Billing API > Get List Invoice; RESEARCH.md section B):

- **GET with a JSON body** at `/billingbackendapi/web/billing/get-all-billing`. `requests` sends a
  body on GET when given `json=`, so the call still goes through `self.http` (retries, masking).
- `signature = sha1(md5(username + password))`: SHA-1 over the *lowercase hex* MD5 string (the PHP
  `sha1(md5(...))` idiom), lowercase hex. It is derived from the password, so it is masked like one.
- `status` and a period window (`start_period`, `end_period`) are mandatory and `status` takes one
  code, so a full read fans out over every status code and walks `page` up to `total_pages`.
- The list carries no invoice total: `amount` (and so `paid_amount`) stays None (unknown); only
  `outstanding_amount` is known, and it may be negative (an overpayment credit), which is kept.
- Naive datetimes are read as Asia/Jakarta (RESEARCH.md B5, INFERENCE: no page states a zone).
- No production host is published; the default base URL is the documented development host.
- A full read is independent invoice-date windows: `read_concurrency` of them are read at once
  (`gateways.slices`), each walking its status codes in a bill's life order (`_slices`).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from . import notify
from . import status as st
from .base import JAKARTA, WINDOW_OPTIONS, GatewayClient, add_months, month_windows, to_datetime, to_decimal
from .errors import AuthError, BadResponseError
from .fields import CHOICE, INT, Field
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope
from .slices import read_slices

logger = logging.getLogger("gateways.faspay")

PATH = "/billingbackendapi/web/billing/get-all-billing"
INQUIRE_PATH = "/billingbackendapi/web/api/inquire"

#: Faspay's vocabularies -> normalized state (DESIGN.md). The list answers with text labels; the
#: request uses numeric codes (kept here in case a server echoes them); create/inquiry/callback use
#: the upper-case words. A provider's own "Overdue" is `open`: overdue is derived from `due_at`.
STATUS_MAP: dict[str, str] = {
    # get-all-billing `invoice_status` labels
    "Draft": st.DRAFT,
    "Proforma": st.DRAFT,
    "Unpaid": st.OPEN,
    "Overdue": st.OPEN,
    "Partial Paid": st.PARTIALLY_PAID,
    "Paid": st.PAID,
    "Cancelled": st.CANCELLED,
    # the request's numeric `status` codes (6 is not documented)
    "0": st.DRAFT,
    "1": st.OPEN,
    "2": st.PAID,
    "3": st.CANCELLED,
    "4": st.OPEN,
    "5": st.PARTIALLY_PAID,
    "7": st.DRAFT,
    # create / inquiry / callback `billing_status`
    "UNPAID": st.OPEN,
    "PAID": st.PAID,
    "EXPIRED": st.EXPIRED,
    "CANCELLED": st.CANCELLED,
}

#: Request status codes -> the label the list answers with.
LABELS: dict[int, str] = {0: "Draft", 1: "Unpaid", 2: "Paid", 3: "Cancelled", 4: "Overdue", 5: "Partial Paid",
                          7: "Proforma"}
#: Fan-out order follows the usual life of a bill (draft -> unpaid -> overdue -> partial -> paid), so
#: an invoice that moves forward while a read is under way is seen again in its newer bucket
#: (and the later sighting, the newer state, is what the sync keeps).
OPEN_CODES = (0, 7, 1, 4, 5)
CLOSED_CODES = (2, 3)
ALL_CODES = OPEN_CODES + CLOSED_CODES

#: A non-"00" message that names the credential means "refused", not "malformed".
_AUTH_MESSAGE = re.compile(r"signature|unauthori[sz]ed|credential|password|username|merchant|forbidden|"
                           r"access denied|not allowed|auth", re.I)
#: Some servers say "no rows" with a failure code; that is an empty result, not an error (cheap to accept).
_EMPTY_MESSAGE = re.compile(r"not found|no data|data empty|empty data|tidak ditemukan|tidak ada", re.I)


def signature(username: str, password: str) -> str:
    """`sha1(md5(username + password))` as Faspay's PHP computes it: SHA-1 of the lowercase hex MD5."""
    return callback_signature(username, password, "")


@dataclass(frozen=True)
class _Batch:
    """One answer of a sliced read: its rows and the status code asked for (which parses them)."""

    code: int
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class _Task:
    """One (status code, invoice-period window) query, walked page by page."""

    code: int
    start: date
    end: date


class Client(GatewayClient):
    """Faspay Billing client; what its options do is said in `option_fields` and `iter_pages`."""

    provider = "faspay"
    default_base_url = "https://fasbill-dev.faspay.co.id"
    required_secrets = (("username", "password"),)
    secret_fields = (
        Field("username", "Faspay Billing user name."),
        Field("password", "Faspay Billing password."),
    )
    option_fields = (
        Field("customer_id", "Only this (numeric) customer's invoices; blank = every customer.", kind=INT, minimum=0),
        *WINDOW_OPTIONS,
        Field("split_months", "Months per query of the window (smaller = finer resume points, more calls).",
              kind=INT, default=12, minimum=1),
        Field("old_split_months", "Months per query of the owed invoices issued before the window.",
              kind=INT, default=60, minimum=1),
        Field("incremental_lookback_months", "An incremental sync reads paid/cancelled invoices issued from this "
              "many months before the last sync.", kind=INT, default=6, minimum=0),
        Field("period_format", "How the period window is sent: 'datetime' (the documented example) or 'date' "
              "(the parameter table).", kind=CHOICE, default="datetime", choices=("datetime", "date")),
        Field("read_concurrency", "A full read is split into invoice-date windows; this many are read at once "
              "(1: query after query; at most 16).", kind=INT, default=8, minimum=1),
        Field("requests_per_minute", "At most this many calls per minute to Faspay (0: no cap of our own; a 429 "
              "with Retry-After pauses every reader anyway).", kind=INT, default=0, minimum=0),
    )
    STATUS_MAP = STATUS_MAP
    zone = JAKARTA
    can_lookup = True

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.signature = signature(str(self.secrets["username"]), str(self.secrets["password"]))
        self.http.add_secret(self.signature)
        self.customer_id: int | None = self.settings["customer_id"]
        self.split_months = self.settings["split_months"]
        self.old_split_months = self.settings["old_split_months"]
        self.lookback_months = self.settings["incremental_lookback_months"]
        self.period_format = self.settings["period_format"]
        self.http.pace(self.settings["requests_per_minute"])

    # -- public --------------------------------------------------------------------------------
    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        """Walk every (status, window) query page by page and yield the non-empty pages.

        Full read: every status code over the whole window, split into windows of `split_months`
        (default 12) whole calendar months. Why split: the page walk is offset-based, so an
        invoice leaving a bucket mid-walk shifts the later pages of that query; bounded result
        sets shrink that exposure, stay clear of any undocumented range/row limit and give finer
        resume points. Why not monthly: every window costs 7 calls even when empty (a 37-month
        window is 28 calls at 12 months, 259 at 1). Windows are whole calendar months because the
        server may filter on the invoice `period` (YYYYMM) rather than the exact date;
        month-aligned bounds give the same rows either way.

        Old debt: the window bounds the settled history only. The owed buckets (Draft, Proforma,
        Unpaid, Overdue, Partial Paid) are also read for invoices issued before the window, back to
        `owed_from()` (`owed_years_back`, 10 years), in blocks of `old_split_months` (60): with the
        default options that is two blocks, 10 calls more per full read when they are empty. A
        bill issued before the window that a later full read no longer returns (paid or cancelled
        since) is looked up by itself (`lookup`).

        Incremental (`since`): Faspay has no updated-since filter. Every change we care about
        leaves or enters an open-ish bucket (Draft, Proforma, Unpaid, Overdue, Partial Paid), so
        those are read over the whole window; the closed buckets (Paid, Cancelled) only for
        invoices issued from `incremental_lookback_months` (6) months before `since` onwards. An
        invoice issued earlier than that and closed after `since` is caught by the next full read,
        so schedule one regularly (e.g. nightly).

        `resume` carries the plan's bounds, so a resumed run walks the same queries even if the
        day (and so the window) has changed; it continues with the page after the committed one.

        Slices (full reads with `read_concurrency` > 1): see `_iter_slices`.
        """
        if resume:
            sliced = self._parse_sliced_resume(resume)
            if sliced is not None:
                yield from self._iter_slices(sliced)
                return
            plan_bounds, task_index, page = self._parse_resume(resume)
        else:
            plan_bounds, task_index, page = self._plan_bounds(since), 0, 1
            if since is None and self.settings["read_concurrency"] > 1:
                yield from self._iter_slices(self._slices(plan_bounds))
                return
        tasks = self._plan(*plan_bounds)
        number = 0
        while task_index < len(tasks):
            task = tasks[task_index]
            rows, total_pages = self._fetch(task.code, task.start, task.end, page)
            if rows and page < total_pages:
                next_index, next_page = task_index, page + 1
            else:  # last page of this query (an empty page ends it too, whatever total_pages says)
                next_index, next_page = task_index + 1, 1
            if rows:
                number += 1
                marker = self._resume_marker(plan_bounds, next_index, next_page)
                # The status bucket asked for decides a row without a status label: it salts the digest.
                yield Page(items=rows, parse=functools.partial(self.parse_invoice, requested_code=task.code), number=number,
                           resume=marker, identify=self.identify, salt=f"{self.digest_salt}:{task.code}")
            task_index, page = next_index, next_page

    def check_connection(self) -> str:
        """One call: Unpaid (status 1), page 1, invoices issued this month."""
        today = self.today()
        payload = self._request(1, today.replace(day=1), today, 1)
        total = _int_field(payload, "total_data", default=len(payload.get("data") or []))
        return f"Connected: {total} unpaid invoice{'' if total == 1 else 's'} issued this month"

    # -- plan ----------------------------------------------------------------------------------
    def _plan_bounds(self, since: datetime | None) -> tuple[date, date, date | None, date | None]:
        """(window start, window end, closed-bucket start or None, owed start or None), all
        calendar-month aligned; the owed start only on a full read."""
        start, end = self.window()
        start = start.replace(day=1)
        end = add_months(end.replace(day=1), 1) - timedelta(days=1)
        recent = owed = None
        if since is not None:
            if since.tzinfo is None:
                since = since.replace(tzinfo=JAKARTA)
            recent = add_months(since.astimezone(JAKARTA).date().replace(day=1), -self.lookback_months)
        else:
            owed = self.owed_from().replace(day=1)
        return start, end, recent, owed

    def _windows(self, start: date, end: date, recent: date | None, owed: date | None,
                 months: int) -> list[tuple[date, date, tuple[int, ...], date | None]]:
        """The read as invoice-date windows, oldest first: (from, to, status codes in read order,
        the later start of the closed codes or None). An invoice belongs to one window (its
        invoice date), and inside a window the codes follow a bill's life (`OPEN_CODES` first)."""
        windows: list[tuple[date, date, tuple[int, ...], date | None]] = []
        if owed is not None and owed < start:  # the owed buckets before the window, oldest first
            for w_start, w_end in month_windows(owed, start - timedelta(days=1), months=self.old_split_months):
                windows.append((w_start, w_end, OPEN_CODES, None))
        for w_start, w_end in month_windows(start, end, months=months):
            if recent is None:
                windows.append((w_start, w_end, ALL_CODES, None))
            elif w_end >= recent:
                windows.append((w_start, w_end, ALL_CODES, recent if recent > w_start else None))
            else:
                windows.append((w_start, w_end, OPEN_CODES, None))
        return windows

    def _plan(self, start: date, end: date, recent: date | None, owed: date | None = None) -> list[_Task]:
        return [_Task(code, closed_from if closed_from and code in CLOSED_CODES else w_start, w_end)
                for w_start, w_end, codes, closed_from in self._windows(start, end, recent, owed, self.split_months)
                for code in codes]

    #: A sliced full read cuts the window into about this many windows per reader: with 8 readers
    #: a three-year window is read month by month, so no reader is left with a long last slice
    #: (bench/sync_slices.py --provider faspay, 200 ms per call: 43-50 s with 5, 50-52 s with 2).
    SLICES_PER_READER = 5

    def _slices(self, bounds: tuple[date, date, date | None, date | None]) -> list[dict[str, Any]]:
        """A full read as independent slices, one per invoice-date window, each walking its status
        codes in order (so a bill that moves on mid-read is still seen in its newer bucket, as in
        the query-after-query read). The settled window is cut finer than `split_months` (about
        `SLICES_PER_READER` windows per reader, whole months): the extra empty calls cost little
        when read side by side."""
        start, end, recent, owed = bounds
        span = (end.year - start.year) * 12 + end.month - start.month + 1
        parts = self.settings["read_concurrency"] * self.SLICES_PER_READER
        months = max(1, min(self.split_months, -(-span // parts)))
        return [{"a": w_start.isoformat(), "b": w_end.isoformat(), "k": list(codes),
                 "r": closed_from.isoformat() if closed_from else None, "c": None, "d": False}
                for w_start, w_end, codes, closed_from in self._windows(start, end, recent, owed, months)]

    def _iter_slices(self, states: list[dict[str, Any]]) -> Iterator[Page]:
        """Read the slices `read_concurrency` at once (`gateways.slices`). A slice's cursor is
        [code index, page]; every page's marker holds each slice's cursor, so a resumed run
        continues every slice where it stopped."""
        number = 0

        def fetch(state: dict[str, Any], cursor: list[int] | None) -> tuple[list[_Batch], list[int] | None]:
            index, page = cursor or (0, 1)
            code = state["k"][index]
            start = state["r"] if state.get("r") and code in CLOSED_CODES else state["a"]
            rows, total_pages = self._fetch(code, date.fromisoformat(start), date.fromisoformat(state["b"]), page)
            if rows and page < total_pages:
                following = [index, page + 1]
            elif index + 1 < len(state["k"]):
                following = [index + 1, 1]
            else:
                following = None
            return ([_Batch(code, rows)] if rows else []), following

        def page(items: list[_Batch], now_states: list[dict[str, Any]]) -> Page:
            nonlocal number
            number += 1
            batch = items[0]
            marker = json.dumps({"s": now_states}, separators=(",", ":"))
            return Page(items=batch.rows, parse=functools.partial(self.parse_invoice, requested_code=batch.code),
                        number=number, resume=marker, identify=self.identify,
                        salt=f"{self.digest_salt}:{batch.code}")

        yield from read_slices(states, fetch=fetch, page=page, concurrency=self.settings["read_concurrency"])

    def _resume_marker(self, bounds: tuple[date, date, date | None, date | None], index: int, page: int) -> str:
        start, end, recent, owed = bounds
        return json.dumps({"a": start.isoformat(), "b": end.isoformat(), "r": recent.isoformat() if recent else None,
                           "o": owed.isoformat() if owed else None, "n": self.split_months,
                           "m": self.old_split_months, "i": index, "p": page}, separators=(",", ":"))

    def _parse_sliced_resume(self, resume: str) -> list[dict[str, Any]] | None:
        """The slices of a sliced read's marker (checked), or None for a query-after-query marker."""
        try:
            data = json.loads(resume)
        except ValueError:
            raise ValueError("faspay: not a resume marker from this client (JSONDecodeError)") from None
        if not isinstance(data, dict) or "s" not in data:
            return None
        try:
            states = [{"a": date.fromisoformat(s["a"]).isoformat(), "b": date.fromisoformat(s["b"]).isoformat(),
                       "k": [int(code) for code in s["k"]],
                       "r": date.fromisoformat(s["r"]).isoformat() if s.get("r") else None,
                       "c": None if s.get("c") is None else [int(s["c"][0]), int(s["c"][1])], "d": bool(s["d"])}
                      for s in data["s"]]
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"faspay: not a resume marker from this client ({type(exc).__name__})") from None
        if any(set(s["k"]) - set(ALL_CODES) or not s["k"] or
               (s["c"] is not None and not (0 <= s["c"][0] < len(s["k"]) and s["c"][1] >= 1)) for s in states):
            raise ValueError("faspay: resume marker out of range")
        return states

    def _parse_resume(self, resume: str) -> tuple[tuple[date, date, date | None, date | None], int, int]:
        """A marker from `_resume_marker`; the plan is rebuilt from its bounds and split sizes (a
        marker written before old debt was read has no owed start: its plan has no owed reads)."""
        try:
            data = json.loads(resume)
            bounds = (date.fromisoformat(data["a"]), date.fromisoformat(data["b"]),
                      date.fromisoformat(data["r"]) if data.get("r") else None,
                      date.fromisoformat(data["o"]) if data.get("o") else None)
            self.split_months = int(data.get("n", self.split_months))
            self.old_split_months = int(data.get("m", self.old_split_months))
            index, page = int(data["i"]), int(data["p"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"faspay: not a resume marker from this client ({type(exc).__name__})") from None
        if index < 0 or page < 1 or self.split_months < 1 or self.old_split_months < 1:
            raise ValueError("faspay: resume marker out of range")
        return bounds, index, page

    # -- one invoice ---------------------------------------------------------------------------
    def lookup(self, ref: InvoiceRef) -> RemoteInvoice | None:
        """Find one bill again. Faspay Billing's inquiry needs the `billing_id` and `service_id`
        that the list never returns, so the documented way is the list itself, narrowed to the
        bill's own invoice date (and customer): the closed buckets first (what a bill that left
        the owed buckets became), then the owed ones. One to seven calls; None when no bucket
        holds it (the bill is gone)."""
        issued = ref.issued_at or ref.due_at
        if issued is None:
            return None
        day = issued.astimezone(JAKARTA).date()
        customer = ref.customer_ref.strip() if ref.customer_ref else ""
        for code in CLOSED_CODES + OPEN_CODES:
            page, total_pages = 1, 1
            while page <= total_pages:
                rows, total_pages = self._fetch(code, day, day, page,
                                                customer_id=int(customer) if customer.isdigit() else None)
                for row in rows:
                    if str(row.get("invoice_no") or "").strip() == ref.external_id:
                        return self.parse_invoice(row, requested_code=code)
                if not rows:
                    break
                page += 1
        return None

    def inquire(self, *, billing_id: Any, service_id: Any, transaction_number: str) -> RemoteInvoice | None:
        """Inquiry Billing (RESEARCH B2): the bill's state, total and payments, as Faspay itself
        reports them; a GET with a JSON body like get-all-billing. Its signature covers the
        transaction number, and the answer must name the same one, so ids taken from a callback
        (whose signature does not cover them) cannot make it report another bill. None when
        Faspay does not know the pair. Partly paid = UNPAID with payments."""
        number = str(transaction_number).strip()
        body = {"service_id": service_id, "billing_id": billing_id, "transaction_number": number,
                "signature": callback_signature(str(self.secrets["username"]), str(self.secrets["password"]), number)}
        payload = self.http.request_json("GET", INQUIRE_PATH, json=body, accept_status=(400, 404, 422))
        if not isinstance(payload, dict):
            raise BadResponseError("faspay: inquire did not answer with a JSON object", provider=self.provider)
        code = str(payload.get("response_code", "")).strip()
        if code != "00":
            message = self.http.mask(str(payload.get("response_message") or payload.get("message") or ""))[:200]
            if _AUTH_MESSAGE.search(message):
                raise AuthError(f"faspay: inquire refused the credential ({message})", provider=self.provider)
            if _EMPTY_MESSAGE.search(message):
                return None
            raise BadResponseError(f"faspay: inquire failed (response_code {code or '?'}: {message})",
                                   provider=self.provider)
        if str(payload.get("transaction_number") or "").strip() != number:
            raise BadResponseError("faspay: inquire answered for another bill", provider=self.provider)
        label = str(payload.get("billing_status") or "").strip().upper()
        status = self.map_status(label)
        total = to_decimal(payload.get("billing_total"), field="billing_total", provider=self.provider)
        paid, paid_at = Decimal(0), None
        details = payload.get("payment_details") or []
        if not isinstance(details, list):
            raise BadResponseError("faspay: inquire payment_details is not a list", provider=self.provider)
        for detail in details:
            if not isinstance(detail, dict):
                raise BadResponseError("faspay: inquire payment_details holds a non-object", provider=self.provider)
            paid += to_decimal(detail.get("payment_nominal"), field="payment_nominal", provider=self.provider) or 0
            when = self._datetime(detail.get("payment_date"), "payment_date")
            if when is not None and (paid_at is None or when > paid_at):
                paid_at = when
        outstanding = None if total is None else (Decimal(0) if status in (st.PAID, st.CANCELLED) else total - paid)
        if status == st.OPEN and paid > 0:
            status = st.PARTIALLY_PAID
        return RemoteInvoice(external_id=number, number=number, status=status, provider_status=label,
                             amount=total, outstanding=outstanding, paid_amount=paid, paid_at=paid_at,
                             due_at=self._datetime(payload.get("billing_due_date"), "billing_due_date"),
                             checkout_url=str(payload.get("billing_url") or ""), raw=dict(payload))

    def settled_scope(self) -> SettledScope:
        """Paid and cancelled bills are read when issued in the (month-aligned) window."""
        start, end, _, _ = self._plan_bounds(None)
        return SettledScope(field="issued_at", start=self.midnight(start),
                            end=self.midnight(end + timedelta(days=1)), undated=True)

    # -- HTTP ----------------------------------------------------------------------------------
    def _body(self, code: int, start: date, end: date, page: int, customer_id: int | None = None) -> dict[str, Any]:
        """The request body, in the documented example's types: `page` a string, `status` a number.

        The parameter table says `yyyy-mm-dd` but the example sends `yyyy-mm-dd 00:00:00`; we send
        the example's form by default (it is what was shown working) and cover the whole end day
        (23:59:59) so windows meet without a gap. `period_format=date` switches to the table's form.
        """
        if self.period_format == "date":
            start_text, end_text = start.isoformat(), end.isoformat()
        else:
            start_text, end_text = f"{start.isoformat()} 00:00:00", f"{end.isoformat()} 23:59:59"
        body: dict[str, Any] = {"signature": self.signature, "page": str(page)}
        customer = self.customer_id if self.customer_id is not None else customer_id
        if customer is not None:
            body["customer_id"] = customer
        body.update({"start_period": start_text, "end_period": end_text, "status": code})
        return body

    def _request(self, code: int, start: date, end: date, page: int, customer_id: int | None = None) -> dict[str, Any]:
        """One call; returns the payload of a `response_code` "00" answer or raises by cause."""
        # 400/422 are read, not raised: Faspay explains a refusal in the body's `message`.
        payload = self.http.request_json("GET", PATH, json=self._body(code, start, end, page, customer_id),
                                         accept_status=(400, 422))
        if not isinstance(payload, dict):
            raise BadResponseError("faspay: get-all-billing did not answer with a JSON object", provider=self.provider)
        response_code = str(payload.get("response_code", "")).strip()
        if response_code == "00":
            return payload
        message = self.http.mask(str(payload.get("message") or payload.get("response_message") or ""))[:200]
        if not response_code:
            raise BadResponseError("faspay: get-all-billing answer has no response_code", provider=self.provider)
        if _AUTH_MESSAGE.search(message):
            raise AuthError(f"faspay: get-all-billing refused the credential (response_code {response_code}: "
                            f"{message}); check username and password", provider=self.provider)
        if _EMPTY_MESSAGE.search(message):
            return {"current_page": str(page), "total_pages": 0, "total_data": 0, "data": []}
        raise BadResponseError(f"faspay: get-all-billing failed (response_code {response_code}: "
                               f"{message or 'no message'})", provider=self.provider)

    def _fetch(self, code: int, start: date, end: date, page: int,
               customer_id: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """(rows, total_pages) of one page; `data` may be null when there is nothing."""
        payload = self._request(code, start, end, page, customer_id)
        rows = payload.get("data")
        if rows is None:
            rows = []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise BadResponseError("faspay: get-all-billing `data` is not a list of objects", provider=self.provider)
        total_pages = _int_field(payload, "total_pages", default=None if rows else 0)
        return rows, total_pages

    # -- parsing -------------------------------------------------------------------------------
    def identify(self, row: Any) -> tuple[str, dict[str, Any]]:
        """(invoice_no, the raw row kept): with the requested status, all `parse_invoice` reads."""
        invoice_no = str(row.get("invoice_no") or "").strip() if isinstance(row, dict) else ""
        if not invoice_no:
            raise BadResponseError("faspay: a get-all-billing row has no invoice_no", provider=self.provider)
        return invoice_no, dict(row)

    def parse_invoice(self, row: dict[str, Any], requested_code: int) -> RemoteInvoice:
        """One `data[]` item. The table spells the label `Invoice_status`, the example
        `invoice_status`: both are read; without either, the bucket we asked for stands in."""
        invoice_no = str(row.get("invoice_no") or "").strip()
        if not invoice_no:
            raise BadResponseError("faspay: a get-all-billing row has no invoice_no", provider=self.provider)
        label = row.get("invoice_status", row.get("Invoice_status"))
        provider_status = str(label).strip() if label not in (None, "") else LABELS[requested_code]
        customer_id = row.get("customer_id")
        issued_at = self._datetime(row.get("invoice_date"), "invoice_date")
        if issued_at is None and row.get("period"):
            issued_at = _period_start(row["period"])
        return RemoteInvoice(
            external_id=invoice_no,
            number=invoice_no,
            status=self.map_status(provider_status),
            provider_status=provider_status,
            currency="IDR",
            customer_name=str(row.get("customer_name") or ""),
            customer_ref="" if customer_id in (None, "") else str(customer_id),
            amount=None,  # the list has no total; unknown, not zero
            outstanding=to_decimal(row.get("outstanding_amount"), field="outstanding_amount", provider=self.provider),
            paid_amount=None,  # needs the total
            issued_at=issued_at,
            due_at=self._datetime(row.get("due_date"), "due_date"),
            raw=dict(row),
        )

    def _datetime(self, value: Any, field: str) -> datetime | None:
        return to_datetime(value, naive_tz=JAKARTA, field=field, provider=self.provider)


def _int_field(payload: dict[str, Any], name: str, *, default: int | None) -> int:
    """Faspay mixes types (`current_page` is a string, `total_pages` a number): accept both."""
    value = payload.get(name)
    if value is None or value == "":
        if default is None:
            raise BadResponseError(f"faspay: get-all-billing answer has no {name}", provider="faspay")
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BadResponseError(f"faspay: get-all-billing {name} is not a number", provider="faspay") from None
    if number < 0:
        raise BadResponseError(f"faspay: get-all-billing {name} is negative", provider="faspay")
    return number


def _period_start(period: Any) -> datetime | None:
    """`period` is YYYYMM: the first day of that month, Jakarta time (used only without invoice_date)."""
    text = str(period).strip()
    if len(text) != 6 or not text.isdigit() or not 1 <= int(text[4:]) <= 12:
        return None
    return datetime(int(text[:4]), int(text[4:]), 1, tzinfo=JAKARTA)


# -- callbacks (RESEARCH B3) -----------------------------------------------------------------------

CALLBACK_STATES = ("UNPAID", "PAID", "EXPIRED", "CANCELLED")
_CALLBACK_FIELDS = ("transaction_number", "signature", "billing_status", "billing_total", "payment_amount",
                    "payment_date", "payment_id", "billing_id", "service_id", "payment_method")


def callback_signature(username: str, password: str, transaction_number: str) -> str:
    """`sha1(md5(username + password + transaction_number))`, lowercase hex (as PHP computes it)."""
    inner = hashlib.md5((username + password + transaction_number).encode("utf-8")).hexdigest()
    return hashlib.sha1(inner.encode("ascii")).hexdigest()


def parse_notification(*, headers: Mapping[str, str], content_type: str, body: bytes, secrets: Mapping[str, Any],
                       options: Mapping[str, Any], now: datetime | None = None) -> notify.RemoteNotification:
    """Faspay Billing's callback (JSON POST). `transaction_number` is get-all-billing's `invoice_no`
    (INFERENCE: the callback page calls it "Merchant invoice number").

    The signature covers `transaction_number` only: status, amounts and payment date are claims,
    confirmed with Faspay's inquiry (by the unsigned `billing_id`/`service_id`, `lookup_hints`)
    or its list before anything is applied. The event is `transaction_number` + `payment_id`."""
    data = notify.json_object(body)
    notify.scalars(data, _CALLBACK_FIELDS)
    number = notify.text(data.get("transaction_number"))
    if not number or not notify.text(data.get("signature")):
        raise notify.NotificationRefused(notify.MALFORMED, "transaction_number or signature is missing")
    expected = callback_signature(notify.secret(secrets, "username"), notify.secret(secrets, "password"), number)
    if not hmac.compare_digest(expected.encode(), notify.text(data["signature"]).lower().encode()):
        raise notify.NotificationRefused(notify.BAD_SIGNATURE, "the signature does not match")
    billing_status = notify.text(data.get("billing_status")).upper()
    if billing_status not in CALLBACK_STATES:
        raise notify.NotificationRefused(notify.MALFORMED, "billing_status is not UNPAID, PAID, EXPIRED or CANCELLED")
    total = notify.positive(notify.decimal(data.get("billing_total"), "billing_total"), "billing_total")
    paid = notify.positive(notify.decimal(data.get("payment_amount"), "payment_amount"), "payment_amount", zero=True)
    paid_at = notify.jakarta(data.get("payment_date"), "payment_date", required=False)
    facts: dict[str, Any] = {}
    if billing_status == "PAID":
        facts = {"outstanding": Decimal(0), "paid_amount": paid if paid is not None else total, "paid_at": paid_at}
    elif billing_status == "CANCELLED":
        facts = {"outstanding": Decimal(0), "clear_paid_at": True}
    else:  # UNPAID / EXPIRED: still owed in full
        facts = {"outstanding": total, "paid_amount": Decimal(0) if total is not None else None, "clear_paid_at": True}
    payment_id = notify.text(data.get("payment_id")) or notify.text(data.get("billing_id"))
    return notify.RemoteNotification(
        external_id=number[:128], event_id=payment_id[:128], event_key=f"faspay:{number}:{payment_id}"[:255],
        event_at=paid_at, kind="state", status=STATUS_MAP[billing_status], provider_status=billing_status,
        invoice_amount=total, currency="IDR", payment_channel=notify.text(data.get("payment_method"))[:128],
        confirm=True, lookup_hints={"billing_id": notify.text(data.get("billing_id"))[:32],
                                    "service_id": notify.text(data.get("service_id"))[:32]}, **facts)
