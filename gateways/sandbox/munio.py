"""Munio in the sandbox: token endpoint, invoice list/detail, status update (munio-invoices.txt).

What it checks, like the real API is documented to (or, where undocumented, as a Laravel API does):
- every invoice call needs the sandbox's `Client-Key` and `Authorization: Bearer <token>`, where the
  token is one issued by `POST /auth/access_token` or the static `access_token` of CREDENTIALS;
  anything else is Laravel's `401 {"message": "Unauthenticated."}`.
- `POST /auth/access_token` (JSON or form body) wants `login`, `password`, `grant_type=password`:
  a missing field is a Laravel-style 422, a wrong login or Client-Key a 401.
- `GET /invoices`: `page` (default 1), `per_page` (default 15 like Laravel, capped at 100),
  `orderBy` (`created_at` default, or `id`), `order` (`DESC` default, or `ASC`), `type`
  (`events`/`store`/`campaigns`); an invalid value is a 422. Fractal's `meta.pagination`, whose
  `links.next`/`links.previous` are full URLs with `?page=N`.
- `GET /invoices/{hash}` answers `{"data": {...}}`; `PUT /invoices/status/{hash}` takes
  `status=expired` (the only documented value) and expires a pending invoice.

The population is a pure function of (seed, index) plus the changes made through `mutate()` or the
status endpoint: invoice `i` is created at a time that increases with `i` (denser towards the
anchor, like a growing business), so both sort orders are index arithmetic. The invoice hash ends in
the index xor a seed-derived key (32-bit two's complement), so a hash finds its invoice without a
lookup table.
`revoke_tokens()` invalidates every token issued so far and the static one (until `reset()`), so
tests can drive the client's renew-once path.

Old debt (`ProviderSandbox.legacy`, see `core.legacy_plan`; absent with `Sandbox(legacy=False)`):
six more invoices beyond the `size` seeded ones, whatever `size` is (also 0). Legacy key k has the
internal index `k - LEGACY_SLOTS` (negative, so its hash's last 8 hex digits xor the key read
0xfffffc18 + k: recognisable, and never a seeded hash) and the id `3 * size + 1 + k`, above every
seeded id (at most `3 * size`), as if imported after the seeded ones were created. It is created
on `legacy.issued` (a time of day drawn from its digest) and due `legacy.due` at that time; every
legacy invoice is older than every seeded one (issued >= 736 days before the anchor, the seeded
ones <= 720), so newest first (`orderBy=created_at`, the default `DESC`) they come after all the
seeded ones, oldest last, and `ASC` puts them first; by `orderBy=id` (auto-increment order) they
come after the seeded ones in `ASC`. Legacy invoices are memberships or plain transactions (`type`
null, so a `type` filter never lists them). Munio has no partial state, so the state follows the
kind: "open" pending, "partial" expired (owed in full; Munio's checkout link lapsed), "other"
expired, "late" pending until the sandbox's clock (`Sandbox.now()`) reaches `legacy.paid_on`, then
paid with `paid_at` = midnight UTC of `paid_on`. The rest is drawn like a seeded invoice from its
digest. The list endpoint handles the six apart from the seeded index arithmetic (cheap at any
size); the detail and status endpoints, `mutate` (whose overrides win over the clock) and `truth`
(seeded ones first, then the legacy ones oldest first) treat them like any other invoice.
"""
from __future__ import annotations

import hashlib
import math
import random
import uuid
from array import array
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from .. import status as st
from .core import Legacy, ProviderSandbox, Request, Response
from .people import person_for

SPAN_DAYS = 720  # the oldest invoice is this many days before the anchor (inside the 24-month window)
LEGACY_SLOTS = 1000  # legacy key k has the internal index k - LEGACY_SLOTS (< 0: older than every seeded one)
#: Legacy kind -> Munio status (Munio has no partial state: a partly paid invoice is owed in full).
LEGACY_STATUS = {"open": "pending", "partial": "expired", "other": "expired", "late": "pending"}
PER_PAGE_DEFAULT = 15  # Laravel's default page size
PER_PAGE_MAX = 100
TOKEN_TTL = 3600

