"""Munio (munio.id) invoices: `GET /invoices` with `Client-Key` + `Authorization: Bearer`.

Facts from munio-invoices.txt and RESEARCH.md section D; the decisions where the docs are silent:

- **Host.** The API host is undocumented (RESEARCH open question 5). `https://api.munio.id` is an
  ASSUMPTION; set the credential's `base_url` once the real host is known.
- **Token.** A credential holds `client_key` + `access_token`, or `client_key` + `login` +
  `password`. Without a stored token we get one from `POST /auth/access_token` (header
  `Client-Key`, JSON body `login`, `password`, `grant_type=password`). Its response fields are
  undocumented, so we accept `access_token`, `token`, `data.access_token` or `data.token`.
  A 401 on a data call renews the token once (only possible with login/password) and retries that
  call once; a second 401 is an `AuthError`. Every token is registered for masking.
- **Paging.** `meta.pagination` has League Fractal's shape and its links use `?page=N`, so the page
  parameter is `page` (INFERENCE: Fractal/Laravel convention). We ask for `per_page=100`,
  `orderBy=created_at`, `order=DESC` and stop at `total_pages` (else when `links.next` is absent,
  else on a short page), and always on an empty page. A server that ignores `page` would serve
  page 1 forever: a `current_page` that is not the one asked for, or a page that starts with the
  same invoice as the previous one, is a `BadResponseError`.
- **Incremental.** The list has no status or date filter and no `updated_at`, so a client cannot
  know which invoices changed. Munio's checkout links expire about a day after creation (`due_at`
  = `created_at` + 1 day in every example), so an invoice changes state (paid/expired) within
  days of being created. With `since`, we walk newest first and stop after a page whose invoices
  were all created more than `incremental_lookback_days` (option, default 30) before `since`:
  a wide margin over the one-day life for late payments and manual expiries. If the server does
  not return newest first, that rule would be unsafe, so the run falls back to a full walk.
- **Mapping.** `external_id` = `invoice_hash` (what the detail and status endpoints take);
  `number` = the numeric `id` (short and unique; `related_code` is shared by every invoice of one
  event or campaign, and the hash is not for humans); `customer_ref` = `phone` (Munio has no
  customer id); `amount` = `total` (what the payer is charged); currency IDR (not in the payload;
  a `currency` field is honoured if it ever appears).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from . import status as st
from .base import GatewayClient, to_datetime, to_decimal
from .errors import AuthError, BadResponseError
from .fields import INT, Field
from .models import InvoiceRef, Page, RemoteInvoice

logger = logging.getLogger("gateways.munio")

#: Munio status -> normalized state. Documented: pending, paid, expired. The others are defensive
#: guesses at Laravel/Xendit-style values; `refunded` is deliberately absent: a refund is not money
#: owed again (so not `charged_back`) nor a void, so it stays `unknown` (kept raw, shown apart).
STATUS_MAP: dict[str, str] = {
    "pending": st.OPEN,
    "unpaid": st.OPEN,
    "paid": st.PAID,
    "settled": st.PAID,
    "expired": st.EXPIRED,
    "cancelled": st.CANCELLED,
    "canceled": st.CANCELLED,
    "failed": st.FAILED,
}

#: States in which the whole total is still owed; `paid`/`cancelled` owe nothing; `unknown` is unknown.
_OWED = frozenset({st.OPEN, st.EXPIRED, st.FAILED})
_SETTLED = frozenset({st.PAID, st.CANCELLED})

PER_PAGE = 100  # Laravel APIs commonly cap per_page at 100; the sandbox does too.


class Client(GatewayClient):
    provider = "munio"
    default_base_url = "https://api.munio.id"  # ASSUMPTION: the real host is undocumented
    required_secrets = (("client_key", "access_token"), ("client_key", "login", "password"))
    secret_fields = (
        Field("client_key", "Munio Client-Key."),
        Field("access_token", "Munio bearer token (or give login and password: a token is then obtained)."),
        Field("login", "Munio login (email), to obtain a token."),
        Field("password", "Munio login password."),
    )
    option_fields = (
        Field("incremental_lookback_days", "An incremental sync stops at invoices created this many days before "
              "the last sync (Munio has no date filter).", kind=INT, default=30, minimum=0),
    )
    STATUS_MAP = STATUS_MAP
    stop_when_unchanged = True
    can_lookup = True

    per_page = PER_PAGE

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._token: str | None = str(self.secrets.get("access_token") or "").strip() or None

    # -- auth --------------------------------------------------------------------------------
    @property
    def can_renew(self) -> bool:
        return bool(str(self.secrets.get("login") or "").strip() and str(self.secrets.get("password") or "").strip())

    def obtain_token(self) -> str:
        """`POST /auth/access_token` with login/password; returns (and remembers) the bearer token."""
        # Issuing a token changes nothing the caller cares about, so retrying it is safe.
        # 400/422 are what Laravel/Passport answer for a bad grant or login: a credential problem.
        response = self.http.request(
            "POST", "/auth/access_token", idempotent=True, accept_status=(400, 422),
            headers={"Client-Key": str(self.secrets["client_key"]), "Accept": "application/json"},
            json={"login": self.secrets["login"], "password": self.secrets["password"], "grant_type": "password"},
        )
        if response.status_code in (400, 422):
            raise AuthError(f"munio: POST /auth/access_token was refused (HTTP {response.status_code}); "
                            "check the login and password", provider=self.provider,
                            status_code=response.status_code)
        body = self.http.parse_json(response, method="POST", path="/auth/access_token")
        token = _find_token(body)
        if not token:
            raise BadResponseError("munio: POST /auth/access_token answered without an access_token/token field",
                                   provider=self.provider, status_code=response.status_code)
        self.http.add_secret(token)
        self._token = token
        return token

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            self.obtain_token()
        # Accept: application/json makes Laravel answer an auth failure with a JSON 401 instead of
        # a redirect to its login page.
        return {"Client-Key": str(self.secrets["client_key"]), "Authorization": f"Bearer {self._token}",
                "Accept": "application/json"}

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        """Authenticated GET returning JSON; on a 401 renews the token once and retries once.
        With `missing_ok`, a 404 answers None."""
        headers = self._headers()  # outside the try: a refused login must not be retried here
        try:
            return self._get_json(path, params, headers, missing_ok)
        except AuthError as exc:
            if exc.status_code != 401 or not self.can_renew:  # 403: a new token would not help
                raise
            logger.info("provider=munio token refused; obtaining a new one")
            self.obtain_token()
            return self._get_json(path, params, self._headers(), missing_ok)

    def _get_json(self, path: str, params: Mapping[str, Any] | None, headers: dict[str, str], missing_ok: bool) -> Any:
        response = self.http.request("GET", path, params=params, headers=headers,
                                     accept_status=(404,) if missing_ok else ())
        if missing_ok and response.status_code == 404:
            return None
        return self.http.parse_json(response, method="GET", path=path)

    def lookup(self, ref: InvoiceRef) -> RemoteInvoice | None:
        """`GET /invoices/{invoice_hash}` (the detail, `{"data": {...}}`); None on 404."""
        body = self.get(f"/invoices/{quote(str(ref.external_id), safe='')}", missing_ok=True)
        if body is None:
            return None
        item = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
        return self.parse_invoice(item)

    # -- listing -----------------------------------------------------------------------------
    def check_connection(self) -> str:
        body = self.get("/invoices", {"page": 1, "per_page": 1, "orderBy": "created_at", "order": "DESC"})
        items, pagination = self._split(body)
        total = pagination.get("total", len(items)) if pagination else len(items)
        try:
            total = int(total)
        except (TypeError, ValueError):
            raise BadResponseError("munio: meta.pagination.total is not a number", provider=self.provider) from None
        return f"Connected: {total:,} invoice{'' if total == 1 else 's'} visible"

    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        page, per_page = 1, self.per_page
        if resume:
            state = _load_resume(resume)
            page, per_page = state["p"] + 1, state.get("pp", per_page)
        cutoff = None
        if since is not None:
            if since.tzinfo is None:
                since = since.replace(tzinfo=timezone.utc)
            cutoff = since - timedelta(days=self.settings["incremental_lookback_days"])
        newest_first = True  # until a page shows otherwise
        last_created: datetime | None = None
        previous_first_id: Any = None
        number = 0
        while True:
            body = self.get("/invoices", {"page": page, "per_page": per_page, "orderBy": "created_at",
                                          "order": "DESC"})
            items, pagination = self._split(body)
            current = pagination.get("current_page")
            if current is not None and str(current) != str(page):
                raise BadResponseError(f"munio: asked for page {page} of /invoices but got page {str(current)[:12]}; "
                                       "the server does not honour the page parameter", provider=self.provider)
            if not items:
                return
            first_id = items[0].get("id") if isinstance(items[0], dict) else None
            if previous_first_id is not None and first_id == previous_first_id:
                raise BadResponseError(f"munio: page {page} of /invoices repeats page {page - 1}; "
                                       "the server does not honour the page parameter", provider=self.provider)
            previous_first_id = first_id
            invoices = [self.parse_invoice(item) for item in items]
            number += 1
            yield Page(invoices=invoices, number=number,
                       resume=json.dumps({"p": page, "pp": per_page}, separators=(",", ":")))

            created = [inv.issued_at for inv in invoices]
            if cutoff is not None and newest_first and not _descending(last_created, created):
                newest_first = False
                logger.warning("provider=munio /invoices is not newest first; incremental read walks everything")
            last_created = next((c for c in reversed(created) if c is not None), last_created)
            if _is_last(pagination, page, len(items), per_page):
                return
            if cutoff is not None and newest_first and all(c is not None and c < cutoff for c in created):
                return
            page += 1

    def _split(self, body: Any) -> tuple[list[Any], dict[str, Any]]:
        """`data` list and `meta.pagination` dict (empty when absent) of a list response."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise BadResponseError("munio: /invoices did not return a `data` list", provider=self.provider)
        meta = body.get("meta")
        pagination = meta.get("pagination") if isinstance(meta, dict) else None
        return body["data"], pagination if isinstance(pagination, dict) else {}

    # -- one invoice -------------------------------------------------------------------------
    def parse_invoice(self, item: Any) -> RemoteInvoice:
        if not isinstance(item, dict):
            raise BadResponseError("munio: an invoice in `data` is not an object", provider=self.provider)
        external_id = str(item.get("invoice_hash") or "").strip()
        if not external_id:
            raise BadResponseError("munio: an invoice has no invoice_hash", provider=self.provider)
        provider_status = "" if item.get("status") is None else str(item["status"])
        status = self.map_status(provider_status)
        amount = to_decimal(item.get("total"), field="total", provider=self.provider)
        outstanding = paid_amount = None
        if amount is not None:
            if status in _OWED:
                outstanding, paid_amount = amount, Decimal("0")
            elif status == st.PAID:
                outstanding, paid_amount = Decimal("0"), amount
            elif status in _SETTLED:
                outstanding, paid_amount = Decimal("0"), Decimal("0")
        number = item.get("id")

        def when(name: str) -> datetime | None:
            return to_datetime(item.get(name), field=name, provider=self.provider)

        return RemoteInvoice(
            external_id=external_id,
            status=status,
            provider_status=provider_status,
            currency=str(item.get("currency") or "IDR").upper(),
            number="" if number is None else str(number),
            customer_name=str(item.get("name") or ""),
            customer_email=str(item.get("email") or ""),
            customer_ref=str(item.get("phone") or ""),
            customer_phone=str(item.get("phone") or ""),
            amount=amount,
            outstanding=outstanding,
            paid_amount=paid_amount,
            issued_at=when("created_at"),
            due_at=when("due_at"),
            paid_at=when("paid_at"),
            provider_updated_at=when("updated_at"),  # undocumented; used if Munio ever sends it
            payment_channel=str(item.get("payment_method_name") or ""),
            checkout_url=str(item.get("invoice_url") or ""),
            raw=item,
        )


