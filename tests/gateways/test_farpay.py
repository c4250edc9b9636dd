"""FarPay client and sandbox: documented payloads, webhook signing, the status/window fan-out,
errors, secret masking, and a full read compared with the sandbox's ground truth."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from gateways import AuthError, BadResponseError, ConfigurationError, RemoteInvoice, TransientError, get_client
from gateways import status as st
from gateways.farpay import STATUS_MAP, sign_webhook, verify_webhook
from gateways.sandbox import CREDENTIALS, Fault
from gateways.sandbox.core import Sandbox
from gateways.sandbox.farpay import ID_BASE, LEGACY_ID_BASE
from tests.gateways.conftest import ANCHOR, credential

FIXTURES = Path(__file__).parent / "fixtures" / "farpay"
KEY = CREDENTIALS["farpay"]["api_key"]
WEBHOOK_SECRET = CREDENTIALS["farpay"]["webhook_secret"]
NOW = datetime(2026, 11, 1, 5, 0, tzinfo=timezone.utc)  # the sandbox ANCHOR, as the client's clock
FAST = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2)}
FIELDS = ("status", "provider_status", "currency", "number", "customer_name", "customer_email", "customer_ref",
          "amount", "outstanding", "paid_amount", "issued_at", "due_at", "payment_channel")


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


# -- helpers -----------------------------------------------------------------------------------

class FakeFarPay(requests.adapters.BaseAdapter):
    """Answers https://api.farpay.io from `handler(path, query) -> (status, body)`; records calls."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def send(self, request, **kwargs):
        split = urlsplit(request.url)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.calls.append((split.path, query, dict(request.headers)))
        status, body = self.handler(split.path, query)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        response.headers["Content-Type"] = "application/json"
        response.url, response.request = request.url, request
        return response

    def close(self):
        pass


def fake_client(handler, *, options=None, now=datetime(2018, 1, 15, tzinfo=timezone.utc), secrets=None):
    adapter = FakeFarPay(handler)
    session = requests.Session()
    session.mount("https://", adapter)
    # One step after another unless a test asks for slices (the sliced reads: their own tests).
    options = {"read_concurrency": 1, **(options or {})}
    client = get_client("farpay", base_url="", secrets=secrets or {"api_key": KEY}, options=options,
                        session=session, now=lambda: now, **FAST)
    return client, adapter


def sandbox_client(server, **options):
    kwargs = credential("farpay", server)
    kwargs["options"].update({"read_concurrency": 1, **options})  # sliced reads: their own tests
    return get_client("farpay", now=lambda: NOW, **kwargs, **FAST)


def read_all(client, **kwargs) -> dict[str, RemoteInvoice]:
    found: dict[str, RemoteInvoice] = {}
    for page in client.iter_pages(**kwargs):
        for invoice in page.invoices:
            assert invoice.external_id not in found, f"{invoice.external_id} read twice"
            found[invoice.external_id] = invoice
    return found


def assert_matches_truth(got: dict[str, RemoteInvoice], truth: dict[str, dict]) -> None:
    assert set(got) == set(truth)
    wrong = [(eid, f, getattr(inv, f), truth[eid][f]) for eid, inv in got.items() for f in FIELDS
             if getattr(inv, f) != truth[eid][f]]
    assert not wrong, wrong[:5]


# -- documented payloads -----------------------------------------------------------------------

def test_documented_list_and_detail_samples_parse():
    refs, detail = fixture("invoice-references.json"), fixture("invoice-detail.json")

    def handler(path, query):
        if path == "/v2/invoices":
            return 200, refs if query.get("paymentStatus") in ("100", None) else []
        assert path == "/v2/invoices/123"
        return 200, detail

    client, adapter = fake_client(handler)
    pages = list(client.iter_pages())
    assert [len(p.invoices) for p in pages] == [1]
    assert pages[0].invoices[0] == RemoteInvoice(
        external_id="123", status=st.OPEN, provider_status="100", currency="DKK", number="string",
        customer_name="Pernille Badenhofen", customer_email="pb@company.dk", customer_ref="1570",
        amount=Decimal(125), outstanding=Decimal(125), paid_amount=Decimal(0),
        issued_at=datetime(2017, 6, 23, tzinfo=timezone.utc),  # InvoiceDate "23-06-2017"
        due_at=datetime(2017, 6, 23, 13, 20, 13, 852000, tzinfo=timezone.utc),
        payment_channel="MobilePayInvoice")
    raw = pages[0].invoices[0].raw
    assert raw["SendStatus"] == "Queue" and raw["Detail"]["Recepient"]["CustomerNumber"] == "1570"
    assert "PdfInvoice" not in raw["Detail"]  # base64 PDFs are not kept
    # Default host and path, the documented headers on every call, one detail call, numbers as status.
    assert sum(1 for path, _, _ in adapter.calls if path == "/v2/invoices/123") == 1
    for path, query, headers in adapter.calls:
        assert headers["X-API-KEY"] == KEY and headers["Accept"] == "application/json"
        assert query.get("paymentStatus", "100").isdigit()
        for name in ("fromDueDate", "toDueDate"):
            if name in query:
                date.fromisoformat(query[name])