#: Munio's documented statuses and their normalized meaning (the sandbox's own ground truth).
NORMALIZED = {"pending": st.OPEN, "paid": st.PAID, "expired": st.EXPIRED}
PROVIDER_STATUS = {st.OPEN: "pending", st.PAID: "paid", st.EXPIRED: "expired"}

#: (type, cumulative percentage): the list's `type` values, null for subscriptions/transactions.
TYPES = (("events", 35), ("store", 60), ("campaigns", 85), (None, 100))
EVENTS = ("Seminar Cloud Computing", "Workshop Data Engineering", "Konser Amal Jakarta", "Webinar UMKM Go Digital",
          "Lari Pagi 10K", "Kelas Fotografi Dasar")
PACKAGES = (("Early Bird", 2000), ("Regular", 75000), ("VIP", 250000), ("Test Package 2", 2000),
            ("Student", 50000))
CAMPAIGNS = ("Bantu Kucing Jalanan Hidup Layak", "Sumur Bersih untuk Desa", "Beasiswa Anak Nelayan",
             "Renovasi Masjid Al-Ikhlas", "Bantu Korban Banjir Demak")
PRODUCTS = (("Munio T-Shirt", 45000), ("Munio Tumblr", 45000), ("Munio Hoodie", 185000), ("Sticker Pack", 15000),
            ("Totebag Munio", 60000))
MEMBERSHIPS = (("Free Membership", 400000), ("Gold Membership", 1200000), ("Pro Membership", 150000))
METHODS = ("VA BRI", "VA BNI", "VA BCA", "VA Mandiri", "QRIS", "Xendit Payments", "OVO")


def _money(value: int | Decimal | None) -> str | None:
    return None if value is None else f"{Decimal(value):.2f}"


