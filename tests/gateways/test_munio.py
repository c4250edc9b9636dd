"""Munio client and sandbox: the documented example, token handling, paging, errors, the population."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from gateways import get_client
from gateways.errors import AuthError, BadResponseError, ConfigurationError, TransientError
from gateways.munio import Client
from gateways.sandbox import CREDENTIALS, Fault, start

from .conftest import ANCHOR, credential

FIXTURES = Path(__file__).parent / "fixtures" / "munio"
FAST = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2)}
LOGIN = ("client_key", "login", "password")
STATIC = ("client_key", "access_token")
ANCHOR_MOMENT = datetime(ANCHOR.year, ANCHOR.month, ANCHOR.day, tzinfo=timezone.utc)
FIELDS = ("status", "provider_status", "currency", "number", "amount", "outstanding", "paid_amount", "issued_at",
          "due_at", "paid_at", "customer_name", "customer_email", "customer_ref", "payment_channel",
          "checkout_url")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# -- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _munio_server():
    server = start(anchor=ANCHOR, providers=("munio",), size=0)
    yield server
    server.stop()


@pytest.fixture
def munio_sandbox(_munio_server):
    """`munio_sandbox(size, legacy=True)`: the module's sandbox, reset (changes, tokens, faults, request
    log), resized, with or without its six legacy invoices (the old debt, beyond the `size` seeded ones).

    One server for the module: stopping a server costs half a second (serve_forever's poll interval)."""
    def make(size: int, *, legacy: bool = True):
        _munio_server.sandbox.reset()
        _munio_server.sandbox.sizes["munio"] = size
        _munio_server.sandbox.legacy = legacy
        return _munio_server

    yield make
    _munio_server.sandbox.reset()
    _munio_server.sandbox.legacy = True


class FakeSession:
    """A `requests.Session` stand-in: `handler(method, url, kwargs) -> (status, body)`; records calls."""

    def __init__(self, handler):
        self.handler = handler
        self.calls: list[tuple[str, str, dict]] = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        status, body = self.handler(method, url, kwargs)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.url = url
        return response


def fake_client(handler, keys=STATIC, **extra) -> tuple[Client, FakeSession]:
    session = FakeSession(handler)
    secrets = {k: CREDENTIALS["munio"][k] for k in keys}
    return Client(base_url="https://munio.test", secrets=secrets, session=session, **FAST, **extra), session


def page_of(ids, *, page=1, total_pages=None, per_page=100, created=None, links=None):
    """A Fractal-shaped list response whose invoices carry the given ids (newest first by default)."""
    data = []
    for n, ident in enumerate(ids):
        stamp = created[n] if created else (ANCHOR_MOMENT - timedelta(hours=ident)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        data.append({"id": ident, "invoice_hash": f"{ident:032x}", "status": "pending", "total": "1000.00",
                     "created_at": stamp, "due_at": stamp})
    pagination = {"total": 999, "count": len(data), "per_page": per_page, "current_page": page,
                  "links": links if links is not None else {}}
    if total_pages is not None:
        pagination["total_pages"] = total_pages
    return {"data": data, "meta": {"pagination": pagination}}


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def sandbox_client(server, keys=LOGIN, per_page=None, **overrides) -> Client:
    kwargs = credential("munio", server)
    kwargs["secrets"] = {k: v for k, v in kwargs["secrets"].items() if k in keys}
    kwargs["secrets"].update(overrides)
    client = get_client("munio", **kwargs, **FAST)
    if per_page:
        client.per_page = per_page
    return client


def munio_requests(server) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in server.sandbox.requests.get("munio", ())]


def read_all(client, **kwargs):
    return [inv for page in client.iter_pages(**kwargs) for inv in page.invoices]


def sandbox_get(server, path, *, params=None, token=None, client_key=None):
    headers = {"Client-Key": client_key or CREDENTIALS["munio"]["client_key"],
               "Authorization": f"Bearer {token or CREDENTIALS['munio']['access_token']}",
               "Accept": "application/json"}
    return requests.get(server.base_url("munio") + path, params=params, headers=headers, timeout=5)


# -- the documented example ------------------------------------------------------------------

EXAMPLE = [
    # external_id, number, status, provider_status, amount, outstanding, paid_amount, issued_at, due_at, paid_at,
    # payment_channel, checkout_url, customer_name, customer_ref
    ("363fd18c68bf71797a66bfed08dda7e9", "222", "open", "pending", "2000.00", "2000.00", "0",
     "2024-07-31T15:57:38", "2024-08-01T15:57:39", None, "VA BRI",
     "https://checkout-staging.xendit.co/web/66aa5ef3204d352a16c9f388", "Warren Hamme", "291023919122"),
    ("953c0593c4c54f0541c6fdea3f1a5847", "220", "open", "pending", "100000.00", "100000.00", "0",
     "2024-07-31T09:16:53", "2024-08-01T09:16:53", None, "VA BRI",
     "https://checkout-staging.xendit.co/web/66aa0105e9149911fd31be81", "Warren Hamme", "291023919122"),
    ("ae456748e57d90f32490c8cceadd9a06", "218", "open", "pending", "102000.00", "102000.00", "0",
     "2024-07-31T08:45:22", "2024-08-01T08:45:24", None, "Xendit Payments",
     "https://checkout-staging.xendit.co/web/66a9f9a4204d35d692c8c79e", "Andy Eka Saputra", "6281944835558"),
    ("90a1f8ba243b94d0d3c1925ee8e06c21", "216", "open", "pending", "102000.00", "102000.00", "0",
     "2024-07-31T08:43:30", "2024-08-01T08:43:34", None, "Xendit Payments",
     "https://checkout.xendit.co/web/66a9f9354e74f018abcc5fc7", "Andy Eka Saputra", "6281944835558"),
    ("cf394a0a899489917fb5c329e4c56787", "211", "open", "pending", "400000.00", "400000.00", "0",
     "2024-07-23T14:10:55", "2024-07-24T14:10:56", None, "VA BRI",
     "https://checkout-staging.xendit.co/web/669fb9f0eaf4fe7c54540cb0", "Warren Hamme", "291023919122"),
    ("76742e8ad7aa343d8dea8902cd587d07", "210", "open", "pending", "400000.00", "400000.00", "0",
     "2024-07-23T14:07:16", "2024-07-24T14:07:17", None, "VA BRI",
     "https://checkout-staging.xendit.co/web/669fb91530ee01ae07470ba1", "Warren Hamme", "291023919122"),
    ("bf104d02c95de414391c21efc495fb34", "200", "open", "pending", "400000.00", "400000.00", "0",
     "2024-07-23T14:00:08", "2024-07-24T14:00:09", None, "VA BRI",
     "https://checkout-staging.xendit.co/web/669fb76930ee01270447057c", "Warren Hamme", "291023919122"),
    ("c51c5c20f3f8143822b74129df689c93", "6", "paid", "paid", "2005000.00", "0", "2005000.00",
     "2023-08-29T17:45:03", "2023-08-30T17:45:05", "2023-08-29T17:49:43", "Xendit Payments",
     "", "Khalid", "+62853335333022"),
    ("51472df8ee756b56fb6e280ebe2725a3", "5", "expired", "expired", "2005000.00", "2005000.00", "0",
     "2023-08-29T16:10:28", "2023-08-30T16:10:30", None, "Xendit Payments",
     "https://checkout-staging.xendit.co/v2/64edb605ad5791177d1cdef4", "Khalid", "+62853335333022"),
    ("b35fb2566e0000ebf8dccc3e680d69a8", "4", "expired", "expired", "2005000.00", "2005000.00", "0",
     "2023-08-29T16:00:43", "2023-08-30T16:00:45", None, "Xendit Payments",
     "https://checkout-staging.xendit.co/v2/64edb3bbad5791ff2d1cdbcf", "Khalid", "+62853335333022"),
]


def test_documented_example_parses_to_expected_invoices():
    body = json.loads((FIXTURES / "invoices.json").read_text())
    client, session = fake_client(lambda method, url, kw: (200, body))

    pages = list(client.iter_pages())

    assert [p.number for p in pages] == [1]
    assert len(session.calls) == 1  # total_pages = 1: no second request
    method, url, kwargs = session.calls[0]
    assert (method, urlsplit(url).path) == ("GET", "/invoices")
    assert kwargs["params"] == {"page": 1, "per_page": 100, "orderBy": "created_at", "order": "DESC"}
    assert kwargs["headers"]["Client-Key"] == CREDENTIALS["munio"]["client_key"]
    assert kwargs["headers"]["Authorization"] == "Bearer " + CREDENTIALS["munio"]["access_token"]
    invoices = pages[0].invoices
    assert len(invoices) == len(EXAMPLE)
    for inv, row, raw in zip(invoices, EXAMPLE, body["data"]):
        (external_id, number, status, provider_status, amount, outstanding, paid_amount, issued, due, paid,
         channel, url, name, phone) = row
        assert inv.external_id == external_id
        assert inv.number == number
        assert (inv.status, inv.provider_status) == (status, provider_status)
        assert inv.currency == "IDR"
        assert (inv.amount, inv.outstanding, inv.paid_amount) == (Decimal(amount), Decimal(outstanding),
                                                                   Decimal(paid_amount))
        assert isinstance(inv.amount, Decimal)
        assert inv.issued_at == utc(issued) and inv.due_at == utc(due)
        assert inv.paid_at == (utc(paid) if paid else None)
        assert inv.issued_at.tzinfo is not None
        assert (inv.payment_channel, inv.checkout_url) == (channel, url)
        assert (inv.customer_name, inv.customer_ref, inv.customer_phone) == (name, phone, phone)
        assert inv.customer_email == raw["email"]
        assert inv.provider_updated_at is None
        assert inv.raw == raw


@pytest.mark.parametrize("value, expected", [
    ("pending", "open"), ("PAID", "paid"), ("expired", "expired"), ("cancelled", "cancelled"),
    ("canceled", "cancelled"), ("failed", "failed"), ("refunded", "unknown"), (None, "unknown"),
])
def test_status_mapping(value, expected):
    client, _ = fake_client(lambda *a: (500, {}))
    inv = client.parse_invoice({"invoice_hash": "h" * 32, "status": value, "total": "10.00"})
    assert inv.status == expected
    if expected == "unknown":  # nobody knows what is owed
        assert inv.outstanding is None and inv.paid_amount is None
    elif expected == "cancelled":
        assert inv.outstanding == 0 and inv.paid_amount == 0
    elif expected in ("failed", "expired", "open"):
        assert inv.outstanding == Decimal("10.00")


def test_unknown_status_is_logged_once(caplog):
    client, _ = fake_client(lambda *a: (500, {}))
    with caplog.at_level(logging.WARNING, logger="gateways"):
        for _ in range(3):
            assert client.parse_invoice({"invoice_hash": "h" * 32, "status": "on_hold"}).status == "unknown"
    assert sum("on_hold" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("item", [
    {"status": "paid", "total": "1.00"},  # no invoice_hash
    {"invoice_hash": "h" * 32, "total": "lots"},
    {"invoice_hash": "h" * 32, "created_at": "yesterday"},
    "not an object",
])
def test_malformed_invoice_is_bad_response(item):
    client, _ = fake_client(lambda *a: (200, {"data": [item], "meta": {"pagination": {"total_pages": 1}}}))
    with pytest.raises(BadResponseError):
        list(client.iter_pages())


# -- paging against fake servers ---------------------------------------------------------------

def test_server_ignoring_page_parameter_is_detected():
    client, session = fake_client(lambda m, url, kw: (200, page_of(range(200, 100, -1), total_pages=5)))
    with pytest.raises(BadResponseError, match="page"):
        list(client.iter_pages())
    assert len(session.calls) == 2


def test_server_echoing_page_but_repeating_content_is_detected():
    def handler(method, url, kwargs):  # echoes current_page but always serves the same invoices
        return 200, page_of(range(200, 100, -1), page=kwargs["params"]["page"], total_pages=5)

    client, session = fake_client(handler)
    with pytest.raises(BadResponseError, match="repeats"):
        list(client.iter_pages())
    assert len(session.calls) == 2


def test_empty_page_stops_even_when_total_pages_says_more():
    def handler(method, url, kwargs):
        page = kwargs["params"]["page"]
        return 200, page_of(range(200, 100, -1) if page == 1 else [], page=page, total_pages=5)

    client, session = fake_client(handler)
    assert [p.number for p in client.iter_pages()] == [1]
    assert len(session.calls) == 2


def test_without_pagination_meta_a_short_page_is_the_last():
    def handler(method, url, kwargs):
        page = kwargs["params"]["page"]
        ids = range(1000 - 100 * page, 900 - 100 * page, -1) if page == 1 else range(800, 770, -1)
        return 200, {"data": page_of(ids)["data"]}

    client, session = fake_client(handler)
    assert [len(p.invoices) for p in client.iter_pages()] == [100, 30]
    assert len(session.calls) == 2


def test_links_next_drives_paging_when_total_pages_is_missing():
    def handler(method, url, kwargs):
        page = kwargs["params"]["page"]
        links = {"next": f"https://munio.test/invoices?page={page + 1}"} if page < 3 else []  # PHP's empty []
        return 200, page_of([1000 - page * 10 - n for n in range(5)], page=page, links=links)

    client, session = fake_client(handler)
    assert [p.number for p in client.iter_pages()] == [1, 2, 3]
    assert len(session.calls) == 3


@pytest.mark.parametrize("body", [[], {"data": {"id": 1}}, {"items": []}])
def test_unexpected_list_shapes_are_bad_responses(body):
    client, _ = fake_client(lambda *a: (200, body))
    with pytest.raises(BadResponseError):
        list(client.iter_pages())
    with pytest.raises(BadResponseError):
        client.check_connection()


def test_non_numeric_paging_fields_are_bad_responses():
    client, _ = fake_client(lambda *a: (200, {"data": [], "meta": {"pagination": {"total": "many"}}}))
    with pytest.raises(BadResponseError, match="total"):
        client.check_connection()
    client, _ = fake_client(lambda *a: (200, page_of([5], total_pages="last")))
    with pytest.raises(BadResponseError, match="total_pages"):
        list(client.iter_pages())


def test_incremental_read_walks_everything_when_server_is_not_newest_first():
    """If `order=DESC` were ignored, stopping at the first old page would miss the new invoices."""
    def stamp(days_ago):
        return (ANCHOR_MOMENT - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def handler(method, url, kwargs):  # oldest first: pages 1-2 are old, page 3 ends with a new one
        page = kwargs["params"]["page"]
        stamps = [stamp(400 - page * 2), stamp(399 - page * 2)] if page < 3 else [stamp(300), stamp(1)]
        return 200, page_of([page * 10, page * 10 + 1], page=page, total_pages=3, created=stamps)

    client, session = fake_client(handler)
    pages = list(client.iter_pages(since=ANCHOR_MOMENT - timedelta(days=7)))
    assert len(pages) == 3 and len(session.calls) == 3


# -- tokens ------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    {"access_token": "tok-abcdef-1"}, {"token": "tok-abcdef-1"}, {"data": {"access_token": "tok-abcdef-1"}},
    {"data": {"token": "tok-abcdef-1"}},
])
def test_token_response_shapes_are_all_accepted(answer):
    def handler(method, url, kwargs):
        if method == "POST":
            return 200, answer
        assert kwargs["headers"]["Authorization"] == "Bearer tok-abcdef-1"
        return 200, page_of([7], total_pages=1)

    client, session = fake_client(handler, keys=LOGIN)
    assert client.check_connection() == "Connected: 999 invoices visible"
    method, url, kwargs = session.calls[0]
    assert (method, urlsplit(url).path) == ("POST", "/auth/access_token")
    assert kwargs["headers"]["Client-Key"] == CREDENTIALS["munio"]["client_key"]
    assert kwargs["json"] == {"login": CREDENTIALS["munio"]["login"], "password": CREDENTIALS["munio"]["password"],
                              "grant_type": "password"}
    assert client.http.mask("tok-abcdef-1") == "***"  # registered for masking


def test_token_response_without_a_token_is_bad_response():
    client, _ = fake_client(lambda *a: (200, {"token_type": "Bearer"}), keys=LOGIN)
    with pytest.raises(BadResponseError, match="access_token"):
        client.check_connection()


@pytest.mark.parametrize("status", [400, 401, 422])
def test_refused_login_is_auth_error_without_retry(status):
    client, session = fake_client(lambda *a: (status, {"message": "nope"}), keys=LOGIN)
    with pytest.raises(AuthError):
        client.check_connection()
    assert len(session.calls) == 1


def test_forbidden_data_call_is_not_renewed():
    client, session = fake_client(
        lambda m, url, kw: (200, {"access_token": "tok-abcdef-1"}) if m == "POST" else (403, {"message": "no"}),
        keys=LOGIN)
    with pytest.raises(AuthError):
        client.check_connection()
    assert [c[0] for c in session.calls] == ["POST", "GET"]


def test_login_credential_obtains_a_token_first(munio_sandbox):
    server = munio_sandbox(3, legacy=False)
    client = sandbox_client(server, keys=LOGIN)
    assert client.check_connection() == "Connected: 3 invoices visible"
    assert munio_requests(server) == [("POST", "/auth/access_token"), ("GET", "/invoices")]
    assert client.check_connection()
    assert munio_requests(server)[2:] == [("GET", "/invoices")]  # the token is kept


def test_static_token_needs_no_login(munio_sandbox):
    server = munio_sandbox(1, legacy=False)
    assert sandbox_client(server, keys=STATIC).check_connection() == "Connected: 1 invoice visible"
    assert munio_requests(server) == [("GET", "/invoices")]


def test_refused_token_is_renewed_once(munio_sandbox):
    server = munio_sandbox(30, legacy=False)
    client = sandbox_client(server, keys=LOGIN + ("access_token",), per_page=10)
    pages = client.iter_pages()
    next(pages)
    server.sandbox.providers["munio"].revoke_tokens()  # the static token "expires" mid-run
    assert sum(len(p.invoices) for p in pages) == 20
    assert munio_requests(server) == [("GET", "/invoices"), ("GET", "/invoices"), ("POST", "/auth/access_token"),
                                      ("GET", "/invoices"), ("GET", "/invoices")]


def test_refused_static_token_without_login_is_auth_error(munio_sandbox):
    server = munio_sandbox(5)
    server.sandbox.providers["munio"].revoke_tokens()
    with pytest.raises(AuthError):
        sandbox_client(server, keys=STATIC).check_connection()
    assert munio_requests(server) == [("GET", "/invoices")]


def test_second_refusal_after_renewal_is_auth_error(munio_sandbox):
    server = munio_sandbox(5)
    server.sandbox.add_fault("munio", Fault(kind="bad_signature"))
    server.sandbox.add_fault("munio", Fault(kind="bad_signature", after=1))  # spares the token request
    with pytest.raises(AuthError):
        sandbox_client(server, keys=LOGIN + ("access_token",)).check_connection()
    assert munio_requests(server) == [("GET", "/invoices"), ("POST", "/auth/access_token"), ("GET", "/invoices")]


@pytest.mark.parametrize("override", [{"password": "wrong-password"}, {"login": "someone@else.test"},
                                      {"client_key": "MUNIO-OTHER"}])
def test_wrong_login_credentials_are_auth_errors(munio_sandbox, override):
    server = munio_sandbox(5)
    with pytest.raises(AuthError):
        sandbox_client(server, keys=LOGIN, **override).check_connection()


def test_wrong_client_key_with_static_token_is_auth_error(munio_sandbox):
    server = munio_sandbox(5)
    with pytest.raises(AuthError):
        sandbox_client(server, keys=STATIC, client_key="MUNIO-OTHER").check_connection()


@pytest.mark.parametrize("secrets", [
    {}, {"client_key": "MUNIO-X"}, {"access_token": "tok-secret-1"}, {"client_key": "MUNIO-X", "login": "a@b.c"},
    {"login": "a@b.c", "password": "pw-secret", "access_token": "tok-secret-1"},
    {"client_key": " ", "access_token": "tok-secret-1"},
])
def test_incomplete_secrets_are_configuration_errors(secrets):
    with pytest.raises(ConfigurationError) as info:
        get_client("munio", secrets=secrets)
    for value in secrets.values():
        if value.strip():
            assert value not in str(info.value)


def test_default_base_url_is_the_assumed_api_host():
    client = get_client("munio", secrets={"client_key": "MUNIO-X", "access_token": "tok-x"})
    assert client.http.url("/invoices") == "https://api.munio.id/invoices"


# -- errors from the transport -------------------------------------------------------------------

def test_server_errors_become_transient_after_retries(munio_sandbox):
    server = munio_sandbox(5)
    server.sandbox.add_fault("munio", Fault(kind="503", times=3))
    with pytest.raises(TransientError):
        sandbox_client(server, keys=STATIC).check_connection()
    assert len(munio_requests(server)) == 3  # one try + max_retries=2


def test_rate_limit_is_retried(munio_sandbox):
    server = munio_sandbox(5, legacy=False)
    server.sandbox.add_fault("munio", Fault(kind="429", retry_after=0))
    assert sandbox_client(server, keys=STATIC).check_connection() == "Connected: 5 invoices visible"


def test_token_request_is_retried_on_server_error(munio_sandbox):
    server = munio_sandbox(5)
    server.sandbox.add_fault("munio", Fault(kind="502"))
    assert sandbox_client(server, keys=LOGIN).check_connection()
    assert munio_requests(server)[:2] == [("POST", "/auth/access_token")] * 2


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_broken_body_is_bad_response(munio_sandbox, kind):
    server = munio_sandbox(5)
    server.sandbox.add_fault("munio", Fault(kind=kind))
    with pytest.raises(BadResponseError):
        list(sandbox_client(server, keys=STATIC).iter_pages())


def test_secrets_never_reach_logs_or_errors(munio_sandbox, caplog):
    server = munio_sandbox(12)
    sandbox = server.sandbox.providers["munio"]
    errors = []
    with caplog.at_level(logging.DEBUG):
        client = sandbox_client(server, keys=LOGIN, per_page=5)
        list(client.iter_pages())
        issued = set(sandbox.tokens)
        sandbox.revoke_tokens()
        list(client.iter_pages())  # renews
        issued |= sandbox.tokens
        for bad in ({"password": "wrong-password"}, {"client_key": "MUNIO-WRONG"}):
            try:
                sandbox_client(server, keys=LOGIN, **bad).check_connection()
            except AuthError as exc:
                errors.append(str(exc))
        sandbox.revoke_tokens()
        try:
            sandbox_client(server, keys=STATIC).check_connection()
        except AuthError as exc:
            errors.append(str(exc))
    assert len(issued) == 2 and len(errors) == 3
    text = caplog.text + "\n".join(errors)
    assert "provider=munio" in caplog.text
    for secret in list(CREDENTIALS["munio"].values()) + list(issued) + ["wrong-password", "MUNIO-WRONG"]:
        assert secret not in text


# -- the sandbox population ----------------------------------------------------------------------

def test_full_read_matches_the_sandbox_population(munio_sandbox):
    server = munio_sandbox(394)  # + 6 legacy invoices = 400
    client = sandbox_client(server)
    pages = list(client.iter_pages())
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert [json.loads(p.resume) for p in pages] == [{"p": n, "pp": 100} for n in (1, 2, 3, 4)]
    got = {inv.external_id: inv for p in pages for inv in p.invoices}
    truth = {t["external_id"]: t for t in server.sandbox.providers["munio"].truth()}
    assert len(got) == len(truth) == 400
    for external_id, expected in truth.items():
        inv = got[external_id]
        assert {f: getattr(inv, f) for f in FIELDS} == {f: expected[f] for f in FIELDS}
    # the population covers what the aging report needs
    assert {t["status"] for t in truth.values()} == {"open", "paid", "expired"}
    open_due = [t["due_at"] for t in truth.values() if t["status"] == "open"]
    assert min(open_due) < ANCHOR_MOMENT < max(open_due)  # overdue and not yet due
    raws = [inv.raw for inv in got.values()]
    assert {r["type"] for r in raws} == {"events", "store", "campaigns", None}
    assert any(r["invoice_url"] is None for r in raws) and any(r["transaction_fee"] is None for r in raws)
    issued = [inv.issued_at for p in pages for inv in p.invoices]
    assert issued == sorted(issued, reverse=True)  # newest first, as asked


def test_small_pages_and_empty_population(munio_sandbox):
    server = munio_sandbox(17)  # + 6 legacy invoices = 23
    pages = list(sandbox_client(server, keys=STATIC, per_page=5).iter_pages())
    assert [len(p.invoices) for p in pages] == [5, 5, 5, 5, 3]
    assert len(munio_requests(server)) == 5
    empty = munio_sandbox(0, legacy=False)
    client = sandbox_client(empty, keys=STATIC)
    assert list(client.iter_pages()) == []
    assert client.check_connection() == "Connected: 0 invoices visible"


def test_resume_continues_after_the_committed_page(munio_sandbox):
    server = munio_sandbox(41)  # + 6 legacy invoices = 47
    full = list(sandbox_client(server, per_page=10).iter_pages())
    resumed = list(sandbox_client(server, per_page=10).iter_pages(resume=full[1].resume))
    assert [p.number for p in resumed] == [1, 2, 3]
    assert [inv.external_id for p in resumed for inv in p.invoices] == \
        [inv.external_id for p in full[2:] for inv in p.invoices]
    with pytest.raises(ValueError):
        next(sandbox_client(server).iter_pages(resume="page three"))


def test_mutations_show_up_in_a_reread(munio_sandbox):
    server = munio_sandbox(120)
    sandbox = server.sandbox.providers["munio"]
    truth = list(sandbox.truth())
    pending = next(t for t in truth if t["status"] == "open")
    paid = next(t for t in truth if t["status"] == "paid")
    expired = next(t for t in truth if t["status"] == "expired")
    paid_at = datetime(2026, 10, 31, 8, 0, tzinfo=timezone.utc)
    sandbox.mutate(pending["external_id"], {"status": "paid", "paid_at": paid_at.isoformat()})
    sandbox.mutate(paid["external_id"], {"outstanding": str(paid["amount"])})  # payment reversed: pending again
    reply = requests.post(f"{server.url}/_sandbox/invoices/munio/{expired['external_id']}",
                          json={"status": "paid"}, timeout=5)
    assert reply.status_code == 200 and reply.json()["status"] == "paid"

    got = {inv.external_id: inv for inv in read_all(sandbox_client(server))}
    a, b, c = (got[t["external_id"]] for t in (pending, paid, expired))
    assert (a.status, a.provider_status, a.outstanding, a.paid_amount, a.paid_at) == \
        ("paid", "paid", Decimal(0), pending["amount"], paid_at)
    assert (b.status, b.outstanding, b.paid_at) == ("open", paid["amount"], None)
    assert (c.status, c.outstanding) == ("paid", Decimal(0)) and c.paid_at is not None
    after = {t["external_id"]: t for t in sandbox.truth()}
    assert after[pending["external_id"]]["paid_at"] == paid_at


def test_mutate_rejects_what_munio_cannot_represent(munio_sandbox):
    server = munio_sandbox(20)
    sandbox = server.sandbox.providers["munio"]
    t = next(t for t in sandbox.truth() if t["status"] == "open")
    with pytest.raises(KeyError):
        sandbox.mutate("0" * 32, {"status": "paid"})
    for changes in ({"status": "partially_paid"}, {"outstanding": "1"}, {"status": "open", "outstanding": "0"},
                    {"status": "paid", "paid_at": None}, {"colour": "red"}):
        with pytest.raises(ValueError):
            sandbox.mutate(t["external_id"], changes)
    assert sandbox.mutate(t["external_id"], {"status": "expired"})["outstanding"] == t["amount"]


def test_incremental_read_stops_after_a_page_older_than_the_lookback(munio_sandbox):
    server = munio_sandbox(600)
    since = ANCHOR_MOMENT - timedelta(days=60)
    cutoff = since - timedelta(days=30)
    pages = list(sandbox_client(server, per_page=20).iter_pages(since=since))
    got = {inv.external_id for p in pages for inv in p.invoices}
    truth = list(server.sandbox.providers["munio"].truth())
    assert {t["external_id"] for t in truth if t["issued_at"] >= cutoff} <= got
    assert len(got) < len(truth) / 2
    assert all(inv.issued_at < cutoff for inv in pages[-1].invoices)
    assert any(inv.issued_at >= cutoff for inv in pages[-2].invoices)


# -- the sandbox speaks Munio --------------------------------------------------------------------

def test_sandbox_list_parameters_and_links(munio_sandbox):
    server = munio_sandbox(34)  # + 6 legacy invoices = 40
    body = sandbox_get(server, "/invoices").json()
    pagination = body["meta"]["pagination"]
    assert (len(body["data"]), pagination["per_page"], pagination["total_pages"]) == (15, 15, 3)  # Laravel default
    assert "previous" not in pagination["links"]
    assert query(pagination["links"]["next"])["page"] == "2"
    assert pagination["links"]["next"].startswith(server.base_url("munio") + "/invoices?")

    body = sandbox_get(server, "/invoices", params={"per_page": 500, "page": 1}).json()
    assert body["meta"]["pagination"]["per_page"] == 100 and body["meta"]["pagination"]["links"] == {}

    asc = sandbox_get(server, "/invoices", params={"per_page": 100, "order": "ASC", "orderBy": "id"}).json()["data"]
    desc = sandbox_get(server, "/invoices", params={"per_page": 100}).json()["data"]
    # created_at and id agree on the seeded invoices; the legacy ones (oldest, last newest first)
    # were given ids after the seeded ones
    assert asc == desc[:34][::-1] + desc[34:][::-1] and [d["id"] for d in asc] == sorted(d["id"] for d in asc)
    created_asc = sandbox_get(server, "/invoices", params={"per_page": 100, "order": "ASC"}).json()["data"]
    assert created_asc == desc[::-1]

    events = sandbox_get(server, "/invoices", params={"type": "events", "per_page": 100}).json()
    truth = list(server.sandbox.providers["munio"].truth())
    assert events["meta"]["pagination"]["total"] == sum(t["type"] == "events" for t in truth)
    assert {d["type"] for d in events["data"]} == {"events"}

    for params in ({"order": "sideways"}, {"orderBy": "name"}, {"type": "donations"}, {"per_page": "many"}):
        reply = sandbox_get(server, "/invoices", params=params)
        assert reply.status_code == 422 and "message" in reply.json()


def test_sandbox_auth_answers_like_laravel(munio_sandbox):
    server = munio_sandbox(5)
    assert sandbox_get(server, "/invoices", token="made-up").json() == {"message": "Unauthenticated."}
    assert sandbox_get(server, "/invoices", client_key="MUNIO-OTHER").status_code == 401
    assert requests.get(server.base_url("munio") + "/invoices", timeout=5).status_code == 401
    url = server.base_url("munio") + "/auth/access_token"
    headers = {"Client-Key": CREDENTIALS["munio"]["client_key"]}
    missing = requests.post(url, headers=headers, json={"login": CREDENTIALS["munio"]["login"]}, timeout=5)
    assert missing.status_code == 422 and "password" in missing.json()["errors"]
    form = requests.post(url, headers=headers, timeout=5, data={
        "login": CREDENTIALS["munio"]["login"], "password": CREDENTIALS["munio"]["password"],
        "grant_type": "password"})
    assert form.status_code == 200 and form.json()["token_type"] == "Bearer"
    assert sandbox_get(server, "/invoices", token=form.json()["access_token"]).status_code == 200


def test_sandbox_detail_and_status_update(munio_sandbox):
    server = munio_sandbox(60)
    listing = sandbox_get(server, "/invoices", params={"per_page": 100}).json()["data"]
    item = next(d for d in listing if d["status"] == "pending")
    paid = next(d for d in listing if d["status"] == "paid")
    assert sandbox_get(server, f"/invoices/{item['invoice_hash']}").json() == {"data": item}
    assert sandbox_get(server, "/invoices/" + "0" * 32).status_code == 404

    client = sandbox_client(server, keys=STATIC)
    put = client.http.request_json("PUT", f"/invoices/status/{item['invoice_hash']}", headers=client._headers(),
                                   json={"status": "expired"})
    assert put["data"]["status"] == "expired"
    for target, body in ((paid, {"status": "expired"}), (item, {"status": "paid"}), (item, {})):
        with pytest.raises(BadResponseError):  # 422: paid cannot expire; only `expired` is documented
            client.http.request("PUT", f"/invoices/status/{target['invoice_hash']}", headers=client._headers(),
                                json=body)
    got = {inv.external_id: inv for inv in read_all(client)}
    assert got[item["invoice_hash"]].status == "expired"
    assert got[item["invoice_hash"]].outstanding == Decimal(item["total"])


def test_sandbox_pages_stay_cheap_at_a_million_invoices(munio_sandbox):
    server = munio_sandbox(1_000_000)
    started = time.monotonic()
    last = sandbox_get(server, "/invoices", params={"per_page": 100, "page": 10_000}).json()
    first = sandbox_get(server, "/invoices", params={"per_page": 100, "page": 1}).json()
    assert time.monotonic() - started < 1.0
    legacy = sandbox_get(server, "/invoices", params={"per_page": 100, "page": 10_001}).json()
    assert time.monotonic() - started < 1.0
    assert last["meta"]["pagination"]["total_pages"] == 10_001 and len(last["data"]) == 100
    assert last["meta"]["pagination"]["total"] == 1_000_006 and len(legacy["data"]) == 6
    assert last["data"][-1]["id"] <= 3 and first["data"][0]["id"] > 2_999_000
    oldest = last["data"][-1]  # the oldest seeded invoice; only the legacy ones are older
    assert sandbox_get(server, f"/invoices/{oldest['invoice_hash']}").json()["data"] == oldest
    assert datetime.fromisoformat(oldest["created_at"]) >= ANCHOR_MOMENT - timedelta(days=730)
    assert all(datetime.fromisoformat(d["created_at"]) < ANCHOR_MOMENT - timedelta(days=730) for d in legacy["data"])
    assert sandbox_get(server, f"/invoices/{legacy['data'][-1]['invoice_hash']}").json()["data"] == legacy["data"][-1]


# -- the sandbox's old debt (legacy invoices) ----------------------------------------------------

def legacy_truth(server) -> list[dict]:
    """The truth of the legacy invoices (the ones created before the seeded population), oldest first."""
    oldest_seeded = ANCHOR_MOMENT - timedelta(days=720)
    return [t for t in server.sandbox.providers["munio"].truth() if t["issued_at"] < oldest_seeded]


def test_legacy_invoices_are_listed_last_newest_first_and_served_by_detail(munio_sandbox):
    import time_machine

    server = munio_sandbox(37)
    sandbox = server.sandbox.providers["munio"]
    plan = sorted(sandbox.legacy, key=lambda lg: lg.issued)
    with time_machine.travel(ANCHOR_MOMENT, tick=False):
        old = legacy_truth(server)
        assert len(old) == len(plan) == 6 and len(list(sandbox.truth())) == 43
        assert [t["issued_at"].date() for t in old] == [lg.issued for lg in plan]
        assert [t["due_at"].date() for t in old] == [lg.due for lg in plan]
        assert [t["provider_status"] for t in old] == ["pending", "expired", "pending", "expired", "pending",
                                                       "pending"]  # open, partial, open, other, late, late
        assert {t["status"] for t in old} == {"open", "expired"} and all(t["outstanding"] == t["amount"] for t in old)
        # recognisable hashes (the tail xor the seed key is 0xfffffc18 + key) and ids after every seeded one
        assert [int(t["external_id"][24:], 16) ^ sandbox._key() for t in old] == [0xFFFFFC18 + lg.key for lg in plan]
        assert min(int(t["number"]) for t in old) > max(int(t["number"]) for t in sandbox.truth()
                                                       if t not in old) and len({t["number"] for t in old}) == 6

        pages = [sandbox_get(server, "/invoices", params={"per_page": 10, "page": n}).json() for n in (4, 5)]
        assert [p["meta"]["pagination"]["total"] for p in pages] == [43, 43]
        assert [p["meta"]["pagination"]["total_pages"] for p in pages] == [5, 5]
        assert ["next" in p["meta"]["pagination"]["links"] for p in pages] == [True, False]
        tail = pages[0]["data"][7:] + pages[1]["data"]
        assert len(pages[1]["data"]) == 3
        assert [d["invoice_hash"] for d in tail] == [t["external_id"] for t in old][::-1]  # oldest last
        assert [d["created_at"] for d in tail] == sorted((d["created_at"] for d in tail), reverse=True)
        assert pages[0]["data"][6]["created_at"] > tail[0]["created_at"]  # after every seeded invoice
        for item in tail:
            assert sandbox_get(server, f"/invoices/{item['invoice_hash']}").json() == {"data": item}
        ascending = sandbox_get(server, "/invoices", params={"per_page": 6, "order": "ASC"}).json()["data"]
        assert ascending == tail[::-1]

        got = read_all(sandbox_client(server, per_page=10))  # the client checks newest first too
        assert [inv.external_id for inv in got[-6:]] == [t["external_id"] for t in old][::-1]
        by_id = {inv.external_id: inv for inv in got}
        for expected in old:
            inv = by_id[expected["external_id"]]
            assert {f: getattr(inv, f) for f in FIELDS} == {f: expected[f] for f in FIELDS}
        pages = list(sandbox_client(server, per_page=10).iter_pages(since=ANCHOR_MOMENT - timedelta(days=7)))
        assert all(inv.external_id not in {t["external_id"] for t in old} for p in pages for inv in p.invoices)


def test_late_payers_are_pending_until_paid_on_then_paid(munio_sandbox):
    import time_machine

    server = munio_sandbox(3)
    sandbox = server.sandbox.providers["munio"]
    late = sorted((lg for lg in sandbox.legacy if lg.kind == "late"), key=lambda lg: lg.issued)
    assert len(late) == 2
    old = legacy_truth(server)
    hashes = [t["external_id"] for t in old[-2:]]  # the two late payers are the newest legacy invoices
    for legacy, external_id in zip(late, hashes):
        paid_on = datetime(legacy.paid_on.year, legacy.paid_on.month, legacy.paid_on.day, tzinfo=timezone.utc)
        for moment, status in ((ANCHOR_MOMENT, "pending"), (paid_on - timedelta(seconds=1), "pending"),
                               (paid_on, "paid"), (paid_on + timedelta(days=400), "paid")):
            with time_machine.travel(moment, tick=False):
                detail = sandbox_get(server, f"/invoices/{external_id}").json()["data"]
                listed = {d["invoice_hash"]: d for d in
                          sandbox_get(server, "/invoices", params={"per_page": 100}).json()["data"]}
                truth = {t["external_id"]: t for t in sandbox.truth()}[external_id]
                inv = {inv.external_id: inv for inv in read_all(sandbox_client(server, keys=STATIC))}[external_id]
                assert detail == listed[external_id] and detail["status"] == truth["provider_status"] == status
                if status == "paid":
                    assert detail["paid_at"] == paid_on.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    assert (truth["status"], truth["outstanding"], truth["paid_at"]) == ("paid", Decimal(0), paid_on)
                    assert (inv.status, inv.outstanding, inv.paid_amount, inv.paid_at) == \
                        ("paid", Decimal(0), truth["amount"], paid_on)
                else:
                    assert detail["paid_at"] is None and truth["paid_at"] is None
                    assert (inv.status, inv.outstanding) == ("open", truth["amount"])


def test_mutate_and_status_update_work_on_legacy_invoices(munio_sandbox):
    import time_machine

    server = munio_sandbox(10)
    sandbox = server.sandbox.providers["munio"]
    with time_machine.travel(ANCHOR_MOMENT, tick=False):
        open_one, partial, _, other, late, _ = legacy_truth(server)
        paid_at = datetime(2026, 10, 20, 9, 30, tzinfo=timezone.utc)
        changed = sandbox.mutate(open_one["external_id"], {"status": "paid", "paid_at": paid_at.isoformat()})
        assert (changed["status"], changed["outstanding"], changed["paid_at"]) == ("paid", Decimal(0), paid_at)
        reply = requests.post(f"{server.url}/_sandbox/invoices/munio/{other['external_id']}",
                              json={"status": "paid"}, timeout=5)
        assert reply.status_code == 200 and reply.json()["status"] == "paid"
        with pytest.raises(ValueError):
            sandbox.mutate(partial["external_id"], {"outstanding": "1"})  # still no partial payments
        client = sandbox_client(server, keys=STATIC)
        put = client.http.request_json("PUT", f"/invoices/status/{late['external_id']}", headers=client._headers(),
                                       json={"status": "expired"})
        assert put["data"]["status"] == "expired"
        got = {inv.external_id: inv for inv in read_all(client)}
        assert (got[open_one["external_id"]].status, got[open_one["external_id"]].paid_at) == ("paid", paid_at)
        assert got[other["external_id"]].status == "paid" and got[partial["external_id"]].status == "expired"
        assert got[late["external_id"]].status == "expired"
    paid_on = max(lg.paid_on for lg in sandbox.legacy if lg.kind == "late")
    with time_machine.travel(datetime(paid_on.year, paid_on.month, paid_on.day, 12, tzinfo=timezone.utc), tick=False):
        after = {t["external_id"]: t for t in sandbox.truth()}
        assert after[late["external_id"]]["provider_status"] == "expired"  # the override wins over the clock
        assert after[legacy_truth(server)[-1]["external_id"]]["status"] == "paid"  # the untouched late payer
        sandbox.mutate(legacy_truth(server)[-1]["external_id"], {"status": "open"})
        assert legacy_truth(server)[-1]["status"] == "open"
    sandbox.reset()
    with time_machine.travel(ANCHOR_MOMENT, tick=False):
        assert legacy_truth(server)[0] == open_one  # reset drops the changes


def test_legacy_false_removes_the_old_debt(munio_sandbox):
    server = munio_sandbox(0)
    old = legacy_truth(server)
    body = sandbox_get(server, "/invoices", params={"per_page": 100}).json()
    assert len(old) == 6 and body["meta"]["pagination"]["total"] == 6
    assert [d["invoice_hash"] for d in body["data"]] == [t["external_id"] for t in old][::-1]
    assert sandbox_client(server, keys=STATIC).check_connection() == "Connected: 6 invoices visible"

    server = munio_sandbox(5, legacy=False)
    sandbox = server.sandbox.providers["munio"]
    assert sandbox.legacy == () and len(list(sandbox.truth())) == 5
    body = sandbox_get(server, "/invoices", params={"per_page": 100}).json()
    assert body["meta"]["pagination"]["total"] == 5 and len(body["data"]) == 5
    assert sandbox_get(server, f"/invoices/{old[0]['external_id']}").status_code == 404
    with pytest.raises(KeyError):
        sandbox.mutate(old[0]["external_id"], {"status": "paid"})
    assert len(read_all(sandbox_client(server))) == 5

    with_legacy = munio_sandbox(5)
    assert [t["external_id"] for t in legacy_truth(with_legacy)] == [t["external_id"] for t in old]  # any size