def test_detail_sample_as_list_item_without_details():
    """`Created`/`PaymentDueDate` without Z are UTC; with details="never" the currency comes from the
    options, customer fields stay empty and issued_at is Created."""
    detail = fixture("invoice-detail.json")
    ref = {k: detail[k] for k in ("Id", "Created", "InvoiceNumber", "PaymentDueDate", "InvoiceAmount",
                                  "ToBePaidAmount", "PaymentType")}
    client, adapter = fake_client(lambda path, q: (200, [ref] if q.get("paymentStatus") == "100" else []),
                                  options={"details": "never", "currency": "EUR"})
    (invoice,) = read_all(client).values()
    assert (invoice.external_id, invoice.number, invoice.currency, invoice.customer_name) == ("12345678", "", "EUR", "")
    assert invoice.issued_at == datetime(2017, 6, 23, 8, 29, 36, 57000, tzinfo=timezone.utc)
    assert invoice.due_at == datetime(2017, 7, 3, tzinfo=timezone.utc)
    assert all(path == "/v2/invoices" for path, _, _ in adapter.calls)


def test_detail_variants_partial_payment_credit_note_and_spelling():
    refs = [
        {"Id": 1, "PaymentDueDate": "2017-06-10T00:00:00Z", "InvoiceAmount": 200, "ToBePaidAmount": Decimal("50.5"),
         "Created": "2017-06-01T10:00:00Z"},
        {"Id": 2, "PaymentDueDate": "2017-06-11T00:00:00", "InvoiceAmount": 80, "ToBePaidAmount": 80},
        # Should FarPay ever send a status on the item, it wins over the filter.
        {"Id": 3, "PaymentDueDate": "2017-06-12", "InvoiceAmount": 10, "ToBePaidAmount": 0, "PaymentStatus": "Paid"},
    ]
    details = {
        "/v2/invoices/1": {"Currency": "eur", "Recipient": {"CustomerNumber": 77, "Name": "Jens", "Email": None},
                           "InvoiceDate": "2017-05-31"},
        "/v2/invoices/2": {"Currency": "NOK", "InvoiceTypeCode": "PCM", "Recepient": None},
        "/v2/invoices/3": {"Currency": "DKK"},
    }

    def handler(path, query):
        if path == "/v2/invoices":
            return 200, refs if query.get("paymentStatus") == "100" else []
        return 200, details[path]

    got = read_all(fake_client(handler)[0])
    one, two, three = got["1"], got["2"], got["3"]
    assert (one.status, one.provider_status, one.currency, one.customer_ref, one.customer_name) == (
        st.PARTIALLY_PAID, "100", "EUR", "77", "Jens")
    assert (one.outstanding, one.paid_amount, one.issued_at) == (
        Decimal("50.5"), Decimal("149.5"), datetime(2017, 5, 31, tzinfo=timezone.utc))
    assert (two.status, two.currency, two.amount, two.outstanding, two.paid_amount) == (
        st.OPEN, "NOK", Decimal(-80), Decimal(-80), Decimal(0))  # a credit note: negative
    assert (three.status, three.provider_status) == (st.PAID, "Paid")


def test_status_map_covers_states_names_and_webhook_events(caplog):
    client = get_client("farpay", secrets={"api_key": KEY})
    expected = {
        "100": st.OPEN, "NotPaid": st.OPEN, "Not Paid": st.OPEN, "200": st.PAID, "Paid": st.PAID,
        "300": st.PROCESSING, "Scheduled": st.PROCESSING, "400": st.PROCESSING, "Pending": st.PROCESSING,
        "500": st.FAILED, "Rejected": st.FAILED, "600": st.CHARGED_BACK, "Chargeback": st.CHARGED_BACK,
        "700": st.FAILED, "Payment failed": st.FAILED, "PaymentFailed": st.FAILED, "1000": st.UNKNOWN,
        "N/A": st.UNKNOWN, "Succeeded": st.PAID, "Canceled": st.CANCELLED, "210": st.CANCELLED,
        "Failed": st.FAILED, "220": st.FAILED, "RejectedByCustomer": st.FAILED, "230": st.FAILED,
        "ReimbursedByBank": st.CHARGED_BACK, "240": st.CHARGED_BACK, "notpaid": st.OPEN, "PAID": st.PAID,
    }
    assert {k: client.map_status(k) for k in expected} == expected
    assert set(STATUS_MAP.values()) <= set(st.ALL)
    event = fixture("payment-webhook.json")["Payment"]["Event"]
    assert client.map_status(event) == st.PAID
    with caplog.at_level(logging.WARNING, logger="gateways"):
        assert client.map_status("999") == client.map_status("999") == st.UNKNOWN
    assert caplog.text.count("'999'") == 1


# -- webhook signatures (Standard Webhooks) ----------------------------------------------------

