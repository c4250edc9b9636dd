"""Faspay Billing sandbox: `GET /billingbackendapi/web/billing/get-all-billing` with a JSON body.

Behaviour, and the choices made where the document is silent:
- Auth: `signature` must equal sha1(md5(username + password)) (lowercase hex). A missing or wrong
  one is answered like every other refusal in Faspay Billing's JSON APIs: **HTTP 200** with
  `{"response_code": "01", "message": "Invalid signature"}` (the document defines only the body
  codes 00/01; Faspay's other APIs report failures in the body, not in the HTTP status).
- Mandatory `page` (>= 1), `status` (0,1,2,3,4,5,7), `start_period`, `end_period` are checked the same
  way ("01" and a message). Periods may be `yyyy-mm-dd` (the table) or `yyyy-mm-dd hh:mm:ss` (the
  example); a date-only `end_period` covers that whole day. The window filters on `invoice_date`.
- Optional `customer_id` (exact) and `due_date` (invoices due on that calendar day).
- Parameters are read from a JSON body (documented), else a form body, merged over query params.
- Page size 100 (undocumented; our choice). A page past the last answers "00" with empty `data`.
- Each invoice is in exactly one status bucket: an Unpaid invoice due before the sandbox's "now"
  (the anchor date, 00:00 Asia/Jakarta) is listed under 4 with the label "Overdue", not under 1.

Population: invoice i (0 <= i < size) is a pure function of (seed, i) plus the mutation overrides.
Invoice dates rise with i (from ~23 months before the anchor to 2 months after), so a period
window is an index range found by bisection; per-status arrays of indexes (built once, ~1 s at a
million, patched in place by `mutate`) turn a page into two bisections and a slice.

Old debt: beyond the `size` seeded invoices, the population carries the six `legacy_plan` records
of `gateways.sandbox.core` (whatever the size, even 0; none when the Sandbox is built with
`legacy=False`). They live at indexes -6..-1 (oldest first), are numbered `INV-OLD-MMYY000KK`
(MMYY of the invoice date, KK the legacy key; "OLD" is no merchant code, so a seeded number never
collides), are issued on `legacy.issued` and due on `legacy.due` (a time of day as seeded ones)
with a customer like the seeded ones, and are all due before the anchor:
- "open": Unpaid, so listed as Overdue (4), outstanding the full total;
- "partial": Partial Paid (5), 10-90% paid;
- "other": Partial Paid (5) with only a small remainder (1,000-49,000) left owed;
- "late": Overdue (4) with the full total until the sandbox's clock (`Sandbox.now()`, which tests
  pin with time-machine) reaches `paid_on`, then Paid (2), outstanding 0, paid at `paid_on`
  00:00 UTC. That clock decides nothing else.
They are older than every seeded invoice, so within a bucket they come first (ascending order):
a query filters the six live (bucket, invoice_date window, customer_id, due_date) and pages
through them before the seeded slice, and `total_pages`/`total_data` count them. `mutate`,
`truth()` and the notifications treat them like seeded invoices; an override (a test paying or
reopening one) wins over the clock.
"""
from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left, insort
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from .. import status as st
from .core import Legacy, ProviderSandbox, Request, Response

JAKARTA = ZoneInfo("Asia/Jakarta")
PATH = r"/billingbackendapi/web/billing/get-all-billing"
INQUIRE_PATH = r"/billingbackendapi/web/api/inquire"
#: The sandbox's Faspay Billing ids: billing_id = BILLING_ID_BASE + index (negative for old debt).
BILLING_ID_BASE = 1000
SERVICE_ID = 6
PAGE_SIZE = 100

DRAFT, UNPAID, PAID, CANCELLED, OVERDUE, PARTIAL, PROFORMA = 0, 1, 2, 3, 4, 5, 7
LABELS = {DRAFT: "Draft", UNPAID: "Unpaid", PAID: "Paid", CANCELLED: "Cancelled", OVERDUE: "Overdue",
          PARTIAL: "Partial Paid", PROFORMA: "Proforma"}
INQUIRY_STATUS = {DRAFT: "UNPAID", PROFORMA: "UNPAID", UNPAID: "UNPAID", OVERDUE: "UNPAID", PARTIAL: "UNPAID",
                  PAID: "PAID", CANCELLED: "CANCELLED"}
