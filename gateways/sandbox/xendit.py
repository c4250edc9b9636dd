"""Xendit's invoice API for the sandbox, both through Appgregator and direct.

Served below the `/xendit` prefix:
- `GET /xendit/invoices/` (Appgregator list: `x-api-key`, `name`, `connection_name` required),
- `GET /xendit/find/{id}` (Appgregator lookup: an array, with Appgregator's extra fields),
- `GET /v2/invoices` and `GET /v2/invoices/{id}` (direct: HTTP Basic, secret key as user name).
Both modes serve the same population.

Population: invoice `i` is a pure function of (seed, size, anchor, i) plus the mutation overrides.
Index 0 is the newest; `created` strictly decreases with `i` over ~18 months before the anchor, so
the list order (created desc) is index order, a `created_*` pair is an index range found by binary
search, and the invoice id (`<created secs><seed tag><index>` in hex, ObjectId-like) decodes to its
index in O(1) for the cursor. `paid_at` and `expiry_date` lie at most MAX_DELAY after `created`, so a
`paid_*` or `expired_*` pair is also bounded to an index range (plus the few mutated invoices).

Mix: ~40% SETTLED, PAID (recent payments), EXPIRED, PENDING not yet due, and a few PENDING whose
expiry already passed (Xendit's expiry job lags; the dashboard shows them overdue). IDR mostly
(whole rupiah), some PHP and USD with cents. Customer object, payer_email only, or neither.

Old debt: beyond the `size` seeded invoices (whatever the size, 0 included) come the six invoices of
`core.legacy_plan(anchor)` (none when the Sandbox is built with `legacy=False`), 2 to 5 years old, so
older than every seeded one: they take the list positions `size .. size+5` (created desc) and come
last in the list, after the seeded ones. Each is created at LEGACY_TIME_MS (+ its key in minutes) of
its issue day (UTC) and expires at the same time of its due day; external_id continues the seeded
numbering downwards (INV0001000 ... INV0000995). Its id is `<created secs><seed tag>ffffffffff<key>`
in hex: no seeded index reaches that marker, so it never collides with a seeded id, whatever the size.
By kind: "open" -> PENDING (overdue for years); "partial" -> EXPIRED (Xendit has no partial payment:
an expired invoice is still owed, shown apart); "other" -> EXPIRED; "late" -> PENDING until the
sandbox's clock (`Sandbox.now()`) reaches its `paid_on`, then PAID at 00:00 UTC that day in full
(`updated` = that moment). Every stamp is fixed, so an unchanged record reads the same on a resync.
They answer every list filter, the cursor, the lookups, `mutate` (overrides win over the clock),
`truth` and the notifications exactly like seeded invoices; a list pays for them only six checks.
"""
from __future__ import annotations

import base64
import functools
import heapq
import itertools
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

from .. import status as st
from .core import OPTIONS, Legacy, ProviderSandbox, Request, Response, dumps
from .people import person_for

DAY_MS = 86_400_000
SPAN_MS = 540 * DAY_MS  # the population's created dates: ~18 months before the anchor
MAX_DELAY_MS = 60 * DAY_MS  # paid_at and expiry_date are at most this long after created
EXPIRY_DAYS = (1, 3, 7, 14, 30, 60)
MASK64 = (1 << 64) - 1
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
STATUSES = ("PENDING", "PAID", "SETTLED", "EXPIRED")
NORMALIZED = {"PENDING": st.OPEN, "PAID": st.PAID, "SETTLED": st.PAID, "EXPIRED": st.EXPIRED}
FILTER_PAIRS = ("created", "paid", "expired")
#: The old debt: provider status by `Legacy.kind` (a "late" payer turns PAID once the clock reaches `paid_on`).
LEGACY_STATUS = {"open": "PENDING", "late": "PENDING", "partial": "EXPIRED", "other": "EXPIRED"}
#: A legacy invoice's id ends with LEGACY_MARK + its key (12 hex digits): beyond every seeded index.
LEGACY_MARK = 0xFFFF_FFFF_FF00
#: A legacy invoice's draws (amount, customer, channel) use LEGACY_DRAW + its key: size-independent.
LEGACY_DRAW = 1 << 48
#: A legacy invoice is created this long after 00:00 UTC of its issue day (+ its key in minutes),
#: and expires at the same time of its due day.
LEGACY_TIME_MS = 3 * 3_600_000 + 17_123