VECTOR = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}')
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_published_vector_reproduces():
    msg_id, stamp, body = VECTOR
    assert sign_webhook(WEBHOOK_SECRET, msg_id, stamp, body) == VECTOR_SIGNATURE
    assert verify_webhook(WEBHOOK_SECRET, msg_id, stamp, body, VECTOR_SIGNATURE, now=1614265330 + 299)


def test_webhook_verification_rejects_tampering_and_replays():
    msg_id, stamp, body = VECTOR
    check = lambda **kw: verify_webhook(**{"secret": WEBHOOK_SECRET, "msg_id": msg_id, "timestamp": stamp,
                                           "body": body, "signature_header": VECTOR_SIGNATURE,
                                           "now": int(stamp), **kw})
    assert check()
    assert check(signature_header=f"v1,bm90IHRoaXMgb25l {VECTOR_SIGNATURE}")  # rotation: any entry may match
    assert not check(body=b'{"test": 2432232315}')
    assert not check(msg_id="msg_other")
    assert not check(secret="whsec_" + base64.b64encode(b"another secret key!!").decode())
    assert not check(signature_header=VECTOR_SIGNATURE.replace("v1,", "v2,"))
    assert not check(signature_header="")
    assert not check(now=int(stamp) + 301)
    assert not check(now=datetime.fromtimestamp(int(stamp) - 301, timezone.utc))
    assert not check(timestamp="yesterday")


def test_webhook_secret_that_is_not_base64_is_used_as_raw_utf8():
    secret = "my shared secret!"  # '!' and spaces: not base64
    digest = hmac.new(secret.encode(), b"id1.1700000000.{}", hashlib.sha256).digest()
    header = "v1," + base64.b64encode(digest).decode()
    assert sign_webhook(secret, "id1", "1700000000", b"{}") == header
    assert verify_webhook(secret, "id1", "1700000000", b"{}", header, now=1700000000)


def test_sandbox_payment_webhook_is_signed_with_the_credential_secret(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=50)
    farpay = server.sandbox.providers["farpay"]
    external_id = next(farpay.truth())["external_id"]
    headers, body = farpay.payment_webhook(external_id, "ReimbursedByBank", timestamp=1700000000)
    assert json.loads(body)["Payment"]["Event"] == "ReimbursedByBank"
    assert verify_webhook(WEBHOOK_SECRET, headers["webhook-id"], headers["webhook-timestamp"], body,
                          headers["webhook-signature"], now=1700000000)


# -- the full read against the sandbox ---------------------------------------------------------

def test_full_read_returns_exactly_the_sandbox_population(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=400)
    truth = {t["external_id"]: t for t in server.sandbox.providers["farpay"].truth()}
    statuses = {t["provider_status"] for t in truth.values()}
    assert statuses == {"100", "200", "300", "400", "500", "600", "700", "1000"}
    assert any(t["due_at"] is None for t in truth.values()) and any(t["amount"] < 0 for t in truth.values())
    assert any(t["status"] == st.PARTIALLY_PAID for t in truth.values())

    assert_matches_truth(read_all(sandbox_client(server)), truth)  # the default ("all") mirrors exactly
    # "receivable" skips the unbounded undated Paid read: exactly the undated paid invoices are missing.
    receivable = read_all(sandbox_client(server, undated="receivable"))
    assert_matches_truth(receivable, {k: t for k, t in truth.items()
                                      if not (t["due_at"] is None and t["status"] == st.PAID)})
    # Every list call carried the documented headers, a numeric status and yyyy-MM-dd dates.
    for logged in server.sandbox.requests["farpay"]:
        assert logged["headers"]["accept"] == "application/json"
        assert all(v.isdigit() for v in logged["query"].get("paymentStatus", []))


def test_paging_stops_and_resume_continues_after_the_marker(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=300)
    client = sandbox_client(server, window_months="3", details="never")
    pages = list(client.iter_pages())
    # 2024-11-01..2027-11-01 in 3-month windows = 13 windows x (7 statuses + N/A) + 7 undated reads.
    assert server.sandbox.stats["farpay"] == 13 * 8 + 7
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert len({p.resume for p in pages}) == len(pages)

    # Resume after a mid-window status: the N/A step of that window must re-learn what was read.
    k = next(n for n, p in enumerate(pages) if json.loads(p.resume).get("s") == 300)
    rest = list(sandbox_client(server, window_months="3", details="never").iter_pages(resume=pages[k].resume))
    assert [p.resume for p in rest] == [p.resume for p in pages[k + 1:]]
    assert [[i.external_id for i in p.invoices] for p in rest] == [[i.external_id for i in p.invoices]
                                                                     for p in pages[k + 1:]]
    assert rest[0].number == 1
    assert list(client.iter_pages(resume=pages[-1].resume)) == []


