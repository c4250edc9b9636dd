"""FarPay sandbox: `GET /{version}/invoices` (filters fromDueDate, toDueDate, paymentStatus) and
`GET /{version}/invoices/{id}`, with `X-API-KEY` and `Accept` checked like the real API.

Population (a pure function of (seed, i) plus the overrides from `mutate`):
- Invoice i has Id `ID_BASE + i` and is due `DUE_BACK` days before the anchor plus
  `i * DUE_DAYS // size` days, so due dates rise with the index and a due window is an index range.
- Its payment state comes from a 100-slot table chosen by its due era (old / recently overdue /
  future) at slot `(37 i + 13 seed) % 100`. The indices of one state inside an era are therefore
  a few residue classes mod 100, so a (status, window) read enumerates exactly its answer and never
  scans the population (cheap at size=1,000,000); `mutate` overrides are patched in afterwards.
- About 1 in 61 invoices has no due date (`PaymentDueDate: null`); they never match a due filter.
- Everything else (amounts, partial payments, credit notes, currency, recipient, odd date
  formats, missing optional fields) is drawn from `random.Random("farpay:<seed>:<i>")`.

Old debt (`ProviderSandbox.legacy`, see `core.legacy_plan`; absent with `Sandbox(legacy=False)`):
six more invoices beyond the `size` seeded ones, whatever `size` is (also 0). Legacy key k has Id
`LEGACY_ID_BASE + k` (below every seeded Id, so the two never collide) and internal index
`k - LEGACY_SLOTS` (negative: `record`, `select` and `overrides` use it like a seeded index). It is
issued `legacy.issued` and due `legacy.due`, years before the seeded population, so in due order
(ascending) the legacy invoices come first. Its state follows its kind: "open" 100 owed in full,
"partial" 100 with 0 < ToBePaidAmount < InvoiceAmount, "other" 600 (Chargeback) or 700 (Payment
failed), "late" 100 until the sandbox's clock (`Sandbox.now()`) reaches `legacy.paid_on`, then 200
with nothing left to pay. The rest is drawn like a seeded invoice from
`random.Random("farpay:<seed>:legacy:<k>")` (never a credit note, always dated). The list endpoint
checks the six one by one (cheap at any size) and puts them before the seeded answer; the detail
endpoint, `mutate` (whose overrides win over the clock), `truth` and the notifications treat them
like any other invoice.

Serves JSON only: `Accept: application/xml` (which FarPay supports) is answered 406, as is any
other Accept, so a client that forgets the header is caught.
"""
from __future__ import annotations

import hmac
import json
import random
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ..farpay import sign_webhook
from .core import ProviderSandbox, Request, Response

ID_BASE = 7_300_000
LEGACY_ID_BASE = 7_200_000  # legacy key k is invoice LEGACY_ID_BASE + k (the plan has keys 0..5)
LEGACY_SLOTS = 1000  # legacy key k has the internal index k - LEGACY_SLOTS (< 0: before every seeded one)
DUE_BACK = 700  # the earliest due date lies this many days before the anchor
DUE_DAYS = 1000  # due dates span this many days (up to ~300 days after the anchor)
OLD = 120  # overdue by more than this many days: the "old" era
FILTERABLE = (100, 200, 300, 400, 500, 600, 700)
CENT = Decimal("0.01")

#: Normalized ground truth per FarPay payment state (kept apart from the client's STATUS_MAP on
#: purpose: the tests compare the two).
TRUTH = {100: "open", 200: "paid", 300: "processing", 400: "processing", 500: "failed",
         600: "charged_back", 700: "failed", 1000: "unknown"}
#: `mutate` takes normalized states; FarPay has no cancelled/expired/draft payment state.
FROM_NORMALIZED = {"open": 100, "partially_paid": 100, "paid": 200, "processing": 400, "failed": 700,
                   "charged_back": 600, "unknown": 1000}