NORMALIZED = {DRAFT: st.DRAFT, PROFORMA: st.DRAFT, UNPAID: st.OPEN, OVERDUE: st.OPEN, PARTIAL: st.PARTIALLY_PAID,
              PAID: st.PAID, CANCELLED: st.CANCELLED}
#: Normalized state -> the stored Faspay state a mutation sets (Overdue is derived from the due date).
FROM_NORMALIZED = {st.DRAFT: DRAFT, st.OPEN: UNPAID, st.PARTIALLY_PAID: PARTIAL, st.PAID: PAID,
                   st.CANCELLED: CANCELLED}

#: Stored-state draw per 1000: draft 4%, proforma 3%, unpaid 23%, partial 8%, cancelled 6%, paid 56%.
_STATE_CUTS = ((40, DRAFT), (70, PROFORMA), (300, UNPAID), (380, PARTIAL), (440, CANCELLED), (1000, PAID))
_TERMS = (1, 7, 14, 14, 30, 30, 30, 45)  # days from invoice date to due date
_DAYS_BACK, _DAYS_AHEAD = 700, 60
_MERCHANT_CODES = ("FPY", "T8V", "MP2")
_FIRST = ("Andi", "Budi", "Citra", "Dewi", "Eko", "Fadhil", "Gita", "Hendra", "Indah", "Joko", "Kartika", "Lestari")
_LAST = ("Santoso", "Wijaya", "Pratama", "Saputra", "Nugroho", "Hidayat", "Kusuma", "Siregar", "Achmadi")
_COMPANIES = ("Media Indonusa", "Sinar Jaya", "Karya Abadi", "Maju Bersama", "Cahaya Timur", "Nusantara Data")