def test_incremental_read_covers_owed_states_and_recent_paid(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=400)
    farpay = server.sandbox.providers["farpay"]
    truth = {t["external_id"]: t for t in farpay.truth()}
    recent_open = next(k for k, t in truth.items()
                       if t["status"] == st.OPEN and t["due_at"] and t["due_at"].date() > date(2026, 9, 1))
    farpay.mutate(recent_open, {"status": "paid"})
    truth[recent_open] = next(t for t in farpay.truth() if t["external_id"] == recent_open)

    got = read_all(sandbox_client(server), since=NOW - timedelta(days=1))
    paid_from = datetime(2026, 7, 1, tzinfo=timezone.utc)  # the window holding since - 3 months
    window_start = datetime(2024, 11, 1, tzinfo=timezone.utc)  # owed debt older than that: full syncs only
    expected = {k: t for k, t in truth.items() if t["due_at"] is not None and t["due_at"] >= window_start and (
        t["provider_status"] in ("100", "300", "400", "500", "600", "700") or t["due_at"] >= paid_from)}
    assert_matches_truth(got, expected)
    assert got[recent_open].status == st.PAID


def test_mutations_show_up_in_a_reread_with_the_same_client(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=250)
    farpay = server.sandbox.providers["farpay"]
    client = sandbox_client(server, undated="all", window_months="2")
    read_all(client)  # fills the detail cache: it must not make states stale
    truth = {t["external_id"]: t for t in farpay.truth()}
    # Seeded invoices only: a legacy one due before the window that gets paid leaves the full read
    # (Paid is not read that far back; the sync engine looks it up by id).
    pick = lambda cond: next(k for k, t in truth.items() if int(k) >= ID_BASE and cond(t))
    open_one = pick(lambda t: t["status"] == st.OPEN and t["amount"] > 0)
    paid_one = pick(lambda t: t["status"] == st.PAID and t["due_at"] is not None)
    undated = pick(lambda t: t["due_at"] is None and t["status"] != st.PAID)
    other_open = pick(lambda t: t["status"] == st.OPEN and t["external_id"] != open_one and t["amount"] > 0)
    farpay.mutate(open_one, {"status": "paid", "paid_at": "2026-10-30T10:00:00Z"})
    farpay.mutate(paid_one, {"status": "charged_back"})
    farpay.mutate(undated, {"status": "paid"})
    partial = farpay.mutate(other_open, {"outstanding": "1.00"})
    assert partial["status"] == st.PARTIALLY_PAID and partial["outstanding"] == "1.00"
    with pytest.raises(KeyError):
        farpay.mutate("1", {"status": "paid"})
    with pytest.raises(ValueError):
        farpay.mutate(open_one, {"status": "cancelled"})

    got = read_all(client)
    assert_matches_truth(got, {t["external_id"]: t for t in farpay.truth()})
    assert (got[open_one].status, got[open_one].outstanding) == (st.PAID, 0)
    assert got[paid_one].status == st.CHARGED_BACK and got[paid_one].outstanding == got[paid_one].amount
    assert got[undated].status == st.PAID and got[other_open].status == st.PARTIALLY_PAID


def test_check_connection_reads_one_day(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=3000)
    message = sandbox_client(server).check_connection()
    assert message.startswith("Connected: ") and "due 2026-11-01 visible" in message
    (logged,) = server.sandbox.requests["farpay"]
    assert logged["query"] == {"fromDueDate": ["2026-11-01"], "toDueDate": ["2026-11-01"]}


# -- errors and secrets ------------------------------------------------------------------------

def test_bad_key_is_an_auth_error_in_every_documented_form(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=20)
    kwargs = credential("farpay", server)
    kwargs["secrets"]["api_key"] = "wrong-key-123"
    with pytest.raises(AuthError) as caught:
        get_client("farpay", now=lambda: NOW, **kwargs, **FAST).check_connection()
    assert caught.value.status_code == 401

    refused = fixture("auth-failure.json")
    for status in (200, 400, 403):
        client, _ = fake_client(lambda path, q, s=status: (s, refused))
        with pytest.raises(AuthError):
            client.check_connection()
    # ... also when it comes from the detail call.
    client, _ = fake_client(lambda path, q: (200, [{"Id": 5, "PaymentDueDate": "2017-06-01"}])
                            if path == "/v2/invoices" else (200, refused))
    with pytest.raises(AuthError):
        list(client.iter_pages())


def test_transient_and_bad_response_errors(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=20)
    client = sandbox_client(server)
    server.sandbox.add_fault("farpay", Fault(kind="503", times=3))
    with pytest.raises(TransientError):
        client.check_connection()
    server.sandbox.add_fault("farpay", Fault(kind="503", times=2))
    assert client.check_connection().startswith("Connected")  # retried within max_retries
    for kind in ("malformed", "truncated"):
        server.sandbox.add_fault("farpay", Fault(kind=kind))
        with pytest.raises(BadResponseError):
            client.check_connection()
    with pytest.raises(BadResponseError) as caught:
        sandbox_client(server, version="v3").check_connection()
    assert caught.value.status_code == 404

    def broken(body, status=200):
        return fake_client(lambda path, q: (status, body))[0]

    for body in ({"Invoices": []}, [{"InvoiceAmount": 5}], ["x"]):
        with pytest.raises(BadResponseError):
            broken(body).check_connection()
    with pytest.raises(BadResponseError):
        list(broken([{"Id": 1, "PaymentDueDate": "soon"}]).iter_pages())
    with pytest.raises(BadResponseError):
        list(broken([{"Id": 1, "PaymentDueDate": "2017-06-01", "InvoiceAmount": "lots"}],).iter_pages())
    with pytest.raises(BadResponseError) as caught:
        broken({"Message": f"10001::Invalid filter near {KEY}"}, 400).check_connection()
    assert "10001::Invalid filter" in str(caught.value) and KEY not in str(caught.value)