SEND_STATUS = {"Queue": 100, "PendingApproval": 110, "ReadyToPrint": 150, "Sent": 200, "Error": 300,
               "EmailBounced": 330, "MissingEmailAddress": 400}
PAYMENT_TYPES = ("MobilePayInvoice", "MobilePaySubscriptions", "Betalingsservice", "Leverandørservice",
                 "FI", "Dankort", "Visa", "MasterCard")
WEBHOOK_TYPES = {"Betalingsservice": "BS", "Leverandørservice": "LS", "Dankort": "DanKort"}
FIRST = ("Pernille", "Jens", "Mette", "Søren", "Anne", "Lars", "Hanna", "Jógvan", "Rasmus", "Ida")
LAST = ("Badenhofen", "Jensen", "Nielsen", "Hansen", "Poulsen", "Joensen", "Møller", "Olsen")

MESSAGE_INVALID = "The request is invalid."
NO_RESOURCE = "No HTTP resource was found that matches the request URI."


def _table(counts: dict[int, int]) -> tuple[int, ...]:
    slots = [status for status, n in counts.items() for _ in range(n)]
    assert len(slots) == 100
    return tuple(slots)


ERAS = {
    "old": _table({200: 70, 100: 10, 300: 2, 400: 2, 500: 4, 600: 4, 700: 5, 1000: 3}),
    "recent": _table({200: 45, 100: 30, 300: 5, 400: 5, 500: 5, 600: 3, 700: 5, 1000: 2}),
    "future": _table({100: 55, 300: 20, 400: 5, 200: 15, 500: 2, 700: 2, 1000: 1}),
}