CHANNELS = (  # (payment_method, payment_channel, extra fields)
    ("BANK_TRANSFER", "MANDIRI", {"bank_code": "MANDIRI"}),
    ("BANK_TRANSFER", "BCA", {"bank_code": "BCA"}),
    ("BANK_TRANSFER", "BNI", {"bank_code": "BNI"}),
    ("EWALLET", "OVO", {"ewallet_type": "OVO"}),
    ("RETAIL_OUTLET", "ALFAMART", {"retail_outlet_name": "ALFAMART"}),
    ("CREDIT_CARD", "CREDIT_CARD", {}),
    ("QR_CODE", "QRIS", {}),
)

INVALID_KEY = {"error_code": "INVALID_API_KEY", "message": "API key is not authorized for this API service"}


def to_ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


def fmt(ms: int | None) -> str | None:
    """Xendit's timestamp format: UTC with milliseconds and Z."""
    if ms is None:
        return None
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


@functools.lru_cache(maxsize=8)
def day_ms(anchor: date) -> int:
    return to_ms(datetime(anchor.year, anchor.month, anchor.day, tzinfo=timezone.utc))


def parse_iso(text: str) -> int:
    """ISO-8601 -> epoch ms (naive = UTC); ValueError when it is not a date/time."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return to_ms(moment)


def validation_error(message: str) -> Response:
    return Response(400, {"error_code": "API_VALIDATION_ERROR", "message": message})


class LegacyRow(NamedTuple):
    """One old-debt invoice's fixed facts (its state comes from `Sandbox._legacy_facts`)."""

    legacy: Legacy
    created: int
    expiry: int
    id: str


class LegacyBook(NamedTuple):
    rows: tuple[LegacyRow, ...]  # list order: created desc
    positions: dict[str, int]  # id -> position among the rows


@functools.lru_cache(maxsize=16)
def legacy_book(plan: tuple[Legacy, ...], seed_tag: int) -> LegacyBook:
    rows = []
    for legacy in plan:
        offset = LEGACY_TIME_MS + legacy.key * 60_000
        created = day_ms(legacy.issued) + offset
        rows.append(LegacyRow(legacy, created, day_ms(legacy.due) + offset,
                              f"{created // 1000:08x}{seed_tag:04x}{LEGACY_MARK + legacy.key:012x}"))
    rows.sort(key=lambda row: -row.created)
    return LegacyBook(tuple(rows), {row.id: p for p, row in enumerate(rows)})