def test_configuration_errors():
    with pytest.raises(ConfigurationError):
        get_client("farpay", secrets={})
    for options in ({"details": "sometimes"}, {"version": "v2/../admin"}, {"undated": "maybe"},
                    {"window_months": "0"}, {"na_invoices": "guess"}):
        with pytest.raises(ConfigurationError):
            get_client("farpay", secrets={"api_key": KEY}, options=options)
    client = get_client("farpay", secrets={"api_key": KEY})
    for marker in ("garbage", '{"w": "2025-13-01", "s": 100}', '{"s": 100}', '{"u": 42}'):
        with pytest.raises(ConfigurationError):
            list(client.iter_pages(resume=marker))


def test_secrets_never_reach_logs_or_messages(sandbox_factory, caplog):
    caplog.set_level(logging.DEBUG)
    server = sandbox_factory(providers=("farpay",), size=60)
    client = sandbox_client(server, window_months="6")
    messages = [client.check_connection()]
    read_all(client)
    for kind, error in (("bad_signature", AuthError), ("503", TransientError), ("malformed", BadResponseError)):
        server.sandbox.add_fault("farpay", Fault(kind=kind, times=3 if kind == "503" else 1))
        with pytest.raises(error) as caught:
            client.check_connection()
        messages.append(str(caught.value))
    kwargs = credential("farpay", server)
    kwargs["secrets"]["api_key"] = "wrong-key-123"
    with pytest.raises(AuthError) as caught:
        get_client("farpay", **kwargs, **FAST).check_connection()
    messages.append(str(caught.value))
    text = caplog.text + "\n".join(messages)
    assert "provider=farpay" in caplog.text
    for secret in (KEY, WEBHOOK_SECRET, "wrong-key-123"):
        assert secret not in text


# -- the sandbox itself ------------------------------------------------------------------------

def test_sandbox_validates_like_farpay(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=20)
    url = server.base_url("farpay")
    json_headers = {"X-API-KEY": KEY, "Accept": "application/json"}
    get = lambda path, headers=json_headers, **params: requests.get(url + path, headers=headers, params=params,
                                                                    timeout=5)
    assert get("/v2/invoices").status_code == 200
    bad_date = get("/v2/invoices", fromDueDate="01-11-2026")
    assert bad_date.status_code == 400 and "Message" in bad_date.json()
    for status in ("1000", "Paid", "150"):
        assert get("/v2/invoices", paymentStatus=status).status_code == 400
    assert get("/v1/invoices").status_code == 404
    assert get("/v2/invoices/99").status_code == 404
    assert get("/v2/invoices", headers={"X-API-KEY": KEY, "Accept": "application/xml"}).status_code == 406
    assert get("/v2/invoices", headers={"X-API-KEY": KEY}).status_code == 406
    refused = get("/v2/invoices", headers={"X-API-KEY": "nope", "Accept": "application/json"})
    assert refused.status_code == 401 and refused.json() == fixture("auth-failure.json")
    detail = get("/v2/invoices/7300001").json()
    assert detail["Currency"] in ("DKK", "EUR", "NOK") and "Recepient" in detail
    assert isinstance(detail["PaymentStatus"], int) and isinstance(detail["SendStatus"], int)


def test_sandbox_select_matches_brute_force_and_stays_output_sized(monkeypatch):
    small = Sandbox(anchor=ANCHOR, size=3000, seed=7, providers=("farpay",)).providers["farpay"]
    windows = [(None, None), (date(2025, 3, 1), date(2025, 3, 31)), (date(2026, 10, 15), None),
               (None, date(2025, 1, 10)), (date(2030, 1, 1), date(2030, 2, 1))]
    legacy = sorted(small.legacy, key=lambda lg: lg.due)  # the old debt comes first, in due order
    records = [small.record(small._index(LEGACY_ID_BASE + lg.key)) for lg in legacy]
    records += [small.record(i) for i in range(small.size)]
    for status in (100, 200, 300, 400, 500, 600, 700, None):
        for start, end in windows:
            dated = start is not None or end is not None
            expected = [r["index"] for r in records if (status is None or r["status"] == status) and (
                not dated or (r["due"] is not None and (start is None or r["due"] >= start)
                              and (end is None or r["due"] <= end)))]
            assert small.select(status, start, end) == expected, (status, start, end)

    big = Sandbox(anchor=ANCHOR, size=1_000_000, providers=("farpay",)).providers["farpay"]
    calls = 0
    undated = big._undated

    def counting(i):
        nonlocal calls
        calls += 1
        return undated(i)

    monkeypatch.setattr(big, "_undated", counting)
    found = big.select(600, date(2025, 1, 1), date(2025, 1, 31))
    assert found and calls <= len(found) * 2  # touched only candidates, never the population