_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finalizer: a fast, well-spread 64-bit hash (the population's only randomness)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def expected_signature(username: str, password: str, number: str = "") -> str:
    """sha1(md5(username + password [+ transaction_number])), written here apart from the client's
    on purpose: the tests compare the two."""
    return hashlib.sha1(hashlib.md5((username + password + number).encode()).hexdigest().encode()).hexdigest()


def _fail(message: str) -> Response:
    return Response(200, {"response_code": "01", "message": message})


def _parse_period(value: Any) -> datetime | None:
    text = str(value or "").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


class Sandbox(ProviderSandbox):
    name = "faspay"

    def reset(self) -> None:
        """Drop the changes; the seeded index survives a reset that had nothing to undo."""
        pristine = not getattr(self, "overrides", None)
        self.overrides: dict[int, dict[str, Any]] = {}
        self._key = _mix(self.sandbox.seed ^ 0xFA5BA1)
        self._today = self.sandbox.anchor
        self._first = self._today - timedelta(days=_DAYS_BACK)
        self._span = _DAYS_BACK + _DAYS_AHEAD + 1
        if not pristine or not hasattr(self, "_buckets"):
            self._buckets: dict[int, array] | None = None
            self._built_for = -1
            self._filtered: dict[tuple, array] = {}

    def routes(self):
        return [("GET", PATH, self.get_all_billing), ("GET", INQUIRE_PATH, self.inquire), ("POST", INQUIRE_PATH, self.inquire)]

    def auth_failure(self) -> Response:
        return _fail("Invalid signature")

    # -- population: pure functions of (seed, i) ---------------------------------------------------
    def _hash(self, i: int, salt: int = 0) -> int:
        return _mix(self._key ^ (i * 0x100000001B3 + salt))

    def _day(self, i: int) -> int:
        """Invoice date of i as days after `_first` (rises with i; the anchor is day _DAYS_BACK)."""
        return (i * self._span) // max(1, self.size)

    def _invoice_date(self, i: int) -> date:
        return self._first + timedelta(days=self._day(i))

    def _base_state(self, i: int, h: int) -> int:
        draw = h % 1000
        for cut, state in _STATE_CUTS:
            if draw < cut:
                break
        day = self._day(i)
        if state not in (DRAFT, PROFORMA, UNPAID) and day > _DAYS_BACK:
            state = UNPAID  # issued ahead (scheduled/recurring billing): not paid yet
        elif state in (UNPAID, PARTIAL) and day < _DAYS_BACK - 120 and (h >> 56) % 4:
            state = PAID  # most bills get paid in the end: old receivables thin out
        return state

    def _due_day(self, i: int, h: int) -> int | None:
        """Due date of i as days after `_first`; None for the fifth of drafts without one yet."""
        if h % 1000 < 40 and (h >> 10) % 1000 < 200:
            return None
        return self._day(i) + _TERMS[(h >> 20) & 7]

    def _due_date(self, i: int, h: int) -> date | None:
        day = self._due_day(i, h)
        return None if day is None else self._first + timedelta(days=day)

    def _customer(self, i: int, h2: int, *, optional: bool = True) -> int | None:
        if optional and h2 % 100 < 3:  # customer_id is optional in the response
            return None
        customers = max(3, min(2000, self.size // 20 + 3))
        return 1 + (h2 >> 8) % customers

    # -- old debt: the legacy records at indexes -len(legacy)..-1 (oldest first) -----------------
    def _legacy_of(self, i: int) -> Legacy:
        legacy = self.legacy
        if not -len(legacy) <= i < 0:
            raise KeyError(i)
        return legacy[i + len(legacy)]

    def _legacy_indexes(self) -> range:
        return range(-len(self.legacy), 0)

    @staticmethod
    def _legacy_number(legacy: Legacy) -> str:
        return f"INV-OLD-{legacy.issued.month:02d}{legacy.issued.year % 100:02d}{legacy.key:05d}"

    @staticmethod
    def _legacy_paid_at(legacy: Legacy) -> datetime | None:
        """When a late payer pays: the moment `Legacy.paid` turns true (paid_on 00:00 UTC)."""
        if legacy.paid_on is None:
            return None
        return datetime.combine(legacy.paid_on, time(0), timezone.utc).astimezone(JAKARTA)

    def _legacy_state(self, legacy: Legacy) -> int:
        """The stored state of a legacy invoice without override, by kind and the sandbox's clock."""
        if legacy.kind in ("partial", "other"):
            return PARTIAL
        if legacy.kind == "late" and legacy.paid(self.sandbox.now()):
            return PAID
        return UNPAID

    # -- states ---------------------------------------------------------------------------------
    def _state(self, i: int) -> int:
        """The stored state (Overdue is not stored): the override, else the seeded draw."""
        override = self.overrides.get(i)
        if override is not None:
            return override["state"]
        if i < 0:
            return self._legacy_state(self._legacy_of(i))
        return self._base_state(i, self._hash(i))

    def _listed_as(self, i: int, state: int) -> int:
        """The bucket of i in `state`: Unpaid past due -> Overdue."""
        if state == UNPAID:
            if i < 0:
                return OVERDUE if self._legacy_of(i).due < self._today else UNPAID
            due = self._due_day(i, self._hash(i))
            if due is not None and due < _DAYS_BACK:
                return OVERDUE
        return state

    def _bucket(self, i: int) -> int:
        """The one status code i is listed under: stored state, Unpaid past due -> Overdue."""
        return self._listed_as(i, self._state(i))

    def _record(self, i: int) -> dict[str, Any]:
        """Everything the sandbox knows about invoice i (listing fields and ground truth)."""
        h, h2 = self._hash(i), self._hash(i, 1)
        legacy = self._legacy_of(i) if i < 0 else None
        if legacy is None:
            issued, due = self._invoice_date(i), self._due_date(i, h)
            customer = self._customer(i, h2)
        else:
            issued, due = legacy.issued, legacy.due
            customer = self._customer(i, h2, optional=False)
        state = self._state(i)
        bucket = self._listed_as(i, state)
        amount = Decimal(50_000 + ((h >> 24) % 49_951) * 1000)
        outstanding, paid_at = amount, None
        if state == PARTIAL:
            if legacy is not None and legacy.kind == "other":
                outstanding = Decimal(((h >> 40) % 49 + 1) * 1000)  # a small remainder left owed
            else:
                outstanding = amount - (amount * (10 + (h >> 40) % 81) // 100 // 100 * 100)
        elif state == PAID and legacy is not None:
            outstanding, paid_at = Decimal(0), self._legacy_paid_at(legacy)
        elif state == PAID:
            outstanding = -Decimal(((h >> 48) % 40 + 1) * 10_000) if (h2 >> 30) % 100 < 8 else Decimal(0)
            paid_day = min(self._today, issued + timedelta(days=(h >> 52) % 40))
            paid_at = datetime.combine(paid_day, time((h2 >> 40) % 24, (h2 >> 46) % 60), JAKARTA)
        elif state == CANCELLED:
            outstanding = Decimal(0)
        override = self.overrides.get(i)
        if override is not None:
            outstanding = override.get("outstanding", outstanding)
            paid_at = override.get("paid_at", paid_at) if state in (PAID, PARTIAL) else None
        code = _MERCHANT_CODES[(customer or 0) % 3]
        if customer is None:
            name = f"{_FIRST[(h2 >> 20) % 12]} {_LAST[(h2 >> 24) % 9]}"
        elif customer % 4 == 0:
            name = f"PT. {_COMPANIES[customer % 6]} {customer}"
        else:
            name = f"{_FIRST[customer % 12]} {_LAST[customer % 9]} {customer}"
        due_time = time((h >> 30) % 24, (h >> 35) % 60)
        number = (f"INV-{code}-{issued.month:02d}{issued.year % 100:02d}{i:05d}" if legacy is None
                  else self._legacy_number(legacy))
        return {
            "i": i, "h2": h2, "state": state, "bucket": bucket, "issued": issued, "due": due, "due_time": due_time,
            "invoice_no": number,
            "customer": customer, "customer_name": name, "amount": amount, "outstanding": outstanding,
            "paid_at": paid_at,
        }

    def _row(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The get-all-billing `data[]` item, in the documented key order and types."""
        row: dict[str, Any] = {"customer_id": rec["customer"]}
        if rec["customer"] is None and rec["h2"] % 100 == 1:  # optional: sometimes absent, not null
            del row["customer_id"]
        outstanding: Any = rec["outstanding"]
        if (rec["h2"] >> 16) % 100 < 3:
            outstanding = str(outstanding)  # a PHP backend sometimes sends numbers as strings
        row.update({
            "customer_name": rec["customer_name"],
            "invoice_date": f"{rec['issued'].isoformat()} 00:00:00",
            "invoice_no": rec["invoice_no"],
            "due_date": (f"{rec['due'].isoformat()} {rec['due_time'].strftime('%H:%M:%S')}"
                         if rec["due"] is not None else None),
            "invoice_status": LABELS[rec["bucket"]],
            "outstanding_amount": outstanding,
            "period": rec["issued"].strftime("%Y%m"),
        })
        return row

    def _index_of(self, external_id: str) -> int:
        for j, legacy in zip(self._legacy_indexes(), self.legacy):
            if self._legacy_number(legacy) == str(external_id):
                return j
        parts = str(external_id).split("-")
        if len(parts) != 3 or parts[0] != "INV" or len(parts[2]) < 9 or not parts[2].isdigit():
            raise KeyError(external_id)
        i = int(parts[2][4:])
        if not 0 <= i < self.size or self._record(i)["invoice_no"] != external_id:
            raise KeyError(external_id)
        return i

    # -- indexes ------------------------------------------------------------------------------
    def _bucket_arrays(self) -> dict[int, array]:
        """Sorted invoice indexes per status bucket, built once per size and patched by `mutate`."""
        with self.lock:
            if self._buckets is None or self._built_for != self.size:
                buckets = {code: array("q") for code in LABELS}
                appenders = {code: arr.append for code, arr in buckets.items()}
                for i in range(self.size):  # _bucket(i), inlined: this loop is the whole build cost
                    if i in self.overrides:
                        appenders[self._bucket(i)](i)
                        continue
                    h = self._hash(i)
                    state = self._base_state(i, h)
                    if state == UNPAID:
                        due = self._due_day(i, h)
                        if due is not None and due < _DAYS_BACK:
                            state = OVERDUE
                    appenders[state](i)
                self._buckets, self._built_for, self._filtered = buckets, self.size, {}
            return self._buckets

    def _filtered_array(self, code: int, customer: int | None, due: date | None) -> array:
        """A bucket narrowed by the optional filters; cached per filter (cleared by `mutate`)."""
        base = self._bucket_arrays()[code]
        if customer is None and due is None:
            return base
        key = (code, customer, due)
        with self.lock:
            cached = self._filtered.get(key)
            if cached is None:
                cached = array("q")
                for i in base:
                    if customer is not None and self._customer(i, self._hash(i, 1)) != customer:
                        continue
                    if due is not None and self._due_date(i, self._hash(i)) != due:
                        continue
                    cached.append(i)
                if len(self._filtered) > 64:
                    self._filtered.clear()
                self._filtered[key] = cached
            return cached

    def _first_index_on_or_after(self, day: date) -> int:
        """Smallest i with invoice_date(i) >= day (invoice dates rise with i)."""
        lo, hi = 0, self.size
        while lo < hi:
            mid = (lo + hi) // 2
            if self._invoice_date(mid) < day:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # -- HTTP ---------------------------------------------------------------------------------
    def _params(self, request: Request) -> dict[str, Any] | None:
        params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
        body = (request.body or b"").strip()
        if not body:
            return params
        if body.startswith(b"{") or "json" in request.headers.get("content-type", ""):
            try:
                data = json.loads(body, parse_float=Decimal)
            except ValueError:
                return None
            if not isinstance(data, dict):
                return None
            params.update(data)
        else:
            params.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                          keep_blank_values=True).items()})
        return params

    def inquire(self, request: Request, match) -> Response:
        """Inquiry Billing (RESEARCH B2): a JSON body `service_id`, `billing_id`,
        `transaction_number`, `signature` = sha1(md5(username + password + transaction_number)).
        Answers the bill's `billing_status` (UNPAID/PAID/EXPIRED/CANCELLED: a partly paid bill is
        UNPAID with payments), `billing_total` and `payment_details` [{payment_id, payment_date,
        payment_nominal}]; "01" for a wrong signature or an unknown billing_id/number pair."""
        params = self._params(request)
        if params is None:
            return _fail("Invalid request body")
        number = str(params.get("transaction_number") or "")
        wanted = expected_signature(self.credentials["username"], self.credentials["password"], number)
        if not number or str(params.get("signature") or "") != wanted:
            return self.auth_failure()
        try:
            with self.lock:
                i = self._index_of(number)
                rec = self._record(i)
        except KeyError:
            return _fail("Billing not found")
        if str(params.get("billing_id") or "") != str(BILLING_ID_BASE + i) or \
                str(params.get("service_id") or "") != str(SERVICE_ID):
            return _fail("Billing not found")
        paid = rec["amount"] - max(rec["outstanding"], Decimal(0)) if rec["bucket"] in (PAID, PARTIAL) else Decimal(0)
        details = []
        if paid > 0:
            when = rec["paid_at"] or datetime.combine(rec["issued"], time(12), JAKARTA)
            details.append({"payment_id": f"{1606804843000000 + i}", "payment_nominal": str(paid),
                            "payment_date": when.astimezone(JAKARTA).strftime("%Y-%m-%d %H:%M:%S")})
        due = datetime.combine(rec["due"], rec["due_time"]) if rec["due"] else None
        return Response(200, {"response_code": "00", "response_message": "Success", "billing_id": BILLING_ID_BASE + i,
                              "transaction_number": number, "billing_total": str(rec["amount"]),
                              "billing_status": INQUIRY_STATUS[rec["bucket"]], "payment_details": details,
                              "billing_due_date": due.strftime("%Y-%m-%d %H:%M:%S") if due else None,
                              "billing_url": f"https://fasbill-sandbox.faspay.co.id/pay/{BILLING_ID_BASE + i}"})

    def get_all_billing(self, request: Request, match) -> Response:
        params = self._params(request)
        if params is None:
            return _fail("Invalid request body")
        wanted = expected_signature(self.credentials["username"], self.credentials["password"])
        if not params.get("signature"):
            return _fail("Signature is required")
        if str(params["signature"]) != wanted:
            return self.auth_failure()
        for name in ("page", "status", "start_period", "end_period"):
            if params.get(name) in (None, ""):
                return _fail(f"{name} is required")
        try:
            page = int(str(params["page"]).strip())
            code = int(str(params["status"]).strip())
        except ValueError:
            return _fail("page and status must be numeric")
        if page < 1:
            return _fail("page must be at least 1")
        if code not in LABELS:
            return _fail("Invalid status")
        start, end = _parse_period(params["start_period"]), _parse_period(params["end_period"])
        if start is None or end is None:
            return _fail("Invalid period format, use yyyy-mm-dd")
        if len(str(params["end_period"]).strip()) == 10:
            end = end.replace(hour=23, minute=59, second=59)
        if end < start:
            return _fail("end_period must not be before start_period")
        customer = None
        if params.get("customer_id") not in (None, ""):
            if not str(params["customer_id"]).strip().isdigit():
                return _fail("customer_id must be numeric")
            customer = int(str(params["customer_id"]).strip())
        due = None
        if params.get("due_date") not in (None, ""):
            due_dt = _parse_period(params["due_date"])
            if due_dt is None:
                return _fail("Invalid due_date format, use yyyy-mm-dd")
            due = due_dt.date()

        # invoice_date is a midnight: it lies in [start, end] iff its day is in [first_day, end.date()]
        first_day = start.date() if start.time() == time(0) else start.date() + timedelta(days=1)
        lo = self._first_index_on_or_after(first_day)
        hi = self._first_index_on_or_after(end.date() + timedelta(days=1))
        with self.lock:
            # The old debt (a handful of records, older than every seeded one): filtered live, listed first.
            old = [rec for rec in map(self._record, self._legacy_indexes())
                   if rec["bucket"] == code and first_day <= rec["issued"] <= end.date()
                   and (customer is None or rec["customer"] == customer) and (due is None or rec["due"] == due)]
            indexes = self._filtered_array(code, customer, due)
            a, b = bisect_left(indexes, lo), bisect_left(indexes, hi)
            total = len(old) + max(0, b - a)
            offset = (page - 1) * PAGE_SIZE
            records = old[offset:offset + PAGE_SIZE]
            first = a + max(0, offset - len(old))  # the seeded slice starts after the old debt
            room = PAGE_SIZE - len(records)
            if room > 0 and first < b:
                records += [self._record(i) for i in indexes[first:min(b, first + room)]]
            rows = [self._row(rec) for rec in records]
        return Response(200, {
            "current_page": str(page),
            "total_pages": -(-total // PAGE_SIZE),
            "total_data": total,
            "response_code": "00",
            "data": rows,
            "message": "Success get billing",
        })

    # -- ground truth and changes -------------------------------------------------------------
    def _truth(self, rec: dict[str, Any]) -> dict[str, Any]:
        state, outstanding = rec["state"], rec["outstanding"]
        if state in (PARTIAL, PAID):
            paid_amount = rec["amount"] - outstanding
        else:
            paid_amount = Decimal(0)
        due_at = (datetime.combine(rec["due"], rec["due_time"], JAKARTA) if rec["due"] is not None else None)
        return {
            "external_id": rec["invoice_no"],
            "number": rec["invoice_no"],
            "status": NORMALIZED[rec["bucket"]],
            "provider_status": LABELS[rec["bucket"]],
            "status_code": rec["bucket"],
            "currency": "IDR",
            # The sandbox's own total. get-all-billing does not list it, so a client reports None.
            "amount": rec["amount"],
            "outstanding": outstanding,
            "paid_amount": paid_amount,
            "customer_ref": "" if rec["customer"] is None else str(rec["customer"]),
            "customer_name": rec["customer_name"],
            "issued_at": datetime.combine(rec["issued"], time(0), JAKARTA),
            "due_at": due_at,
            "paid_at": rec["paid_at"],
        }

    def truth(self) -> Iterator[dict[str, Any]]:
        """The old debt first (it is the oldest), then the seeded invoices; at `self.sandbox.now()`."""
        for i in self._legacy_indexes():
            yield self._truth(self._record(i))
        for i in range(self.size):
            yield self._truth(self._record(i))

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply normalized changes (`status`, `outstanding`, `paid_at`) consistently.

        paid/cancelled -> outstanding 0 unless a non-positive outstanding (credit) is given for paid;
        open -> outstanding back to the total; partially_paid needs 0 < outstanding < total (default
        half). An outstanding alone moves the state (<= 0 paid, below the total partial). Faspay's
        list has no updated timestamp, so there is nothing else to bump.
        """
        unknown = set(changes) - {"status", "outstanding", "paid_at"}
        if unknown:
            raise ValueError(f"faspay sandbox cannot change {', '.join(sorted(unknown))}")
        with self.lock:
            i = self._index_of(external_id)
            rec = self._record(i)
            old_bucket = rec["bucket"]
            amount = rec["amount"]
            state = rec["state"]
            outstanding = Decimal(str(changes["outstanding"])) if changes.get("outstanding") is not None else None
            if "status" in changes:
                if changes["status"] not in FROM_NORMALIZED:
                    raise ValueError(f"faspay has no state for {changes['status']!r}")
                state = FROM_NORMALIZED[changes["status"]]
            elif outstanding is not None:
                state = PAID if outstanding <= 0 else PARTIAL if outstanding < amount else UNPAID
            if state == PAID:
                outstanding = outstanding if outstanding is not None and outstanding <= 0 else Decimal(0)
            elif state == CANCELLED:
                outstanding = Decimal(0)
            elif state == PARTIAL:
                if outstanding is None or not 0 < outstanding < amount:
                    outstanding = rec["outstanding"] if 0 < rec["outstanding"] < amount else amount / 2
            else:
                outstanding = amount
            paid_at = changes.get("paid_at", rec["paid_at"])
            if isinstance(paid_at, str):
                paid_at = datetime.fromisoformat(paid_at.replace("Z", "+00:00"))
            if paid_at is not None and paid_at.tzinfo is None:
                paid_at = paid_at.replace(tzinfo=JAKARTA)
            if state == PAID and paid_at is None:
                paid_at = datetime.combine(self._today, time(9, 0), JAKARTA)
            self.overrides[i] = {"state": state, "outstanding": outstanding, "paid_at": paid_at}
            if self._buckets is not None and i >= 0:  # the old debt is not in the arrays (filtered live)
                new_bucket = self._bucket(i)
                old = self._buckets[old_bucket]
                position = bisect_left(old, i)
                if position < len(old) and old[position] == i:
                    old.pop(position)
                insort(self._buckets[new_bucket], i)
                self._filtered = {}
            return self._truth(self._record(i))

    # -- billing callback (POST /_sandbox/notify) --------------------------------------------
    DEFAULT_EVENT = "PAID"
    PREVIOUS_EVENT = "UNPAID"
    EVENT_CHANGES = {"PAID": {"status": st.PAID}, "UNPAID": {"status": st.OPEN},
                     "CANCELLED": {"status": st.CANCELLED}}

    def notification(self, external_id: str, *, event: str = "PAID", older: bool = False,
                     bad_signature: bool = False) -> tuple[dict[str, str], bytes]:
        """Faspay Billing's callback (RESEARCH B3): JSON, `signature` =
        sha1(md5(username + password + transaction_number)); `payment_date` only once paid."""
        with self.lock:
            i = self._index_of(external_id)
            rec = self._record(i)
        number = rec["invoice_no"]
        password = self.credentials["password"] + ("-wrong" if bad_signature else "")
        paid = event == "PAID"
        when = rec["paid_at"] or datetime.now(JAKARTA)
        if older:
            when -= timedelta(minutes=1)
        body = {
            "billing_id": BILLING_ID_BASE + i, "service_id": SERVICE_ID, "transaction_number": number,
            "billing_total": str(rec["amount"]), "signature": expected_signature(self.credentials["username"], password, number),
            "billing_status": event,
            "payment_id": f"{1606804843000000 + i}" if paid else "",
            "payment_amount": str(rec["amount"] - max(rec["outstanding"], Decimal(0))) if paid else "0",
            "payment_method": "PERMATA VA" if paid else "",
            "payment_date": when.astimezone(JAKARTA).strftime("%Y-%m-%d %H:%M:%S") if paid else "",
        }
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