def _find_token(body: Any) -> str | None:
    """The bearer token from an `/auth/access_token` answer, wherever the undocumented shape puts it."""
    for holder in (body, body.get("data") if isinstance(body, dict) else None):
        if isinstance(holder, dict):
            for key in ("access_token", "token"):
                value = holder.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
    return None


def _load_resume(resume: str) -> dict[str, int]:
    try:
        state = json.loads(resume)
        return {"p": int(state["p"]), "pp": int(state.get("pp", PER_PAGE))}
    except (ValueError, TypeError, KeyError):
        raise ValueError("munio: the resume marker is not one this client wrote") from None


def _descending(previous: datetime | None, created: list[datetime | None]) -> bool:
    """True when the creation times (None skipped) never increase, including across the page break."""
    known = [c for c in created if c is not None]
    if previous is not None:
        known.insert(0, previous)
    return all(a >= b for a, b in zip(known, known[1:]))


def _is_last(pagination: Mapping[str, Any], page: int, count: int, per_page: int) -> bool:
    """Fractal's total_pages when present, else its links.next, else a short page."""
    total_pages = pagination.get("total_pages")
    if total_pages is not None:
        try:
            return page >= int(total_pages)
        except (TypeError, ValueError):
            raise BadResponseError("munio: meta.pagination.total_pages is not a number", provider="munio") from None
    links = pagination.get("links")
    if isinstance(links, (dict, list)):
        # Fractal omits `next` on the last page (and PHP may encode the empty links as []).
        return not (isinstance(links, dict) and links.get("next"))
    try:
        per_page = int(pagination.get("per_page") or per_page)  # the server's page size wins
    except (TypeError, ValueError):
        pass
    return count < per_page