# -- the sandbox's old debt (legacy invoices) --------------------------------------------------

LEGACY_IDS = [str(LEGACY_ID_BASE + k) for k in range(6)]
BEFORE_PAID = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # before either late payer pays
TRUTH_OF = {"600": st.CHARGED_BACK, "700": st.FAILED}  # the "other" legacy invoice's two possible states


def farpay_get(server, path, **params):
    answer = requests.get(server.base_url("farpay") + path, params=params, timeout=5,
                          headers={"X-API-KEY": KEY, "Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    return answer.json(parse_float=Decimal)


def listed(server, **params) -> list[str]:
    return [str(ref["Id"]) for ref in farpay_get(server, "/v2/invoices", **params)]


def test_sandbox_legacy_invoices_are_listed_by_status_and_due_and_served_in_detail(sandbox_factory):
    import time_machine

    with time_machine.travel(BEFORE_PAID, tick=False):
        for size in (0, 40):
            server = sandbox_factory(providers=("farpay",), size=size)
            farpay = server.sandbox.providers["farpay"]
            plan = {str(LEGACY_ID_BASE + lg.key): lg for lg in farpay.legacy}
            assert list(plan) == LEGACY_IDS and [lg.kind for lg in plan.values()] == [
                "open", "partial", "open", "other", "late", "late"]
            truth = {t["external_id"]: t for t in farpay.truth()}
            assert list(truth)[:6] == LEGACY_IDS and len(truth) == size + 6  # oldest first
            if size:  # the same ground-truth shape as a seeded invoice
                assert all(set(truth[k]) == set(truth[str(ID_BASE)]) for k in LEGACY_IDS)
            other = truth[LEGACY_IDS[3]]["provider_status"]
            assert other in ("600", "700") and [truth[k]["status"] for k in LEGACY_IDS] == [
                st.OPEN, st.PARTIALLY_PAID, st.OPEN, TRUTH_OF[other], st.OPEN, st.OPEN]

            everything = listed(server)
            assert everything[:6] == LEGACY_IDS and len(everything) == size + 6
            assert all(int(k) >= ID_BASE for k in everything[6:])
            owed = [LEGACY_IDS[k] for k in (0, 1, 2, 4, 5)]
            assert [k for k in listed(server, paymentStatus="100") if k in plan] == owed
            assert [k for k in listed(server, paymentStatus=other) if k in plan] == [LEGACY_IDS[3]]
            for status in {"200", "300", "400", "500", "600", "700"} - {other}:
                assert not set(listed(server, paymentStatus=status)) & set(plan), status
            # Due filters select by due date (inclusive both ends), as for the seeded ones.
            first, third = plan[LEGACY_IDS[0]].due, plan[LEGACY_IDS[2]].due
            assert listed(server, toDueDate="2021-12-31") == LEGACY_IDS[:2]
            assert listed(server, fromDueDate=first.isoformat(), toDueDate=first.isoformat()) == LEGACY_IDS[:1]
            span = {"fromDueDate": third.isoformat(), "toDueDate": plan[LEGACY_IDS[3]].due.isoformat()}
            assert listed(server, **span) == LEGACY_IDS[2:4]
            assert listed(server, paymentStatus="100", **span) == LEGACY_IDS[2:3]
            assert listed(server, fromDueDate="2024-11-01", toDueDate="2024-11-30")[:2] == LEGACY_IDS[4:]
            assert not set(listed(server, fromDueDate=(third + timedelta(days=4)).isoformat(),
                                  toDueDate="2024-10-31")) & set(plan)

            for k, lg in plan.items():
                detail = farpay_get(server, f"/v2/invoices/{k}")
                assert str(detail["Id"]) == k and detail["PaymentStatus"] == int(truth[k]["provider_status"])
                assert detail["PaymentDueDate"].startswith(lg.due.isoformat())
                assert detail["Created"].startswith(lg.issued.isoformat())
                assert detail["InvoiceTypeCode"] == "PIE" and detail["InvoiceAmount"] > 0
                to_pay, amount = detail["ToBePaidAmount"], detail["InvoiceAmount"]
                assert (0 < to_pay < amount) if lg.kind == "partial" else to_pay == amount
                assert truth[k]["due_at"] == datetime.combine(lg.due, datetime.min.time(), timezone.utc)
            assert requests.get(server.base_url("farpay") + "/v2/invoices/7200006", timeout=5,
                                headers={"X-API-KEY": KEY, "Accept": "application/json"}).status_code == 404


def test_sandbox_late_payers_are_owed_until_paid_on_then_paid(sandbox_factory):
    import time_machine

    server = sandbox_factory(providers=("farpay",), size=30)
    farpay = server.sandbox.providers["farpay"]
    late = [lg for lg in farpay.legacy if lg.kind == "late"]
    assert [str(LEGACY_ID_BASE + lg.key) for lg in late] == LEGACY_IDS[4:]
    for lg in late:
        eid = str(LEGACY_ID_BASE + lg.key)
        paid_on = datetime.combine(lg.paid_on, datetime.min.time(), timezone.utc)
        assert paid_on > datetime.combine(ANCHOR, datetime.min.time(), timezone.utc)
        with time_machine.travel(paid_on - timedelta(seconds=1), tick=False):
            detail = farpay_get(server, f"/v2/invoices/{eid}")
            assert detail["PaymentStatus"] == 100 and detail["ToBePaidAmount"] == detail["InvoiceAmount"]
            assert eid in listed(server, paymentStatus="100") and eid not in listed(server, paymentStatus="200")
            truth = next(t for t in farpay.truth() if t["external_id"] == eid)
            assert (truth["status"], truth["outstanding"], truth["paid_at"]) == (st.OPEN, truth["amount"], None)
        with time_machine.travel(paid_on, tick=False):
            detail = farpay_get(server, f"/v2/invoices/{eid}")
            assert detail["PaymentStatus"] == 200 and detail["ToBePaidAmount"] == 0
            assert eid in listed(server, paymentStatus="200") and eid not in listed(server, paymentStatus="100")
            assert eid in listed(server, paymentStatus="200", fromDueDate=lg.due.isoformat(),
                                 toDueDate=lg.due.isoformat())
            truth = next(t for t in farpay.truth() if t["external_id"] == eid)
            assert (truth["status"], truth["outstanding"], truth["paid_at"]) == (st.PAID, 0, paid_on)


def test_sandbox_mutate_works_on_legacy_invoices_and_wins_over_the_clock(sandbox_factory):
    import time_machine

    server = sandbox_factory(providers=("farpay",), size=20)
    farpay = server.sandbox.providers["farpay"]
    oldest, partial, late = LEGACY_IDS[0], LEGACY_IDS[1], LEGACY_IDS[4]
    after_paid = datetime(2027, 1, 1, tzinfo=timezone.utc)  # both late payers have paid
    with time_machine.travel(BEFORE_PAID, tick=False):
        changed = farpay.mutate(oldest, {"status": "paid"})
        assert (changed["status"], changed["outstanding"]) == (st.PAID, "0")
        assert oldest in listed(server, paymentStatus="200", toDueDate="2021-12-31")
        assert oldest not in listed(server, paymentStatus="100")
        assert farpay_get(server, f"/v2/invoices/{oldest}")["PaymentStatus"] == 200
        # The control endpoint and the notification machinery find legacy ids too.
        answer = requests.post(f"{server.url}/_sandbox/invoices/farpay/{partial}", json={"outstanding": "0"},
                               timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == st.PAID
        (headers, body), = farpay.notifications(late, event="ReimbursedByBank")
        assert json.loads(body)["Payment"]["Event"] == "ReimbursedByBank"
        assert verify_webhook(WEBHOOK_SECRET, headers["webhook-id"], headers["webhook-timestamp"], body,
                              headers["webhook-signature"], now=int(BEFORE_PAID.timestamp()))
        assert farpay_get(server, f"/v2/invoices/{late}")["PaymentStatus"] == 600
    with time_machine.travel(after_paid, tick=False):  # the override wins over the late payment
        assert farpay_get(server, f"/v2/invoices/{late}")["PaymentStatus"] == 600
        assert late in listed(server, paymentStatus="600") and late not in listed(server, paymentStatus="200")
        assert farpay_get(server, f"/v2/invoices/{LEGACY_IDS[5]}")["PaymentStatus"] == 200  # untouched: paid
        truth = {t["external_id"]: t for t in farpay.truth()}
        assert truth[late]["status"] == st.CHARGED_BACK and truth[oldest]["status"] == st.PAID
        server.sandbox.reset()
        assert farpay_get(server, f"/v2/invoices/{late}")["PaymentStatus"] == 200  # the clock again
        assert farpay_get(server, f"/v2/invoices/{oldest}")["PaymentStatus"] == 100


def test_sandbox_without_legacy_has_only_the_seeded_population(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=25, legacy=False)
    farpay = server.sandbox.providers["farpay"]
    assert farpay.legacy == () and len(list(farpay.truth())) == 25
    assert all(int(t["external_id"]) >= ID_BASE for t in farpay.truth())
    assert len(listed(server)) == 25 and not set(listed(server, paymentStatus="100")) & set(LEGACY_IDS)
    assert listed(server, toDueDate="2024-10-31") == []
    for eid in LEGACY_IDS:
        assert requests.get(server.base_url("farpay") + f"/v2/invoices/{eid}", timeout=5,
                            headers={"X-API-KEY": KEY, "Accept": "application/json"}).status_code == 404
        with pytest.raises(KeyError):
            farpay.mutate(eid, {"status": "paid"})
    empty = Sandbox(anchor=ANCHOR, size=0, providers=("farpay",), legacy=False).providers["farpay"]
    assert list(empty.truth()) == [] and empty.select(None, None, None) == []
    # With legacy on, even size=0 and size=1,000,000 carry the six, on ids of their own.
    for size in (0, 1_000_000):
        big = Sandbox(anchor=ANCHOR, size=size, providers=("farpay",)).providers["farpay"]
        assert [big.record(big._index(eid))["Id"] for eid in LEGACY_IDS] == [int(e) for e in LEGACY_IDS]
        assert LEGACY_ID_BASE + 5 < ID_BASE and big.select(100, None, date(2024, 10, 31)) == [
            big._index(LEGACY_IDS[k]) for k in (0, 1, 2)]


# -- sliced full reads (gateways.slices) --------------------------------------------------------

@pytest.mark.parametrize("undated", ["all", "receivable", "none"])
def test_a_sliced_full_read_returns_exactly_the_sandbox_population(sandbox_factory, undated):
    server = sandbox_factory(providers=("farpay",), size=400)
    truth = {t["external_id"]: t for t in server.sandbox.providers["farpay"].truth()}
    sequential = read_all(sandbox_client(server, undated=undated))
    sliced = read_all(sandbox_client(server, undated=undated, read_concurrency=6))  # asserts none twice
    assert sliced == sequential
    if undated == "all":
        assert_matches_truth(sliced, truth)  # N/A (1000) included: each window's difference
        assert {i.provider_status for i in sliced.values()} >= {"1000", "600"}


def test_inside_a_slice_the_steps_keep_their_order():
    """Per due window the statuses are read in order and N/A (the unfiltered read whose
    difference it is) last; the undated reads are one slice of their own, whichever threads run."""
    client, adapter = fake_client(lambda path, query: (200, []), options={"read_concurrency": 4})
    assert list(client.iter_pages()) == []
    asked: dict[str, list[str]] = {}
    for _, query, _ in adapter.calls:
        asked.setdefault(query.get("fromDueDate", "undated"), []).append(query.get("paymentStatus", "N/A"))
    statuses = ["100", "200", "300", "400", "500", "600", "700"]
    assert asked.pop("undated") == statuses
    assert len(asked) == 37 and all(order == statuses + ["N/A"] for order in asked.values())


def test_a_sliced_read_resumes_every_slice_where_it_stopped(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=600)
    everything = set(read_all(sandbox_client(server)))
    pages = list(sandbox_client(server, read_concurrency=4).iter_pages())
    # Cut where a slice stopped between a window's status reads: its N/A step must re-learn them.
    cut = next(n for n, p in enumerate(pages) if n >= len(pages) // 3 and any(
        s["c"] and s["w"] and s["c"] < len(s["k"]) - 1 for s in json.loads(p.resume)["sl"]))
    committed = pages[: cut + 1]
    states = json.loads(committed[-1].resume)["sl"]
    assert any(s["d"] for s in states) and not all(s["d"] for s in states)
    rest = list(sandbox_client(server, read_concurrency=4).iter_pages(resume=committed[-1].resume))
    before = [i.external_id for p in committed for i in p.invoices]
    after = [i.external_id for p in rest for i in p.invoices]
    assert not set(before) & set(after)  # nothing read twice (N/A included) ...
    assert set(before) | set(after) == everything  # ... and nothing left out
    assert list(sandbox_client(server).iter_pages(resume=pages[-1].resume)) == []


@pytest.mark.parametrize("marker", [
    '{"sl": [{"w": ["2026-01-01"], "k": [100], "o": null, "c": null, "d": false}]}',
    '{"sl": [{"w": null, "k": [999], "o": null, "c": null, "d": false}]}',
    '{"sl": [{"w": null, "k": [100], "o": null, "c": 4, "d": false}]}',
    '{"sl": "everything"}',
])
def test_a_broken_sliced_marker_is_refused(marker):
    client, adapter = fake_client(lambda path, query: (200, []), options={"read_concurrency": 4})
    with pytest.raises(ConfigurationError):
        list(client.iter_pages(resume=marker))
    assert adapter.calls == []


def test_slices_read_the_details_at_once_too(sandbox_factory):
    server = sandbox_factory(providers=("farpay",), size=120, legacy=False)
    server.sandbox.add_fault("farpay", Fault(kind="latency", seconds=0.03, times=100_000))
    started = time.perf_counter()
    sequential = read_all(sandbox_client(server, window_months="3"))
    sequential_s = time.perf_counter() - started
    calls = server.sandbox.stats["farpay"]
    started = time.perf_counter()
    sliced = read_all(sandbox_client(server, window_months="3", read_concurrency=8))
    sliced_s = time.perf_counter() - started
    assert sliced == sequential
    assert server.sandbox.stats["farpay"] == 2 * calls  # the same calls: a detail per invoice, once
    assert calls >= 120 + 13 * 8 + 7 and sequential_s >= calls * 0.03 and sliced_s < sequential_s / 2