class Sandbox(ProviderSandbox):
    name = "xendit"

    def reset(self) -> None:
        #: index (legacy: size + position) -> raw overrides ("status", "paid_ms", "paid_amount",
        #: "expiry_ms", "updated_ms")
        self.overrides: dict[int, dict[str, Any]] = {}
        self._last_stamp = 0

    def routes(self):
        return [
            ("GET", r"/xendit/invoices/?", self.appgregator_list),
            ("GET", r"/xendit/find/(?P<id>[^/]+)", self.appgregator_find),
            ("GET", r"/v2/invoices/?", self.direct_list),
            ("GET", r"/v2/invoices/(?P<id>[^/]+)", self.direct_get),
        ]

    def auth_failure(self) -> Response:
        return Response(401, dict(INVALID_KEY))

    # -- geometry (pure functions of seed, size, anchor, i) ---------------------------------
    @property
    def anchor_ms(self) -> int:
        return day_ms(self.sandbox.anchor)

    @property
    def step_ms(self) -> int:
        return max(2, SPAN_MS // max(1, self.size))

    def _legacy(self) -> LegacyBook:
        return legacy_book(self.legacy, self.sandbox.seed & 0xFFFF)

    def _legacy_row(self, i: int) -> LegacyRow:
        """The old-debt invoice at list position `i` (>= size)."""
        return self._legacy().rows[i - self.size]

    def _draw(self, i: int) -> int:
        """The index the random draws of invoice `i` use (legacy ones: their own, size-independent)."""
        return i if i < self.size else LEGACY_DRAW + self._legacy_row(i).legacy.key

    def _u(self, i: int, k: int) -> float:
        """A uniform [0, 1) draw for (seed, i, k): splitmix64, cheaper than a Random per invoice."""
        x = (self.sandbox.seed * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9 + k * 0x94D049BB133111EB) & MASK64
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & MASK64
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & MASK64
        x ^= x >> 31
        return x / 2.0 ** 64

    def _created(self, i: int) -> int:
        step = self.step_ms
        return self.anchor_ms - 3_600_000 - i * step - int(self._u(i, 1) * (step - 1))

    def _id(self, i: int, created: int | None = None) -> str:
        if i >= self.size:
            return self._legacy_row(i).id
        created = self._created(i) if created is None else created
        return f"{created // 1000:08x}{self.sandbox.seed & 0xFFFF:04x}{i:012x}"

    def _index(self, invoice_id: str) -> int | None:
        """Id -> index in O(1); None when it is not one of ours."""
        if not re.fullmatch(r"[0-9a-f]{24}", invoice_id or ""):
            return None
        position = self._legacy().positions.get(invoice_id)
        if position is not None:
            return self.size + position
        i = int(invoice_id[12:], 16)
        if i >= self.size or self._id(i) != invoice_id:
            return None
        return i

    def _base_facts(self, i: int) -> tuple[int, int, str, int | None]:
        """(created, expiry, status, paid_at) before mutations: what the filters need, cheaply."""
        anchor, step = self.anchor_ms, self.step_ms
        created = anchor - 3_600_000 - i * step - int(self._u(i, 1) * (step - 1))  # = self._created(i)
        expiry = created + EXPIRY_DAYS[int(self._u(i, 2) * len(EXPIRY_DAYS))] * DAY_MS
        r = self._u(i, 3)
        if expiry > anchor:  # still payable at the anchor
            status = "PENDING" if r < 0.55 else "PAID"
        elif r < 0.06:
            status = "PENDING"  # expiry passed, not yet expired: overdue
        elif r < 0.30:
            status = "EXPIRED"
        else:
            status = "PAID"
        paid = None
        if status == "PAID":
            latest = min(expiry, anchor) - 60_000
            paid = created + 60_000 + int(self._u(i, 4) * (latest - created - 60_000))
            if anchor - paid > 2 * DAY_MS and self._u(i, 11) < 0.9:
                status = "SETTLED"
        return created, expiry, status, paid

    def _legacy_facts(self, i: int) -> tuple[int, int, str, int | None]:
        """A legacy invoice's (created, expiry, status, paid_at) before mutations, at the sandbox's clock."""
        row = self._legacy_row(i)
        legacy = row.legacy
        if legacy.kind == "late" and legacy.paid(self.sandbox.now()):
            return row.created, row.expiry, "PAID", day_ms(legacy.paid_on)
        return row.created, row.expiry, LEGACY_STATUS.get(legacy.kind, "EXPIRED"), None

    def _facts(self, i: int) -> tuple[int, int, str, int | None]:
        created, expiry, status, paid = self._legacy_facts(i) if i >= self.size else self._base_facts(i)
        ov = self.overrides.get(i)
        if ov:
            status = ov.get("status", status)
            expiry = ov.get("expiry_ms", expiry)
            paid = ov["paid_ms"] if "paid_ms" in ov else paid
        return created, expiry, status, paid

    def _number(self, i: int) -> str:
        """The merchant's own invoice number (Xendit's `external_id`), non-unique by design."""
        if i >= self.size:  # the old debt continues the numbering downwards: 1000, 999, ...
            j, created = i, self._legacy_row(i).created
        else:
            j = i + 1 if self._u(i, 5) < 0.01 and i + 1 < self.size else i  # ~1% reuse the previous one
            created = self._created(j)
        moment = EPOCH + timedelta(milliseconds=created)
        return f"INV{self.size - j + 1000:07d}/{ROMAN[moment.month - 1]}/{moment.year}"

    def _amount(self, i: int) -> tuple[str, Decimal]:
        i = self._draw(i)
        r = self._u(i, 6)
        if r < 0.90:
            return "IDR", Decimal(500 * (100 + int(self._u(i, 7) * 99_900)))
        if r < 0.96:
            return "PHP", Decimal(10_000 + int(self._u(i, 7) * 5_000_000)) / 100
        return "USD", Decimal(500 + int(self._u(i, 7) * 500_000)) / 100

    def _channel(self, i: int) -> tuple[str, str, dict[str, str]]:
        return CHANNELS[int(self._u(self._draw(i), 9) * len(CHANNELS))]

    def _paid_amount(self, i: int, amount: Decimal) -> Decimal:
        ov = self.overrides.get(i)
        return ov.get("paid_amount", amount) if ov else amount

    def _updated(self, i: int, facts: tuple[int, int, str, int | None]) -> int:
        ov = self.overrides.get(i)
        if ov and "updated_ms" in ov:
            return ov["updated_ms"]
        created, expiry, status, paid = facts
        if status == "SETTLED" and paid is not None:
            return max(paid, min(paid + DAY_MS, self.anchor_ms - 1000))
        if status == "PAID" and paid is not None:
            return paid + (300 if i < self.size else 0)  # a late payer: the moment of its payment
        if status == "EXPIRED":
            return expiry + 500
        return created + 350

    # -- the invoice as the API shows it ----------------------------------------------------
    def invoice(self, i: int, facts: tuple[int, int, str, int | None] | None = None) -> dict[str, Any]:
        facts = facts or self._facts(i)
        created, expiry, status, paid = facts
        invoice_id = self._id(i, created)
        currency, amount = self._amount(i)
        number = self._number(i)
        body: dict[str, Any] = {
            "id": invoice_id,
            "external_id": number,
            "user_id": "6279ce4495d10c9afc3171b8",
            "status": status,
            "merchant_name": "arbook sandbox",
            "merchant_profile_picture_url": "https://du8nwjtfkinx.cloudfront.net/xendit.png",
            "amount": amount,
            "description": f"Invoice {number}",
            "expiry_date": fmt(expiry),
            "invoice_url": f"https://checkout-staging.xendit.co/web/{invoice_id}",
            "should_send_email": False,
            "created": fmt(created),
            "updated": fmt(self._updated(i, facts)),
            "currency": currency,
        }
        d = self._draw(i)
        r = self._u(d, 8)
        payer = person_for("xendit", self._u(d, 15), self.size, self.sandbox.seed)
        email = payer.email
        if r < 0.5:
            customer: dict[str, Any] = {"given_names": payer.given, "email": email}
            if self._u(d, 13) < 0.8:  # surname is optional in Xendit's customer object
                customer["surname"] = payer.surname
            if self._u(d, 16) < 0.7:  # so is the mobile number, written the local way
                customer["mobile_number"] = payer.mobile_local()
            body["customer"] = customer
        elif r < 0.8:
            body["payer_email"] = email
        if status in ("PAID", "SETTLED"):
            method, channel, extra = self._channel(i)
            body.update({"payment_method": method, "paid_amount": self._paid_amount(i, amount),
                         "paid_at": fmt(paid), "initial_amount": amount, **extra})
            if self._u(d, 10) >= 0.1:  # some older payloads carry only bank_code/payment_method
                body["payment_channel"] = channel
        elif status == "PENDING":
            body["available_banks"] = [
                {"bank_code": code, "collection_type": "POOL", "transfer_amount": amount,
                 "bank_branch": "Virtual Account", "account_holder_name": "ARBOOK SANDBOX", "identity_amount": 0}
                for code in ("MANDIRI", "BCA")]
        return body

    def _truth(self, i: int) -> dict[str, Any]:
        facts = self._facts(i)
        created, expiry, status, paid = facts
        body = self.invoice(i)
        currency, amount = self._amount(i)
        normalized = NORMALIZED[status]
        customer = body.get("customer") or {}
        return {
            "external_id": body["id"],
            "number": body["external_id"],
            "status": normalized,
            "provider_status": status,
            "currency": currency,
            "amount": amount,
            "outstanding": Decimal(0) if normalized == st.PAID else amount,
            "paid_amount": self._paid_amount(i, amount) if normalized == st.PAID else Decimal(0),
            "issued_at": EPOCH + timedelta(milliseconds=created),
            "due_at": EPOCH + timedelta(milliseconds=expiry),
            "paid_at": EPOCH + timedelta(milliseconds=paid) if paid is not None else None,
            "provider_updated_at": EPOCH + timedelta(milliseconds=self._updated(i, facts)),
            "customer_name": " ".join(x for x in (customer.get("given_names"), customer.get("surname")) if x),
            "customer_email": customer.get("email") or body.get("payer_email") or "",
            "customer_phone": customer.get("mobile_number") or "",
            "payment_channel": body.get("payment_channel") or body.get("bank_code") or body.get("ewallet_type")
            or body.get("retail_outlet_name") or body.get("payment_method") or "",
            "checkout_url": body["invoice_url"],
        }

    def truth(self) -> Iterator[dict[str, Any]]:
        """Seeded invoices, then the old debt (list order), as they stand at the sandbox's clock."""
        for i in range(self.size + len(self._legacy().rows)):
            yield self._truth(i)

    # -- changes -----------------------------------------------------------------------------
    def _stamp(self) -> int:
        """The moment of a change: now, but never before the population nor before the last change."""
        now = to_ms(self.sandbox.now())
        self._last_stamp = max(now, self.anchor_ms, self._last_stamp + 1)
        return self._last_stamp

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply normalized changes (status open/paid/expired, outstanding, paid_at, paid_amount,
        provider_status PAID/SETTLED) to invoice `external_id` (the Xendit id).

        Xendit invoices are paid in full, so `outstanding` must be 0 (paid) or the amount (unpaid).
        """
        i = self._index(str(external_id))
        if i is None:
            raise KeyError(external_id)
        allowed = {"status", "outstanding", "paid_at", "paid_amount", "provider_status"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"xendit sandbox cannot change {', '.join(sorted(unknown))}")
        with self.lock:
            _created, _expiry, current, paid = self._facts(i)
            _, amount = self._amount(i)
            target = changes.get("status")
            provider_status = str(changes.get("provider_status") or "").upper() or None
            if provider_status and provider_status not in STATUSES:
                raise ValueError(f"unknown Xendit status {provider_status!r}")
            outstanding = Decimal(str(changes["outstanding"])) if changes.get("outstanding") is not None else None
            if target is None and provider_status:
                target = NORMALIZED[provider_status]
            if target is None and outstanding is not None:
                target = st.PAID if outstanding == 0 else st.OPEN if outstanding == amount else None
                if target is None:
                    raise ValueError("Xendit invoices are paid in full: outstanding must be 0 or the amount")
            if target is None and changes.get("paid_at"):
                target = st.PAID
            if target not in (st.OPEN, st.PAID, st.EXPIRED):
                raise ValueError(f"Xendit invoices cannot be {target!r}")
            if outstanding is not None and outstanding != (Decimal(0) if target == st.PAID else amount):
                raise ValueError(f"outstanding {outstanding} does not fit status {target}")
            stamp = self._stamp()
            ov = self.overrides.setdefault(i, {})
            if target == st.PAID:
                ps = provider_status if provider_status in ("PAID", "SETTLED") else "PAID"
                paid_at = changes.get("paid_at")
                if isinstance(paid_at, datetime):
                    paid_ms = to_ms(paid_at if paid_at.tzinfo else paid_at.replace(tzinfo=timezone.utc))
                elif paid_at:
                    paid_ms = parse_iso(str(paid_at))
                else:
                    paid_ms = paid if (current in ("PAID", "SETTLED") and paid is not None) else stamp
                ov.update(status=ps, paid_ms=paid_ms)
                if changes.get("paid_amount") is not None:
                    ov["paid_amount"] = Decimal(str(changes["paid_amount"]))
            elif target == st.OPEN:
                ov.update(status="PENDING", paid_ms=None)
                ov.pop("paid_amount", None)
            else:
                # Xendit's expire! sets expiry_date to the moment of expiry. An overdue PENDING (its
                # expiry job lagged) also expires now, so an expired_* pair finds the change.
                ov.update(status="EXPIRED", paid_ms=None, expiry_ms=stamp)
                ov.pop("paid_amount", None)
            ov["updated_ms"] = stamp
            return self._truth(i)

    # -- auth --------------------------------------------------------------------------------
    def _appgregator_check(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.credentials["api_key"]:
            return self.auth_failure()
        name, connection = request.arg("name"), request.arg("connection_name")
        if not name or not connection:
            return Response(400, {"message": "name and connection_name are required query parameters"})
        if name != OPTIONS["xendit"]["name"] or connection != OPTIONS["xendit"]["connection_name"]:
            return Response(404, {"message": f"connection {connection!r} not found in project {name!r}"})
        return None

    def _basic_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, _password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except ValueError:
            return False
        return user == self.credentials["secret_key"]

    # -- handlers ----------------------------------------------------------------------------
    def appgregator_list(self, request: Request, match: re.Match) -> Response:
        return self._appgregator_check(request) or self._list(request)

    def appgregator_find(self, request: Request, match: re.Match) -> Response:
        failure = self._appgregator_check(request)
        if failure:
            return failure
        i = self._index(match["id"])
        if i is None:
            return Response(200, [])
        with self.lock:
            stored = self.invoice(i)
        stored.update({"project_name": request.arg("name"), "connection_name": request.arg("connection_name"),
                       "callback_url": "https://arbook.example/hooks/xendit",
                       "callback_token": self.credentials["callback_token"], "send_callback": True})
        return Response(200, [stored])

    def direct_list(self, request: Request, match: re.Match) -> Response:
        if not self._basic_ok(request):
            return self.auth_failure()
        return self._list(request)

    def direct_get(self, request: Request, match: re.Match) -> Response:
        if not self._basic_ok(request):
            return self.auth_failure()
        i = self._index(match["id"])
        if i is None:
            return Response(404, {"error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Invoice not found"})
        with self.lock:
            return Response(200, self.invoice(i))

    # -- the list ----------------------------------------------------------------------------
    def _list(self, request: Request) -> Response:
        try:
            limit = int(request.arg("limit", "10"))
        except ValueError:
            return validation_error("limit must be a number")
        if not 1 <= limit <= 100:
            return validation_error("limit must be between 1 and 100")
        pairs: dict[str, tuple[int, int]] = {}
        for field in FILTER_PAIRS:
            after, before = request.arg(f"{field}_after"), request.arg(f"{field}_before")
            if after and before:  # a lone bound is ignored, as Xendit documents
                try:
                    pairs[field] = (parse_iso(after), parse_iso(before))
                except ValueError:
                    return validation_error(f"{field}_after/{field}_before must be ISO 8601 dates")
        statuses: set[str] = set()
        # Docs: statuses=["SETTLED","EXPIRED"] (JSON text); SDK: statuses=PAID&statuses=SETTLED. Both.
        for value in request.query.get("statuses", []) + request.query.get("statuses[]", []):
            try:
                values = json.loads(value) if value.strip().startswith("[") else value.split(",")
            except ValueError:
                return validation_error("statuses must be an array of strings")
            for item in values:
                if str(item).strip() not in STATUSES:
                    return validation_error(f"statuses must be among {', '.join(STATUSES)}")
                statuses.add(str(item).strip())
        # Docs name the cursor last_invoice_id; the generated SDK sends last_invoice. Accept both.
        cursor = request.arg("last_invoice_id") or request.arg("last_invoice")
        start = 0
        if cursor:
            index = self._index(cursor)
            if index is None:
                return validation_error("last_invoice_id is not a known invoice id")
            start = index + 1
        external_id = request.arg("external_id")

        with self.lock:
            candidates = self._candidates(start, pairs, external_id)
            found: list[tuple[int, tuple[int, int, str, int | None]]] = []
            for i in candidates:
                facts = self._facts(i)
                if self._matches(i, facts, pairs, statuses, external_id):
                    found.append((i, facts))
                    if len(found) >= limit:
                        break
            return Response(200, [self.invoice(i, facts) for i, facts in found])

    def _first_below(self, moment: int) -> int:
        """The first index whose `created` is below `moment` (created decreases with the index)."""
        lo, hi = 0, self.size
        while lo < hi:
            mid = (lo + hi) // 2
            if self._created(mid) < moment:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _candidates(self, start: int, pairs: dict[str, tuple[int, int]], external_id: str | None) -> Iterator[int]:
        """Indices from `start` that may match, in list order: an index range plus mutated ones,
        then the old debt (positions size .. size+5, checked one by one: they are six)."""
        size = self.size
        end = size + len(self._legacy().rows)
        if external_id:
            found = re.fullmatch(r"INV(\d{7})/[IVX]+/\d{4}", external_id)
            if not found:
                return iter(())
            i0 = size + 1000 - int(found[1])
            return iter(sorted(i for i in {i0 - 1, i0} if start <= i < end))
        lo, hi = start, size
        for field, (after, before) in pairs.items():
            # created < before and created > after (minus the delay for paid/expiry dates)
            slack = 0 if field == "created" else MAX_DELAY_MS
            lo = max(lo, self._first_below(before))
            hi = min(hi, self._first_below(after - slack + 1))
        extra = sorted(i for i in self.overrides if start <= i < size and not lo <= i < hi)
        return itertools.chain(heapq.merge(range(lo, max(lo, hi)), extra), range(max(start, size), end))

    def _matches(self, i: int, facts: tuple[int, int, str, int | None], pairs: dict[str, tuple[int, int]],
                 statuses: set[str], external_id: str | None) -> bool:
        created, expiry, status, paid = facts
        values = {"created": created, "paid": paid, "expired": expiry}
        for field, (after, before) in pairs.items():
            value = values[field]
            if value is None or not after < value < before:
                return False
        if statuses and status not in statuses:
            return False
        if external_id and self._number(i) != external_id:
            return False
        return True

    # -- invoice callback (POST /_sandbox/notify) --------------------------------------------
    DEFAULT_EVENT = "PAID"
    PREVIOUS_EVENT = "PENDING"
    EVENT_CHANGES = {"PAID": {"provider_status": "PAID"}, "SETTLED": {"provider_status": "SETTLED"},
                     "EXPIRED": {"status": st.EXPIRED}, "PENDING": {"status": st.OPEN}}
    PAID_FIELDS = ("paid_at", "paid_amount", "payment_method", "payment_channel", "bank_code", "ewallet_type",
                   "retail_outlet_name", "initial_amount")

    def callback(self, external_id: str, *, event: str = "PAID", older: bool = False,
                 bad_signature: bool = False) -> tuple[dict[str, str], bytes]:
        """Xendit's invoice callback: the invoice object as it stands (`older`: in the `event`
        state one minute before its last update), with the dashboard's x-callback-token."""
        i = self._index(str(external_id))
        if i is None:
            raise KeyError(external_id)
        with self.lock:
            body = self.invoice(i)
        body.pop("available_banks", None)
        body["status"] = event
        if older:
            body["updated"] = fmt(parse_iso(body["updated"]) - 60_000)
            if event not in ("PAID", "SETTLED"):
                for name in self.PAID_FIELDS:
                    body.pop(name, None)
        token = self.credentials["callback_token"] + ("-forged" if bad_signature else "")
        return {"x-callback-token": token, "Content-Type": "application/json"}, dumps(body)

    def notification(self, external_id: str, *, event: str, older: bool = False,
                     bad_signature: bool = False) -> tuple[dict[str, str], bytes]:
        return self.callback(external_id, event=event, older=older, bad_signature=bad_signature)