class Sandbox(ProviderSandbox):
    name = "farpay"

    def reset(self) -> None:
        self.overrides: dict[int, dict[str, Any]] = {}

    def routes(self):
        return [("GET", r"/(?P<version>[^/]+)/invoices", self.list_invoices),
                ("GET", r"/(?P<version>[^/]+)/invoices/(?P<id>[^/]+)", self.get_invoice)]

    def auth_failure(self) -> Response:
        return Response(401, {"Message": "9000::X-API-KEY is not authenticated"})

    # -- HTTP ----------------------------------------------------------------------------------
    def _guard(self, request: Request, version: str) -> Response | None:
        if version != "v2":
            return Response(404, {"Message": NO_RESOURCE})
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self.credentials["api_key"].encode()):
            return self.auth_failure()
        accept = {part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")}
        if "application/json" in accept:
            return None
        if "application/xml" in accept or "text/xml" in accept:
            return Response(406, {"Message": "The sandbox serves JSON only; ask for application/json."})
        return Response(406, {"Message": "Accept must be application/json or application/xml."})

    def list_invoices(self, request: Request, match: re.Match[str]) -> Response:
        refused = self._guard(request, match["version"])
        if refused:
            return refused
        bounds = []
        for name in ("fromDueDate", "toDueDate"):
            value = (request.arg(name) or "").strip()
            try:
                bounds.append(_parse_day(value) if value else None)
            except ValueError:
                return Response(400, {"Message": MESSAGE_INVALID,
                                      "MessageDetail": f"{name} must be formatted yyyy-MM-dd"})
        raw_status = (request.arg("paymentStatus") or "").strip()
        status = None
        if raw_status:
            # Numbers only: whether FarPay also takes names is an open question, so the sandbox
            # is strict and proves the client sends numbers. N/A (1000) cannot be filtered.
            if not raw_status.isdigit() or int(raw_status) not in FILTERABLE:
                return Response(400, {"Message": MESSAGE_INVALID,
                                      "MessageDetail": "paymentStatus must be one of 100, 200, ..., 700"})
            status = int(raw_status)
        now = self.sandbox.now()  # one reading: a late payer's state is the same in select and render
        with self.lock:  # select under the lock; render (the costly part) from a snapshot
            indices = self.select(status, bounds[0], bounds[1], now=now)
            overrides = {i: dict(changes) for i, changes in self.overrides.items()}
        return Response(200, [self._reference(self.record(i, overrides, now=now)) for i in indices])

    def get_invoice(self, request: Request, match: re.Match[str]) -> Response:
        refused = self._guard(request, match["version"])
        if refused:
            return refused
        try:
            index = self._index(match["id"])
        except KeyError:
            return Response(404, {"Message": "10004::Invoice not found"})
        with self.lock:
            return Response(200, self._detail(self.record(index)))

    # -- index arithmetic ----------------------------------------------------------------------
    @property
    def _start(self) -> date:
        return self.sandbox.anchor - timedelta(days=DUE_BACK)

    def _first_index(self, offset: int) -> int:
        """The smallest index whose due offset (days after `_start`) is >= offset."""
        return min(self.size, -(-offset * self.size // DUE_DAYS))

    def _undated(self, i: int) -> bool:
        return (i * 7919 + self.sandbox.seed) % 61 == 0

    def _range(self, start: date | None, end: date | None) -> tuple[int, int]:
        lo_off = 0 if start is None else max(0, (start - self._start).days)
        hi_off = DUE_DAYS if end is None else min(DUE_DAYS, (end - self._start).days + 1)
        if hi_off <= lo_off:
            return 0, 0
        return self._first_index(lo_off), self._first_index(hi_off)

    def select(self, status: int | None, start: date | None, end: date | None, *,
               now: datetime | None = None) -> list[int]:
        """Indices matching the filters in due order: the legacy ones (checked one by one, state
        at `now`, default the sandbox's clock), then the seeded ones (sorted, by arithmetic over
        index ranges and residues)."""
        return self._select_legacy(status, start, end, now) + self._select_seeded(status, start, end)

    def _select_legacy(self, status: int | None, start: date | None, end: date | None,
                       now: datetime | None) -> list[int]:
        found = []
        for legacy in sorted(self.legacy, key=lambda lg: (lg.due, lg.key)):
            rec = self.record(legacy.key - LEGACY_SLOTS, now=now)
            if status is not None and rec["status"] != status:
                continue
            if (start is not None or end is not None) and rec["due"] is None:
                continue
            if (start is not None and rec["due"] < start) or (end is not None and rec["due"] > end):
                continue
            found.append(rec["index"])
        return found

    def _select_seeded(self, status: int | None, start: date | None, end: date | None) -> list[int]:
        lo, hi = self._range(start, end)
        dated = start is not None or end is not None
        if status is None:
            found = [i for i in range(lo, hi) if not (dated and self._undated(i))]
        else:
            found = []
            era_bounds = (0, self._first_index(DUE_BACK - OLD), self._first_index(DUE_BACK), self.size)
            for era, a, b in zip(("old", "recent", "future"), era_bounds, era_bounds[1:]):
                a, b = max(a, lo), min(b, hi)
                if a >= b:
                    continue
                residues = _residues(era, status, self.sandbox.seed % 100)
                for block in range(a - a % 100, b, 100):
                    for r in residues:
                        i = block + r
                        if a <= i < b and not (dated and self._undated(i)):
                            found.append(i)
            found.sort()
        if self.overrides:
            members = set(found)
            for i, changes in self.overrides.items():
                if i < 0 or "PaymentStatus" not in changes or status is None:  # legacy: see _select_legacy
                    continue
                if changes["PaymentStatus"] != status:
                    members.discard(i)
                elif lo <= i < hi and not (dated and self._undated(i)):
                    members.add(i)
            found = sorted(members)
        return found

    def _index(self, external_id: Any) -> int:
        """The internal index of an invoice Id (seeded i >= 0, legacy key - LEGACY_SLOTS < 0)."""
        text = str(external_id).strip()
        if text.isdigit():
            number = int(text)
            if 0 <= number - ID_BASE < self.size:
                return number - ID_BASE
            if any(number - LEGACY_ID_BASE == legacy.key for legacy in self.legacy):
                return number - LEGACY_ID_BASE - LEGACY_SLOTS
        raise KeyError(external_id)

    def _legacy(self, i: int):
        key = i + LEGACY_SLOTS
        for legacy in self.legacy:
            if legacy.key == key:
                return legacy
        raise KeyError(i)

    # -- records -------------------------------------------------------------------------------
    def record(self, i: int, overrides: dict[int, dict[str, Any]] | None = None, *,
               now: datetime | None = None) -> dict[str, Any]:
        """Invoice i's facts: the seeded (i >= 0) or legacy (i < 0) record, a late payer's state at
        `now` (default the sandbox's clock), with its `mutate` overrides applied (they win)."""
        if i >= 0:
            rec = dict(self._record(i, self.sandbox.seed, self.size, self.sandbox.anchor))
        else:
            legacy = self._legacy(i)
            rec = dict(self._legacy_record(legacy, self.sandbox.seed))
            if legacy.kind == "late" and legacy.paid(now or self.sandbox.now()):
                rec.update(status=200, to_pay=Decimal(0),
                           paid_at=datetime.combine(legacy.paid_on, time(), timezone.utc))
        rec.update((self.overrides if overrides is None else overrides).get(i, {}))
        return rec

    @staticmethod
    @lru_cache(maxsize=4096)
    def _record(i: int, seed: int, size: int, anchor: date) -> dict[str, Any]:
        """The invoice's provider-side facts (cached; pure in its arguments)."""
        rng = random.Random(f"farpay:{seed}:{i}")
        due = anchor - timedelta(days=DUE_BACK) + timedelta(days=i * DUE_DAYS // size)
        offset = i * DUE_DAYS // size
        era = "old" if offset < DUE_BACK - OLD else "recent" if offset < DUE_BACK else "future"
        status = ERAS[era][(37 * i + 13 * seed) % 100]
        if rng.random() < 0.3:
            amount = Decimal(rng.randint(100, 25_000))
        else:
            amount = Decimal(rng.randint(10_000, 2_500_000)) / 100
        to_pay = amount
        if status == 200:
            to_pay = Decimal(0)
        elif status == 100 and rng.random() < 0.3:
            to_pay = (amount * rng.randint(10, 90) / 100).quantize(CENT)
        invoice_date = due - timedelta(days=rng.choice((8, 14, 30)))
        return _draw_rest(rng, index=i, id=ID_BASE + i, status=status, amount=amount, to_pay=to_pay,
                          due=None if (i * 7919 + seed) % 61 == 0 else due, invoice_date=invoice_date,
                          number=str(100_000 + i))

    @staticmethod
    @lru_cache(maxsize=64)
    def _legacy_record(legacy, seed: int) -> dict[str, Any]:
        """An old-debt invoice's facts before the clock (a late payer is still owed here)."""
        rng = random.Random(f"farpay:{seed}:legacy:{legacy.key}")
        if rng.random() < 0.3:
            amount = Decimal(rng.randint(100, 25_000))
        else:
            amount = Decimal(rng.randint(10_000, 2_500_000)) / 100
        to_pay, status = amount, 100
        if legacy.kind == "partial":
            to_pay = (amount * rng.randint(10, 90) / 100).quantize(CENT)  # amount >= 100: strictly inside
        elif legacy.kind == "other":
            status = rng.choice((600, 700))
        elif legacy.kind not in ("open", "late"):
            raise ValueError(f"unknown legacy kind {legacy.kind!r}")
        rec = _draw_rest(rng, index=legacy.key - LEGACY_SLOTS, id=LEGACY_ID_BASE + legacy.key, status=status,
                         amount=amount, to_pay=to_pay, due=legacy.due, invoice_date=legacy.issued,
                         number=str(90_000 + legacy.key))
        rec["credit"] = False  # old debt is owed to the merchant
        return rec

    def _reference(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The list item (an invoice reference): no payment status, SendStatus as a name."""
        ref = {
            "Id": rec["Id"],
            "Created": _stamp(rec["created"], rec["created_z"]),
            "InvoiceNumber": rec["number"],
            "PaymentDueDate": _stamp(datetime.combine(rec["due"], time(), timezone.utc), rec["due_z"])
            if rec["due"] else None,
            "InvoiceAmount": rec["amount"],
            "ToBePaidAmount": rec["to_pay"],
            "PaymentReferenceStatus": "Ok",
            "PaymentType": rec["payment_type"],
            "SendStatus": rec["send_status"],
            "ErrorDescription": rec["error"],
        }
        if rec["omit_error"]:
            del ref["ErrorDescription"]
        return ref

    def _detail(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The deep view: currency, recipient (spelled `Recepient`, as FarPay does), numeric states."""
        ref = self._reference(rec)
        day = rec["invoice_date"]
        return {
            "Send": {"SentDate": ref["Created"], "ErrorCode": None, "ErrorDescription": None, "Channel": "Email",
                     "Status": SEND_STATUS[rec["send_status"]], "ScheduleSendDate": None, "ToAddress": None,
                     "Note": None},
            "Id": rec["Id"],
            "Token": f"tok{rec['Id']:x}",
            "InvoiceTypeCode": "PCM" if rec["credit"] else "PIE",
            "InvoiceDate": day.strftime("%d-%m-%Y") if rec["dmy_date"] else f"{day.isoformat()}T00:00:00",
            "InvoiceAmount": rec["amount"],
            "TaxAmount": (rec["amount"] / 5).quantize(CENT),
            "ToBePaidAmount": rec["to_pay"],
            "Ean": None,
            "InvoiceNote": "",
            "InvoiceFooter": None,
            "InvoiceWasPaidManually": None,
            "Created": ref["Created"],
            "InvoiceNumber": rec["number"],
            "PaymentDueDate": ref["PaymentDueDate"],
            "Currency": rec["currency"],
            "Recepient": rec["recipient"],
            "Schedule": 0,
            "PaymentStatus": rec["status"],
            "SendStatus": SEND_STATUS[rec["send_status"]],
            "PaymentType": rec["payment_type"],
            "InvoiceStatus": "Ok",
            "PaymentRejectedBy": "Customer" if rec["status"] == 500 else None,
            "InvoiceLines": [{"LineNumber": 1, "ProductNumber": "1001", "Description": "Abonnement",
                              "BasePrice": rec["amount"], "Quantity": 1, "UnitCode": "stk", "DiscountRate": 0,
                              "DiscountedPrice": 0, "TaxRate": 25, "TaxAmount": (rec["amount"] / 5).quantize(CENT),
                              "Amount": rec["amount"]}],
            "TextLines": "",
            "PdfInvoice": None,
            "PdfAttachments": [],
        }

    # -- ground truth and changes --------------------------------------------------------------
    def _truth(self, rec: dict[str, Any]) -> dict[str, Any]:
        status = TRUTH[rec["status"]]
        if rec["status"] == 100 and 0 < rec["to_pay"] < rec["amount"]:
            status = "partially_paid"
        sign = -1 if rec["credit"] else 1
        day = rec["invoice_date"]
        return {
            "external_id": str(rec["Id"]),
            "status": status,
            "provider_status": str(rec["status"]),
            "currency": rec["currency"],
            "number": rec["number"] or "",
            "customer_name": (rec["recipient"] or {}).get("Name") or "",
            "customer_email": (rec["recipient"] or {}).get("Email") or "",
            "customer_ref": (rec["recipient"] or {}).get("CustomerNumber") or "",
            "amount": sign * rec["amount"],
            "outstanding": sign * rec["to_pay"],
            "paid_amount": sign * (rec["amount"] - rec["to_pay"]),
            "issued_at": datetime.combine(day, time(), timezone.utc),
            "due_at": datetime.combine(rec["due"], time(), timezone.utc) if rec["due"] else None,
            "paid_at": rec["paid_at"],
            "payment_channel": rec["payment_type"] or "",
        }

    def truth(self):
        """The legacy invoices (in due order, state at the sandbox's clock), then the seeded ones."""
        now = self.sandbox.now()
        for legacy in sorted(self.legacy, key=lambda lg: (lg.due, lg.key)):
            yield self._truth(self.record(legacy.key - LEGACY_SLOTS, now=now))
        for i in range(self.size):
            yield self._truth(self.record(i))

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply normalized changes (status, outstanding, paid_at, or a raw provider_status),
        keeping FarPay's facts consistent: paid means nothing left to pay, and so on."""
        i = self._index(external_id)
        rec = self.record(i)
        amount = rec["amount"]
        new: dict[str, Any] = {}
        if "provider_status" in changes:
            code = int(str(changes["provider_status"]))
            if code not in TRUTH:
                raise ValueError(f"unknown FarPay payment state {code}")
            new["status"] = code
        if "status" in changes:
            if changes["status"] not in FROM_NORMALIZED:
                raise ValueError(f"FarPay has no payment state for {changes['status']!r}")
            new["status"] = FROM_NORMALIZED[changes["status"]]
        if "outstanding" in changes:
            try:
                new["to_pay"] = abs(Decimal(str(changes["outstanding"])))
            except ArithmeticError:  # decimal.InvalidOperation
                raise ValueError("outstanding must be a number") from None
            if not 0 <= new["to_pay"] <= amount:
                raise ValueError("outstanding must lie between 0 and the invoice amount")
        status = new.get("status", rec["status"])
        to_pay = new.get("to_pay")
        if "status" in new:
            if status == 200:
                to_pay = Decimal(0)
            elif to_pay is None:  # reopened, failed, charged back...: owed in full again
                to_pay = (amount / 2).quantize(CENT) if changes.get("status") == "partially_paid" else amount
        elif to_pay == 0:
            status = 200
        elif to_pay is not None and status == 200:
            status = 100  # money owed again on a paid invoice: it is not paid any more
        if to_pay is not None:
            new["to_pay"] = to_pay
        new["status"] = status
        if "paid_at" in changes:
            new["paid_at"] = _aware(changes["paid_at"])
        elif status == 200 and rec["status"] != 200:
            new["paid_at"] = self.sandbox.now().replace(microsecond=0)
        if status != 200:
            new.setdefault("paid_at", None)
        override = self.overrides.setdefault(i, {})
        override.update(new)
        override["PaymentStatus"] = override["status"]  # what `select` consults
        return _jsonable(self._truth(self.record(i)))

    # -- webhooks (for the webhook receiver's tests) -------------------------------------------
    def payment_webhook(self, external_id: str, event: str = "Succeeded", *, msg_id: str = "whmsg_1",
                        timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and JSON body of a signed payment webhook for one invoice (PaymentWebhook.md)."""
        rec = self.record(self._index(external_id))
        payment_type = rec["payment_type"] or "FI"
        body = json.dumps({"Payment": {
            "Event": event, "InvoiceNumber": rec["number"],
            "CustomerNumber": (rec["recipient"] or {}).get("CustomerNumber"),
            "PaymentDueDate": rec["due"].isoformat() if rec["due"] else None, "Currency": rec["currency"],
            "InvoiceAmount": str(rec["amount"]), "Amount": str(rec["amount"]),
            "PaymentType": WEBHOOK_TYPES.get(payment_type, payment_type),
        }}, ensure_ascii=False).encode()
        stamp = str(timestamp if timestamp is not None else int(datetime.now(timezone.utc).timestamp()))
        headers = {"webhook-id": msg_id, "webhook-timestamp": stamp,
                   "webhook-signature": sign_webhook(self.credentials["webhook_secret"], msg_id, stamp, body),
                   "Content-Type": "application/json"}
        return headers, body

    # -- POST /_sandbox/notify ---------------------------------------------------------------------
    DEFAULT_EVENT = "Succeeded"
    PREVIOUS_EVENT = "Failed"
    EVENT_CHANGES = {"Succeeded": {"status": "paid"}, "Failed": {"status": "failed"},
                     "ReimbursedByBank": {"status": "charged_back"}}

    def notification(self, external_id: str, *, event: str = "Succeeded", older: bool = False,
                     bad_signature: bool = False) -> tuple[dict[str, str], bytes]:
        """A signed payment webhook with a fresh webhook-id (`older`: stamped a minute earlier);
        `bad_signature` signs another body, as a tampered delivery would look."""
        stamp = int(datetime.now(timezone.utc).timestamp()) - (60 if older else 0)
        headers, body = self.payment_webhook(external_id, event, msg_id=f"msg_{uuid.uuid4().hex}", timestamp=stamp)
        if bad_signature:
            headers["webhook-signature"] = sign_webhook(self.credentials["webhook_secret"], headers["webhook-id"],
                                                        headers["webhook-timestamp"], body + b" ")
        return headers, body


def _draw_rest(rng: random.Random, *, index: int, id: int, status: int, amount: Decimal, to_pay: Decimal,
               due: date | None, invoice_date: date, number: str) -> dict[str, Any]:
    """The draws a seeded and a legacy invoice share, after amount and to_pay (order matters: it
    keeps the seeded population what it always was)."""
    created = datetime.combine(invoice_date, time(rng.randint(6, 17), rng.randint(0, 59),
                                                  rng.randint(0, 59), rng.randint(0, 999) * 1000),
                               tzinfo=timezone.utc)
    recipient = None
    if rng.random() >= 0.05:
        customer = 1000 + rng.randint(0, 4999)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        recipient = {"CustomerNumber": str(customer), "Name": name,
                     "Email": None if rng.random() < 0.1 else f"c{customer}@kunde.dk",
                     "Street": None, "PostCode": None, "PoBox": None, "City": None, "Country": "DK"}
    currency = rng.random()
    return {
        "index": index,
        "Id": id,
        "status": status,
        "amount": amount,
        "to_pay": to_pay,
        "due": due,
        "due_z": rng.random() < 0.2,  # most samples lack the Z
        "invoice_date": invoice_date,
        "dmy_date": rng.random() < 0.05,  # the old "23-06-2017" sample
        "created": created,
        "created_z": rng.random() >= 0.1,
        "number": None if rng.random() < 0.05 else number,
        "credit": rng.random() < 0.03,
        "currency": "DKK" if currency < 0.85 else "EUR" if currency < 0.95 else "NOK",
        "recipient": recipient,
        "payment_type": None if rng.random() < 0.1 else rng.choice(PAYMENT_TYPES),
        "send_status": rng.choice(("Sent", "Sent", "Sent", "Queue", "ReadyToPrint", "EmailBounced")),
        "error": "Insufficient funds" if status == 700 else "",
        "omit_error": rng.random() < 0.1,  # an optional field left out
        "paid_at": None,
    }


@lru_cache(maxsize=64)
def _residues(era: str, status: int, seed_mod: int) -> tuple[int, ...]:
    """Residues i % 100 with ERAS[era][(37 i + 13 seed) % 100] == status (73 = 37^-1 mod 100)."""
    slots = [k for k, s in enumerate(ERAS[era]) if s == status]
    return tuple(sorted(((k - 13 * seed_mod) * 73) % 100 for k in slots))


def _parse_day(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(text)
    return date.fromisoformat(text)


def _stamp(moment: datetime, zulu: bool) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + ("Z" if zulu else "")


def _aware(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _jsonable(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, datetime) else v)
            for k, v in truth.items()}