def _stamp(value: datetime | None) -> str | None:
    """Laravel's ISO-8601 UTC serialization with microseconds, as in the documented example."""
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Sandbox(ProviderSandbox):
    name = "munio"

    def reset(self) -> None:
        self.overrides: dict[int, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.static_revoked = False
        self._type_index: dict[tuple[str, int], array] = {}

    # -- controls ----------------------------------------------------------------------------
    def revoke_tokens(self) -> None:
        """Invalidate every issued token and the static one (as if they all expired)."""
        with self.lock:
            self.tokens.clear()
            self.static_revoked = True

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply normalized changes (`status`, `outstanding`, `paid_amount`, `paid_at`).

        Munio knows only pending/paid/expired and whole payments, so `status` must be open, paid or
        expired, and `outstanding`/`paid_amount` must be 0 or the total; contradictions are a ValueError.
        """
        i = self._index(external_id)
        unknown = set(changes) - {"status", "outstanding", "paid_amount", "paid_at"}
        if unknown:
            raise ValueError(f"munio sandbox cannot change {', '.join(sorted(unknown))}")
        with self.lock:
            inv = self._invoice(i)
            total = inv["total"]
            implied: set[bool] = set()  # what the money fields say about "paid"
            for name, paid_value, unpaid_value in (("outstanding", Decimal(0), total),
                                                   ("paid_amount", total, Decimal(0))):
                if name in changes:
                    value = Decimal(str(changes[name]))
                    if value not in (paid_value, unpaid_value):
                        raise ValueError(f"munio has no partial payments: {name} must be 0 or the total {total}")
                    implied.add(value == paid_value)
            paid_at = None
            if "paid_at" in changes:
                paid_at = _parse_when(changes["paid_at"])
                implied.add(paid_at is not None)
            if "status" in changes:
                wanted = str(changes["status"])
                provider_status = PROVIDER_STATUS.get(wanted) or (wanted if wanted in NORMALIZED else None)
                if provider_status is None:
                    raise ValueError(f"munio has no {wanted!r} state (only open/pending, paid, expired)")
            elif len(implied) == 1:
                provider_status = "paid" if implied == {True} else (
                    "pending" if inv["status"] == "paid" else inv["status"])
            else:
                provider_status = inv["status"]
            if len(implied) > 1 or (implied and implied != {provider_status == "paid"}):
                raise ValueError(f"contradictory changes for a munio invoice: {changes}")
            if provider_status == "paid":
                if paid_at is None:
                    now = self.sandbox.now().replace(microsecond=0)
                    paid_at = inv["paid_at"] or max(now, inv["created_at"] + timedelta(minutes=5))
            else:
                paid_at = None
            self.overrides[i] = {"status": provider_status, "paid_at": paid_at}
            return self._truth(i)

    def truth(self):
        """The seeded invoices (oldest first), then the legacy ones (oldest first), at the sandbox's clock."""
        now = self.sandbox.now()
        for i in range(self.size):
            yield self._truth(i, now)
        for i in self._legacy_indices("created_at"):
            yield self._truth(i, now)

    # -- routes ------------------------------------------------------------------------------
    def routes(self):
        return [
            ("POST", r"/auth/access_token", self.access_token),
            ("GET", r"/invoices", self.list_invoices),
            ("GET", r"/invoices/(?P<hash>[^/]+)", self.invoice_detail),
            ("PUT", r"/invoices/status/(?P<hash>[^/]+)", self.update_status),
        ]

    def auth_failure(self) -> Response:
        return Response(401, {"message": "Unauthenticated."})

    def access_token(self, request: Request, match) -> Response:
        if request.headers.get("client-key") != self.credentials["client_key"]:
            return Response(401, {"message": "Invalid client key."})
        body = _body(request)
        for name in ("login", "password", "grant_type"):
            if not str(body.get(name) or "").strip():
                text = f"The {name.replace('_', ' ')} field is required."
                return Response(422, {"message": text, "errors": {name: [text]}})
        if body["grant_type"] != "password":
            text = "The selected grant type is invalid."
            return Response(422, {"message": text, "errors": {"grant_type": [text]}})
        if body["login"] != self.credentials["login"] or body["password"] != self.credentials["password"]:
            return Response(401, {"message": "These credentials do not match our records."})
        token = "munio-" + uuid.uuid4().hex + uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
        return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL})

    def list_invoices(self, request: Request, match) -> Response:
        if not self._authorized(request):
            return self.auth_failure()
        try:
            per_page = int(request.arg("per_page") or PER_PAGE_DEFAULT)
        except ValueError:
            return _invalid("per_page", "The per page field must be an integer.")
        per_page = min(max(per_page, 1), PER_PAGE_MAX)
        try:
            page = max(int(request.arg("page") or 1), 1)
        except ValueError:
            page = 1  # Laravel's paginator reads a non-numeric page as page 1
        order_by = request.arg("orderBy") or "created_at"
        if order_by not in ("created_at", "id"):
            return _invalid("orderBy", "The selected order by is invalid.")
        order = (request.arg("order") or "DESC").upper()
        if order not in ("DESC", "ASC"):
            return _invalid("order", "The selected order is invalid.")
        kind = request.arg("type")
        if kind is not None and kind not in ("events", "store", "campaigns"):
            return _invalid("type", "The selected type is invalid.")

        # Seeded: created_at and id both increase with the index, so either order is index
        # arithmetic. Legacy (a handful): older than every seeded invoice but with higher ids, so
        # in ascending order they come first by created_at and last by id.
        seeded = self._indices_of_type(kind) if kind else range(self.size)
        legacy = [i for i in self._legacy_indices(order_by) if kind is None or self._kind(i, self._digest(i)) == kind]
        first, second = (legacy, seeded) if order_by == "created_at" else (seeded, legacy)
        total = len(seeded) + len(legacy)

        def ascending(k: int) -> int:
            return first[k] if k < len(first) else second[k - len(first)]

        start = (page - 1) * per_page
        positions = range(start, min(start + per_page, total))
        now = self.sandbox.now()
        data = [self._payload(ascending(total - 1 - k if order == "DESC" else k), now) for k in positions]
        last_page = max(1, math.ceil(total / per_page))
        links: dict[str, str] = {}
        if page > 1:
            links["previous"] = self._page_url(request, page - 1)
        if page < last_page:
            links["next"] = self._page_url(request, page + 1)
        pagination = {"total": total, "count": len(data), "per_page": per_page, "current_page": page,
                      "total_pages": last_page, "links": links}
        return Response(200, {"data": data, "meta": {"pagination": pagination}})

    def invoice_detail(self, request: Request, match) -> Response:
        if not self._authorized(request):
            return self.auth_failure()
        try:
            i = self._index(match["hash"])
        except KeyError:
            return Response(404, {"message": "Invoice not found."})
        return Response(200, {"data": self._payload(i)})

    def update_status(self, request: Request, match) -> Response:
        if not self._authorized(request):
            return self.auth_failure()
        wanted = str(_body(request).get("status") or "")
        if not wanted:
            return _invalid("status", "The status field is required.")
        if wanted != "expired":
            return _invalid("status", "The selected status is invalid.")
        try:
            i = self._index(match["hash"])
        except KeyError:
            return Response(404, {"message": "Invoice not found."})
        with self.lock:
            if self._invoice(i)["status"] == "paid":
                return Response(422, {"message": "A paid invoice cannot be expired."})
            self.overrides[i] = {"status": "expired", "paid_at": None}
        return Response(200, {"data": self._payload(i)})

    # -- auth --------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        if request.headers.get("client-key") != self.credentials["client_key"]:
            return False
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        with self.lock:
            if token in self.tokens:
                return True
            return token == self.credentials["access_token"] and not self.static_revoked

    # -- population --------------------------------------------------------------------------
    @property
    def anchor_moment(self) -> datetime:
        return datetime.combine(self.sandbox.anchor, time(), tzinfo=timezone.utc)

    def _digest(self, i: int) -> bytes:
        return hashlib.md5(f"munio:{self.sandbox.seed}:{i}".encode()).digest()

    def _key(self) -> int:
        return int.from_bytes(hashlib.md5(f"munio-key:{self.sandbox.seed}".encode()).digest()[:4], "big")

    def _hash(self, i: int, digest: bytes) -> str:
        """32 hex digits like Munio's: 24 from the digest, then the index xor a per-seed key."""
        return digest.hex()[:24] + f"{(i ^ self._key()) & 0xFFFFFFFF:08x}"

    def _index(self, external_id: str) -> int:
        """The internal index of a hash: seeded (0 <= i < size) or legacy (key - LEGACY_SLOTS < 0)."""
        text = str(external_id)
        try:
            j = int(text[24:], 16) ^ self._key() if len(text) == 32 else -1
        except ValueError:
            j = -1
        if 0 <= j <= 0xFFFFFFFF:
            for i in (j, j - 0x1_0000_0000):  # the tail read unsigned (seeded) or signed (legacy)
                if self._exists(i) and self._hash(i, self._digest(i)) == text:
                    return i
        raise KeyError(external_id)

    def _exists(self, i: int) -> bool:
        return 0 <= i < self.size or (i < 0 and self._legacy(i) is not None)

    def _legacy(self, i: int) -> Legacy | None:
        """The legacy record of internal index i (< 0), or None."""
        key = i + LEGACY_SLOTS
        return next((legacy for legacy in self.legacy if legacy.key == key), None)

    def _legacy_indices(self, order_by: str) -> list[int]:
        """The legacy indices in ascending `created_at` (issue date) or `id` (key) order."""
        plan = sorted(self.legacy, key=(lambda lg: (lg.issued, lg.key)) if order_by == "created_at" else
                      (lambda lg: lg.key))
        return [legacy.key - LEGACY_SLOTS for legacy in plan]

    def _type(self, digest: bytes) -> str | None:
        roll = digest[0] % 100
        return next(kind for kind, upto in TYPES if roll < upto)

    def _kind(self, i: int, digest: bytes) -> str | None:
        """The list's `type`: drawn for a seeded invoice; null (membership/transaction) for a legacy one."""
        return self._type(digest) if i >= 0 else None

    def _indices_of_type(self, kind: str) -> array:
        """The indices of one `type`, ascending: built once per (type, size) and cached (4 bytes each)."""
        key = (kind, self.size)
        with self.lock:
            cached = self._type_index.get(key)
            if cached is None:
                cached = array("l", (i for i in range(self.size) if self._type(self._digest(i)) == kind))
                self._type_index[key] = cached
            return cached

    def _created(self, i: int) -> datetime:
        """Strictly increasing in i (>= 18 s apart at a million invoices), denser towards the anchor."""
        u = 1 - (i + 0.5) / self.size
        seconds = int(SPAN_DAYS * 86400 * u * (0.3 + 0.7 * u))
        return self.anchor_moment - timedelta(seconds=seconds)

    def _invoice(self, i: int, now: datetime | None = None) -> dict[str, Any]:
        """Invoice i in Python terms (Decimals, datetimes), with any change applied; a legacy late
        payer's state is the one at `now` (default the sandbox's clock)."""
        digest = self._digest(i)
        rng = random.Random(int.from_bytes(digest, "big"))
        kind = self._kind(i, digest)
        legacy = self._legacy(i) if i < 0 else None
        if i < 0 and legacy is None:
            raise KeyError(i)
        if legacy is None:
            created, ident = self._created(i), 3 * i + 1 + digest[1] % 3
        else:
            created = datetime.combine(legacy.issued, time(), timezone.utc) + \
                timedelta(seconds=int.from_bytes(digest[4:8], "big") % 86400)
            ident = 3 * self.size + 1 + legacy.key
        inv: dict[str, Any] = {"index": i, "id": ident, "invoice_hash": self._hash(i, digest),
                               "type": kind, "created_at": created, "related_hash": None, "related_code": None,
                               "related_title": None, "related": []}
        if kind == "events":
            title = rng.choice(EVENTS)
            package, price = rng.choice(PACKAGES)
            quantity = rng.choice((1, 1, 1, 2, 3))
            code = hashlib.md5(title.encode() + digest[:2]).hexdigest()
            subtotal, fee, covered = Decimal(price * quantity), Decimal(rng.choice((7500, 10000))), rng.random() < 0.8
            inv.update(invoice_type="rsvp", related_hash=code, related_code=code, related_title=title,
                       related={"id": str(uuid.UUID(bytes=digest)), "title": title,
                                "slug": title.lower().replace(" ", "-"),
                                "image": f"https://minio-s3.dev.embrio.id/munio/uploads/public/{code[:9]}.png",
                                "quantity": quantity, "package_name": package, "package_price": price})
        elif kind == "campaigns":
            title = rng.choice(CAMPAIGNS)
            code = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
            subtotal, fee, covered = Decimal(rng.choice((10000, 25000, 50000, 100000, 250000, 500000))), \
                Decimal(7500), True
            inv.update(invoice_type="donation", related_code=code, related_title=title,
                       related={"id": str(uuid.UUID(bytes=digest)), "title": title,
                                "slug": title.lower().replace(" ", "-"),
                                "cover": f"https://minio-s3.dev.embrio.id/munio/uploads/public/{code.lower()}"})
        elif kind == "store":
            order_id = str(uuid.UUID(bytes=digest))
            products = [(name, price, rng.choice((1, 1, 2))) for name, price in
                        rng.sample(PRODUCTS, rng.choice((0, 1, 1, 2, 3)))]  # [] happens (documented example)
            subtotal = Decimal(sum(price * qty for _, price, qty in products) or rng.choice((45000, 90000)))
            fee, covered = Decimal(0), False
            inv["shipping"] = Decimal(rng.choice((12000, 15000, 20000)))
            inv.update(invoice_type="order", related_code=order_id,
                       related={"id": order_id, "products": [
                           {"product_name": name, "quantity": str(qty),
                            "image": "https://store.munio.id/wp-content/uploads/product.png"}
                           for name, _, qty in products]})
        elif rng.random() < 0.6:
            title, price = rng.choice(MEMBERSHIPS)
            code = hashlib.md5(digest + b"membership").hexdigest()
            subtotal, fee, covered = Decimal(price), Decimal(10000), True
            inv.update(invoice_type="subscription", related_hash=code, related_code=code, related_title=title)
        else:  # a plain transaction: no related object and no fee fields at all (documented nulls)
            subtotal, fee, covered = Decimal(rng.choice((500000, 1000000, 2000000))), None, None
            inv.update(invoice_type="transaction")
        total = subtotal + inv.pop("shipping", Decimal(0))
        if inv["invoice_type"] == "transaction":
            total += 5000  # as in the documented example: 2,000,000 + 5,000 with a null fee
        elif covered is False and fee:
            total += fee
        inv.update(subtotal=subtotal, total=total, transaction_fee=fee,
                   is_transactionfee_covered=None if covered is None else int(covered))

        payer = person_for("munio", rng.random(), self.size, self.sandbox.seed)
        inv.update(name=payer.name, email=payer.email.lower(), phone=payer.mobile_international(rng.random() < 0.2),
                   payment_method_name="Xendit Payments" if kind == "store" else rng.choice(METHODS))

        roll = rng.random()
        life = timedelta(days=1, seconds=rng.randint(0, 2)) if roll < 0.75 else \
            timedelta(days=7) if roll < 0.95 else timedelta(days=30)
        due = created + life
        roll = rng.random()
        if due > self.anchor_moment:  # not yet due: mostly still pending
            status = "pending" if roll < 0.75 else "paid"
        else:  # past due: paid, expired, or left pending (overdue)
            status = "paid" if roll < 0.6 else "expired" if roll < 0.9 else "pending"
        latest = min(created + life - timedelta(seconds=1), created + timedelta(hours=20), self.anchor_moment)
        span = max(1, int((latest - created).total_seconds()))
        paid_at = created + timedelta(seconds=rng.randint(min(60, span), span))
        if legacy is not None:  # due `legacy.due` (at its issue time of day); the state by kind and clock
            due = created + (legacy.due - legacy.issued)
            status = LEGACY_STATUS[legacy.kind]
            if legacy.kind == "late" and legacy.paid(now or self.sandbox.now()):
                status, paid_at = "paid", datetime.combine(legacy.paid_on, time(), timezone.utc)
        url = None if rng.random() < 0.05 or (inv["invoice_type"] == "transaction" and status == "paid") \
            else f"https://checkout.xendit.co/web/{hashlib.sha1(digest).hexdigest()[:24]}"
        inv.update(due_at=due, invoice_url=url, status=status, paid_at=paid_at if status == "paid" else None)
        inv.update(self.overrides.get(i, {}))
        return inv

    def _payload(self, i: int, now: datetime | None = None) -> dict[str, Any]:
        """Invoice i as the list and detail endpoints serialize it (field order as documented)."""
        inv = self._invoice(i, now)
        return {
            "id": inv["id"], "invoice_hash": inv["invoice_hash"], "related_hash": inv["related_hash"],
            "related_code": inv["related_code"], "related_title": inv["related_title"],
            "total": _money(inv["total"]), "subtotal": _money(inv["subtotal"]),
            "transaction_fee": _money(inv["transaction_fee"]),
            "is_transactionfee_covered": inv["is_transactionfee_covered"], "invoice_type": inv["invoice_type"],
            "type": inv["type"], "status": inv["status"], "name": inv["name"], "email": inv["email"],
            "phone": inv["phone"], "payment_method_name": inv["payment_method_name"],
            "due_at": _stamp(inv["due_at"]), "created_at": _stamp(inv["created_at"]),
            "paid_at": _stamp(inv["paid_at"]), "invoice_url": inv["invoice_url"], "related": inv["related"],
        }

    def _truth(self, i: int, now: datetime | None = None) -> dict[str, Any]:
        inv = self._invoice(i, now)
        status = NORMALIZED[inv["status"]]
        paid = status == st.PAID
        return {
            "external_id": inv["invoice_hash"], "number": str(inv["id"]), "status": status,
            "provider_status": inv["status"], "currency": "IDR", "amount": inv["total"],
            "outstanding": Decimal(0) if paid else inv["total"], "paid_amount": inv["total"] if paid else Decimal(0),
            "issued_at": inv["created_at"], "due_at": inv["due_at"], "paid_at": inv["paid_at"],
            "customer_name": inv["name"], "customer_email": inv["email"], "customer_ref": inv["phone"],
            "customer_phone": inv["phone"],
            "payment_channel": inv["payment_method_name"], "checkout_url": inv["invoice_url"] or "",
            "type": inv["type"],
        }

    def _page_url(self, request: Request, page: int) -> str:
        query = {name: values[-1] for name, values in request.query.items()}
        query["page"] = str(page)
        host = request.headers.get("host", "127.0.0.1")
        return f"http://{host}/{self.name}/invoices?{urlencode(query)}"


def _body(request: Request) -> dict[str, Any]:
    """A JSON or form body (Laravel reads both)."""
    if "json" in request.headers.get("content-type", ""):
        try:
            body = request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return request.form()


def _invalid(field: str, text: str) -> Response:
    return Response(422, {"message": text, "errors": {field: [text]}})


def _parse_when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
