"""Xendit client (Appgregator proxy and direct) and its sandbox."""
from __future__ import annotations

import base64
import json
import logging
import re
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import time_machine

from gateways import get_client
from gateways import status as st
from gateways.errors import AuthError, BadResponseError, ConfigurationError, TransientError
from gateways.sandbox import CREDENTIALS, OPTIONS, Fault, Sandbox
from gateways.sandbox.core import legacy_plan
from gateways.xendit import Client

from .conftest import ANCHOR, credential

FIXTURES = Path(__file__).parent / "fixtures" / "xendit"
ANCHOR_DT = datetime(ANCHOR.year, ANCHOR.month, ANCHOR.day, tzinfo=timezone.utc)
FAST = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2)}
SECRETS = CREDENTIALS["xendit"]


def at_anchor():
    return ANCHOR_DT + timedelta(hours=6)


def later():
    """A clock after every sandbox change (changes are stamped with the real time, never before the anchor)."""
    return max(datetime.now(timezone.utc), ANCHOR_DT) + timedelta(minutes=1)


def make(server, *, mode="appgregator", now=at_anchor, **overrides):
    kwargs = credential("xendit", server)
    if mode == "direct":
        kwargs["options"] = {"mode": "direct"}
    # Page after page unless a test asks for slices (the sliced reads are tested below).
    kwargs["options"] = {"read_concurrency": 1, **kwargs["options"], **overrides.pop("options", {})}
    kwargs.update(overrides)
    return get_client("xendit", now=now, **FAST, **kwargs)


def read_all(client, **kwargs):
    return [inv for page in client.iter_pages(**kwargs) for inv in page.invoices]


class FakeSession:
    """Answers each request with the next queued (status, body) or a function of the request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[dict] = []

    def request(self, method, url, **kwargs):
        params = kwargs.get("params") or {}
        self.calls.append({"method": method, "url": url, "params": dict(params),
                           "headers": dict(kwargs.get("headers") or {})})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        status, body = answer(params) if callable(answer) else answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.url = url
        return response


def fake_client(session, *, mode="appgregator", secrets=None, options=None):
    options = options if options is not None else (dict(OPTIONS["xendit"]) if mode == "appgregator" else {"mode": mode})
    # No owed pass before the window (its own test); page after page (sliced reads: their own tests).
    options = {"owed_years_back": 0, "read_concurrency": 1, **options}
    return Client(secrets=secrets or dict(SECRETS), options=options, session=session, now=at_anchor, **FAST)


# -- the documented payload ------------------------------------------------------------------

def test_documented_list_example_parses():
    doc = json.loads((FIXTURES / "list_invoices.json").read_text())
    session = FakeSession((200, doc))
    client = fake_client(session)
    pages = list(client.iter_pages())
    assert len(pages) == 1 and len(session.calls) == 1  # one short page: the listing is done
    (inv,) = pages[0].invoices
    assert inv.external_id == "62f094097098f7678f55fc3f"
    assert inv.number == "INV0055/VIII/2022"
    assert (inv.status, inv.provider_status) == ("paid", "SETTLED")
    assert inv.currency == "IDR"
    assert inv.amount == Decimal("8500000") and inv.paid_amount == Decimal("8500000")
    assert inv.outstanding == Decimal("0")
    assert inv.paid_at == datetime(2022, 8, 8, 4, 42, 11, 99000, tzinfo=timezone.utc)
    assert inv.issued_at == datetime(2022, 8, 8, 4, 41, 46, 49000, tzinfo=timezone.utc)
    assert inv.due_at == datetime(2022, 8, 9, 4, 41, 45, 227000, tzinfo=timezone.utc)
    assert inv.provider_updated_at == datetime(2022, 8, 8, 4, 42, 11, 411000, tzinfo=timezone.utc)
    assert inv.payment_channel == "MANDIRI"
    assert (inv.customer_name, inv.customer_email) == ("John Doe", "johndoe@example.com")
    assert inv.checkout_url == "https://checkout-staging.xendit.co/web/62f094097098f7678f55fc3f"
    assert inv.raw == doc[0]


def test_documented_request_shape_appgregator():
    session = FakeSession((200, []))
    client = fake_client(session)
    assert list(client.iter_pages()) == []
    call = session.calls[0]
    assert call["url"] == "https://us-central1-appgregator.cloudfunctions.net/xendit/invoices/"
    assert call["headers"]["x-api-key"] == SECRETS["api_key"]
    params = call["params"]
    assert params["name"] == "arbook-sandbox" and params["connection_name"] == "xendit-sandbox-1"
    assert params["limit"] == 100
    # full read: the full-sync window as a complete created_* pair (a lone bound would be ignored)
    assert params["created_after"] == "2024-10-31T17:00:00.000Z"  # 2024-11-01 00:00 Asia/Jakarta
    assert params["created_before"] == "2027-11-01T17:00:00.000Z"


def test_direct_mode_uses_basic_auth_and_v2_path():
    session = FakeSession((200, []))
    client = fake_client(session, mode="direct", secrets={"secret_key": SECRETS["secret_key"]})
    list(client.iter_pages())
    call = session.calls[0]
    assert call["url"] == "https://api.xendit.co/v2/invoices"
    expected = base64.b64encode(f"{SECRETS['secret_key']}:".encode()).decode()
    assert call["headers"]["Authorization"] == f"Basic {expected}"
    assert "name" not in call["params"] and "x-api-key" not in call["headers"]


@pytest.mark.parametrize("raw, expected", [
    ("PENDING", "open"), ("PAID", "paid"), ("SETTLED", "paid"), ("EXPIRED", "expired"),
    ("pending", "open"), ("paid", "paid"), ("settled", "paid"), ("expired", "expired"),
])
def test_status_map(raw, expected):
    client = fake_client(FakeSession((200, [])))
    assert client.map_status(raw) == expected


def test_parse_variants_and_unknown_status(caplog):
    client = fake_client(FakeSession((200, [])))
    base = {"id": "a1", "external_id": "N-1", "amount": Decimal("12.50"), "currency": "PHP",
            "created": "2026-10-01T00:00:00.000Z", "expiry_date": "2026-10-02T00:00:00.000Z"}
    pending = client.parse_invoice({**base, "status": "PENDING", "payer_email": "x@example.com"})
    assert (pending.outstanding, pending.paid_amount, pending.customer_email) == (Decimal("12.50"), 0, "x@example.com")
    assert pending.customer_name == "" and pending.paid_at is None and pending.customer_phone == ""
    with_phone = client.parse_invoice({**base, "status": "PENDING", "customer": {
        "given_names": "Budi", "email": "Budi@Example.com", "mobile_number": " 081234567890 "}})
    assert (with_phone.customer_email, with_phone.customer_phone) == ("Budi@Example.com", "081234567890")
    expired = client.parse_invoice({**base, "status": "EXPIRED"})
    assert (expired.status, expired.outstanding, expired.customer_email) == ("expired", Decimal("12.50"), "")
    older = client.parse_invoice({**base, "status": "PAID", "payment_method": "BANK_TRANSFER", "bank_code": "BNI",
                                  "customer": {"given_names": "Siti"}, "currency": None})
    assert (older.payment_channel, older.paid_amount, older.currency, older.customer_name) == (
        "BNI", Decimal("12.50"), "IDR", "Siti")
    stored = client.parse_invoice({**base, "status": "SETTLED", "callback_token": "tok-should-vanish"})
    assert "callback_token" not in stored.raw
    with caplog.at_level(logging.WARNING, logger="gateways"):
        odd = client.parse_invoice({**base, "status": "VOIDED"})
        client.parse_invoice({**base, "status": "VOIDED"})
    assert (odd.status, odd.provider_status, odd.outstanding) == ("unknown", "VOIDED", None)
    assert caplog.text.count("unknown status") == 1
    with pytest.raises(BadResponseError):
        client.parse_invoice({**base, "status": "PAID", "amount": "lots"})


# -- reading the sandbox ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["appgregator", "direct"])
def test_reads_the_full_population(sandbox_factory, mode):
    server = sandbox_factory(providers=("xendit",), size=650)
    invoices = read_all(make(server, mode=mode))
    truth = {t["external_id"]: t for t in server.sandbox.providers["xendit"].truth()}
    # 650 seeded invoices plus the sandbox's six-invoice old debt, created before the 24-month
    # window: a full read gets those still owed (the owed pass), not those paid since
    old = {k for k, t in truth.items() if t["issued_at"] < datetime(2024, 11, 1, tzinfo=timezone(timedelta(hours=7)))}
    assert len(truth) == 656 and len(old) == 6
    expected = set(truth) - {k for k in old if truth[k]["status"] == "paid"}
    assert len(invoices) == len(expected)
    assert {i.external_id for i in invoices} == expected
    fields = ("number", "status", "provider_status", "currency", "amount", "outstanding", "paid_amount",
              "issued_at", "due_at", "paid_at", "provider_updated_at", "customer_name", "customer_email",
              "payment_channel", "checkout_url")
    for inv in invoices:
        expected = truth[inv.external_id]
        assert {f: getattr(inv, f) for f in fields} == {f: expected[f] for f in fields}
    created = [i.issued_at for i in invoices]
    assert created == sorted(created, reverse=True)  # Xendit's order: newest first
    # the population covers what the dashboard has to show
    kinds = {(i.provider_status, i.due_at < ANCHOR_DT) for i in invoices}
    assert {("PENDING", True), ("PENDING", False), ("PAID", True), ("SETTLED", True), ("EXPIRED", True)} <= kinds
    assert {"IDR", "PHP", "USD"} <= {i.currency for i in invoices}
    assert any(i.amount != i.amount.to_integral_value() for i in invoices)
    assert any(i.customer_name for i in invoices) and any(i.customer_email and not i.customer_name for i in invoices)
    assert any(not i.customer_email for i in invoices)
    assert len({i.number for i in invoices}) < len(invoices)  # external_id is non-unique, as documented


def test_full_read_honours_the_window(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=300)
    client = make(server, options={"window_months_back": 6})
    invoices = read_all(client)
    start = datetime(2026, 5, 1, tzinfo=timezone(timedelta(hours=7)))
    truth = list(server.sandbox.providers["xendit"].truth())
    expected = {t["external_id"] for t in truth if t["issued_at"] > start}
    assert 0 < len(expected) < 300
    # Before the window only what is still owed (PENDING/EXPIRED) is read, however old.
    older_owed = {t["external_id"] for t in truth if t["issued_at"] <= start and t["status"] in st.UNSETTLED}
    assert older_owed and {i.external_id for i in invoices} == expected | older_owed


def test_paging_stops_on_a_short_page(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=200, legacy=False)  # the seeded arithmetic only
    pages = list(make(server).iter_pages())
    assert [len(p.invoices) for p in pages] == [100, 100]
    assert [p.number for p in pages] == [1, 2]
    log = list(server.sandbox.requests["xendit"])
    assert len(log) == 4  # the third (empty) answer ends the listing; the fourth is the owed pass
    assert "last_invoice_id" not in log[0]["query"]
    assert log[1]["query"]["last_invoice_id"] == [pages[0].invoices[-1].external_id]
    assert log[2]["query"]["last_invoice_id"] == [pages[1].invoices[-1].external_id]

    server2 = sandbox_factory(providers=("xendit",), size=150, legacy=False)
    assert [len(p.invoices) for p in make(server2).iter_pages()] == [100, 50]
    assert len(server2.sandbox.requests["xendit"]) == 3  # the short page ends the pass; then the owed pass


def test_resume_continues_after_a_committed_page(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=450, legacy=False)  # the seeded arithmetic only
    pages = list(make(server).iter_pages())
    assert len(pages) == 5
    resumed = list(make(server).iter_pages(resume=pages[1].resume))
    assert [p.number for p in resumed] == [1, 2, 3]
    assert [i.external_id for p in resumed for i in p.invoices] == [i.external_id for p in pages[2:] for i in p.invoices]
    assert list(make(server).iter_pages(resume=pages[-1].resume)) == []
    with pytest.raises(ValueError):
        list(make(server).iter_pages(resume='{"x": 1}'))


def test_incremental_read_and_mutations(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=800)
    prov = server.sandbox.providers["xendit"]
    truth = list(prov.truth())
    since = ANCHOR_DT - timedelta(days=4)
    old_open = [t for t in truth if t["status"] == "open" and t["issued_at"] < since - timedelta(hours=1)]
    not_due = next(t for t in old_open if t["due_at"] > ANCHOR_DT)
    overdue = next(t for t in old_open if t["due_at"] < since)  # its expiry lies before `since`
    to_pay, to_expire = not_due["external_id"], overdue["external_id"]
    server.sandbox.reset()  # also clears the request log
    paid = prov.mutate(to_pay, {"status": "paid"})
    assert (paid["status"], paid["outstanding"], paid["provider_status"]) == ("paid", 0, "PAID")
    assert paid["provider_updated_at"] > not_due["provider_updated_at"]
    prov.mutate(to_expire, {"status": "expired"})

    client = make(server, now=later)
    pages = list(client.iter_pages(since=since))
    got = {i.external_id: i for p in pages for i in p.invoices}
    assert sum(len(p.invoices) for p in pages) == len(got)  # no invoice twice in one run
    assert got[to_pay].status == "paid" and got[to_pay].outstanding == 0
    assert got[to_expire].status == "expired" and got[to_expire].due_at >= ANCHOR_DT
    # never less: everything created, paid or expired since then is there ...
    truth = {t["external_id"]: t for t in prov.truth()}
    lower = since - client.overlap
    changed = {k for k, t in truth.items()
               if t["issued_at"] > since or (t["paid_at"] and t["paid_at"] > since)
               or (t["status"] == "expired" and t["due_at"] > since)}
    assert changed <= set(got)
    # ... and only a little more (the overlap, and overdue PENDING whose expiry date fell inside)
    assert all(truth[k]["issued_at"] > lower or (truth[k]["paid_at"] and truth[k]["paid_at"] > lower)
               or truth[k]["due_at"] > lower for k in got)
    assert len(got) < 100  # a small slice of the population: the filters did the work
    for k, inv in got.items():
        assert (inv.status, inv.outstanding) == (truth[k]["status"], truth[k]["outstanding"])
    passes = [(q.get("created_after"), q.get("paid_after"), q.get("expired_after"))
              for q in (r["query"] for r in server.sandbox.requests["xendit"])]
    assert [tuple(bool(x) for x in p) for p in passes] == [(True, False, False), (False, True, False),
                                                           (False, False, True)]


def test_incremental_resume_crosses_passes(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=2000)
    since = ANCHOR_DT - timedelta(days=40)
    pages = list(make(server, now=later).iter_pages(since=since))
    assert len(pages) >= 3
    marker = json.loads(pages[0].resume)
    assert marker["m"] == "inc" and set(marker) == {"m", "p", "a", "b", "c"}
    rest = list(make(server, now=later).iter_pages(resume=pages[0].resume))
    first = {i.external_id for i in pages[0].invoices}
    # a resumed run cannot remember what earlier passes yielded, so it may repeat; never miss
    assert {i.external_id for p in pages[1:] for i in p.invoices} <= {i.external_id for p in rest for i in p.invoices}
    assert not first & {i.external_id for i in rest[0].invoices}


def test_mutation_shows_up_in_a_re_read(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=120)
    prov = server.sandbox.providers["xendit"]
    target = next(t for t in prov.truth() if t["status"] == "open")
    when = datetime(2026, 11, 2, 3, 4, 5, tzinfo=timezone.utc)
    prov.mutate(target["external_id"], {"outstanding": "0", "paid_at": when.isoformat(),
                                        "provider_status": "SETTLED"})
    inv = next(i for i in read_all(make(server, mode="direct")) if i.external_id == target["external_id"])
    assert (inv.status, inv.provider_status, inv.paid_at, inv.outstanding) == ("paid", "SETTLED", when, 0)
    assert inv.paid_amount == target["amount"] and inv.provider_updated_at > target["provider_updated_at"]
    # back to open (e.g. a test reset): the re-read shows it unpaid again
    prov.mutate(target["external_id"], {"status": "open"})
    again = make(server).get_invoice(target["external_id"])
    assert (again.status, again.outstanding, again.paid_at) == ("open", target["amount"], None)
    with pytest.raises(KeyError):
        prov.mutate("000000000000000000000000", {"status": "paid"})
    with pytest.raises(ValueError):
        prov.mutate(target["external_id"], {"status": "partially_paid"})
    with pytest.raises(ValueError):
        prov.mutate(target["external_id"], {"outstanding": "1"})


def test_get_invoice_both_modes(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=50)
    some = next(iter(server.sandbox.providers["xendit"].truth()))
    for mode in ("appgregator", "direct"):
        client = make(server, mode=mode)
        inv = client.get_invoice(some["external_id"])
        assert (inv.external_id, inv.amount, inv.status) == (some["external_id"], some["amount"], some["status"])
        assert "callback_token" not in inv.raw
        assert client.get_invoice("ffffffffffffffffffffffff") is None
    stored = server.sandbox.handle(
        "GET", f"/xendit/xendit/find/{some['external_id']}?name=arbook-sandbox&connection_name=xendit-sandbox-1",
        {"x-api-key": SECRETS["api_key"]}, b"")[0]
    assert isinstance(stored.body, list) and stored.body[0]["callback_token"]  # Appgregator's copy has it


def test_check_connection(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=10)
    assert make(server).check_connection() == "Connected via Appgregator: invoices visible"
    assert make(server, mode="direct").check_connection() == "Connected to Xendit: invoices visible"
    assert server.sandbox.requests["xendit"][-1]["query"]["limit"] == ["1"]


# -- errors and secrets ----------------------------------------------------------------------

def test_auth_errors_and_no_secret_leaks(sandbox_factory, caplog):
    server = sandbox_factory(providers=("xendit",), size=10)
    bad_key, bad_secret = "wrong-appgregator-key-123", "xnd_development_wrong_secret"
    caplog.set_level(logging.DEBUG)
    errors = []
    with pytest.raises(AuthError) as appg:
        make(server, secrets={"api_key": bad_key}).check_connection()
    errors.append(appg.value)
    with pytest.raises(AuthError) as direct:
        make(server, mode="direct", secrets={"secret_key": bad_secret}).check_connection()
    errors.append(direct.value)
    make(server).check_connection()
    make(server, mode="direct").check_connection()
    with pytest.raises(AuthError) as injected:  # the provider's own answer to a bad key
        server.sandbox.add_fault("xendit", Fault(kind="bad_signature"))
        make(server, mode="direct").check_connection()
    errors.append(injected.value)
    answer = server.sandbox.handle("GET", "/xendit/v2/invoices", {}, b"")[0]
    assert (answer.status, answer.body["error_code"]) == (401, "INVALID_API_KEY")
    secrets = [bad_key, bad_secret, *SECRETS.values()]
    secrets += [base64.b64encode(f"{s}:".encode()).decode() for s in (bad_secret, SECRETS["secret_key"])]
    text = caplog.text + " ".join(str(e) for e in errors)
    assert "xendit" in caplog.text
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("secrets, options, needle", [
    ({}, dict(OPTIONS["xendit"]), "api_key"),
    ({"secret_key": "xnd_x"}, dict(OPTIONS["xendit"]), "api_key"),  # the other mode's secret is not enough
    ({"api_key": "k-1234"}, {"mode": "direct"}, "secret_key"),
    ({"api_key": "k-1234"}, {}, "name, connection_name"),
    ({"api_key": "k-1234"}, {"name": "p", "connection_name": " "}, "connection_name"),
    ({"api_key": "k-1234"}, {"mode": "proxy", "name": "p", "connection_name": "c"}, "mode"),
])
def test_configuration_errors(secrets, options, needle):
    with pytest.raises(ConfigurationError) as err:
        Client(secrets=secrets, options=options)
    assert needle in str(err.value)
    for value in secrets.values():
        assert value not in str(err.value)


def test_unknown_appgregator_connection_is_a_configuration_error(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=10)
    with pytest.raises(ConfigurationError) as err:
        make(server, options={"connection_name": "no-such-connection"}).check_connection()
    assert err.value.status_code == 404 and "connection_name" in str(err.value)
    # without name/connection_name Appgregator answers 400 with a message
    answer = server.sandbox.handle("GET", "/xendit/xendit/invoices/", {"x-api-key": SECRETS["api_key"]}, b"")[0]
    assert answer.status == 400 and "connection_name" in answer.body["message"]


def test_transient_errors_retry_then_give_up(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=10)
    server.sandbox.add_fault("xendit", Fault(kind="429", times=1, retry_after=0))
    assert make(server).check_connection().startswith("Connected")  # retried after the 429
    server.sandbox.add_fault("xendit", Fault(kind="503", times=5))
    with pytest.raises(TransientError) as err:
        make(server).check_connection()
    assert err.value.status_code == 503
    server.sandbox.clear_faults()
    server.sandbox.add_fault("xendit", Fault(kind="429", times=5, retry_after=0))
    with pytest.raises(TransientError):
        make(server, mode="direct").check_connection()


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_bad_bodies(sandbox_factory, kind):
    server = sandbox_factory(providers=("xendit",), size=10)
    server.sandbox.add_fault("xendit", Fault(kind=kind))
    with pytest.raises(BadResponseError):
        list(make(server).iter_pages())


@pytest.mark.parametrize("body", [{"invoices": []}, [{"no_id": 1}], "text"])
def test_undocumented_shapes_are_bad_responses(body):
    with pytest.raises(BadResponseError):
        list(fake_client(FakeSession((200, body))).iter_pages())


def test_enveloped_list_is_accepted():
    doc = json.loads((FIXTURES / "list_invoices.json").read_text())
    pages = list(fake_client(FakeSession((200, {"data": doc}))).iter_pages())
    assert pages[0].invoices[0].external_id == doc[0]["id"]


def test_rejected_request_is_a_bad_response_with_the_providers_message():
    answer = (400, {"error_code": "API_VALIDATION_ERROR", "message": "limit must be between 1 and 100"})
    with pytest.raises(BadResponseError) as err:
        fake_client(FakeSession(answer), mode="direct", secrets={"secret_key": "xnd_secret_zz"}).check_connection()
    assert "API_VALIDATION_ERROR" in str(err.value) and err.value.status_code == 400


# -- cursor name (docs: last_invoice_id; generated SDK: last_invoice) -------------------------

def _rows(start, count):
    return [{"id": f"inv{n:05d}", "status": "PAID", "amount": 1000, "created": "2026-10-01T00:00:00Z"}
            for n in range(start, start + count)]


def test_cursor_falls_back_to_the_sdk_name_when_ignored():
    def server(params):  # a proxy that only understands `last_invoice`
        cursor = params.get("last_invoice")
        if cursor is None:
            return 200, _rows(0, 100)
        return 200, _rows(int(cursor[3:]) + 1, 30)

    session = FakeSession(server)
    invoices = read_all(fake_client(session))
    assert len(invoices) == 130 and len({i.external_id for i in invoices}) == 130
    assert [sorted(k for k in c["params"] if k.startswith("last")) for c in session.calls] == [
        [], ["last_invoice_id"], ["last_invoice"]]


def test_cursor_ignored_under_both_names_is_a_bad_response():
    with pytest.raises(BadResponseError, match="cursor"):
        read_all(fake_client(FakeSession((200, _rows(0, 100)))))


# -- sandbox behaviour -------------------------------------------------------------------------

def _list(sandbox, query, *, direct=True):
    if direct:
        token = base64.b64encode(f"{SECRETS['secret_key']}:".encode()).decode()
        path, headers = "/xendit/v2/invoices", {"authorization": f"Basic {token}"}
    else:
        path, headers = "/xendit/xendit/invoices/", {"x-api-key": SECRETS["api_key"]}
        query = "name=arbook-sandbox&connection_name=xendit-sandbox-1&" + query
    response, _ = sandbox.handle("GET", f"{path}?{query}", headers, b"")
    return response


def test_sandbox_filters_statuses_pairs_and_cursor_aliases():
    sandbox = Sandbox(providers=("xendit",), size=300, anchor=ANCHOR)
    everything = _list(sandbox, "limit=100").body
    assert len(everything) == 100
    assert _list(sandbox, "limit=100", direct=False).body == everything  # same population both ways
    # lone bounds are ignored, as documented
    assert _list(sandbox, "limit=100&created_after=2026-10-30T00:00:00Z").body == everything
    assert _list(sandbox, "limit=100&paid_before=2020-01-01T00:00:00Z").body == everything
    pair = _list(sandbox, "limit=100&created_after=2026-10-01T00:00:00Z&created_before=2026-10-20T00:00:00Z").body
    assert pair and all("2026-10-01" <= i["created"] < "2026-10-20" for i in pair)
    # statuses: the documented JSON-array text and the SDK's repeated parameter
    json_form = _list(sandbox, 'limit=100&statuses=["SETTLED","EXPIRED"]').body
    repeated = _list(sandbox, "limit=100&statuses=SETTLED&statuses=EXPIRED").body
    assert json_form == repeated and {i["status"] for i in json_form} == {"SETTLED", "EXPIRED"}
    assert _list(sandbox, "statuses=VOID").status == 400
    # cursor: last_invoice_id (docs) and last_invoice (SDK)
    cursor = everything[9]["id"]
    after = _list(sandbox, f"limit=5&last_invoice_id={cursor}").body
    assert after == everything[10:15] == _list(sandbox, f"limit=5&last_invoice={cursor}").body
    assert _list(sandbox, "last_invoice_id=nope").status == 400
    assert _list(sandbox, "limit=101").status == 400 and _list(sandbox, "limit=0").status == 400
    assert len(_list(sandbox, "").body) == 10  # Xendit's default limit
    number = everything[3]["external_id"]
    same_number = _list(sandbox, f"external_id={number}").body
    assert everything[3] in same_number and all(i["external_id"] == number for i in same_number)


def test_sandbox_pages_stay_cheap_at_a_million():
    sandbox = Sandbox(providers=("xendit",), size=1_000_000, anchor=ANCHOR)
    started = time.monotonic()
    first = _list(sandbox, "limit=100").body
    deep_id = sandbox.providers["xendit"]._id(987_654)
    deep = _list(sandbox, f"limit=100&last_invoice_id={deep_id}").body
    window = _list(sandbox, "limit=100&created_after=2025-06-01T00:00:00Z&created_before=2025-06-02T00:00:00Z").body
    paid = _list(sandbox, "limit=100&paid_after=2026-10-31T00:00:00Z&paid_before=2026-11-01T00:00:00Z").body
    elapsed = time.monotonic() - started
    assert len(first) == len(deep) == len(window) == len(paid) == 100
    assert deep[0]["id"] == sandbox.providers["xendit"]._id(987_655)
    assert all("2026-10-31" <= i["paid_at"] < "2026-11-01" for i in paid)
    assert elapsed < 3.0


# -- the sandbox's old debt (core.legacy_plan: six invoices beyond the seeded ones) ----------------

OWED_PAIR = "created_after=2016-10-31T17:00:00.000Z&created_before=2024-10-31T17:00:00.000Z"  # the owed pass


def _read(sandbox, query="", *, direct=True, limit=100, cursor_name="last_invoice_id"):
    """Every page of one listing, following the cursor."""
    found, cursor = [], None
    while True:
        page = _list(sandbox, f"limit={limit}&{query}" + (f"&{cursor_name}={cursor}" if cursor else ""),
                     direct=direct).body
        found += page
        if len(page) < limit:
            return found
        cursor = page[-1]["id"]


def _direct_get(sandbox, invoice_id):
    token = base64.b64encode(f"{SECRETS['secret_key']}:".encode()).decode()
    return sandbox.handle("GET", f"/xendit/v2/invoices/{invoice_id}", {"authorization": f"Basic {token}"}, b"")[0]


def _find(sandbox, invoice_id):
    return sandbox.handle("GET", f"/xendit/xendit/find/{invoice_id}?name=arbook-sandbox&connection_name=xendit-sandbox-1",
                          {"x-api-key": SECRETS["api_key"]}, b"")[0]


def _legacy_ids(sandbox):
    """key -> id of the old-debt invoices (the `ffffffffff<key>` tail marks them)."""
    prov = sandbox.providers["xendit"]
    return {int(t["external_id"][22:], 16): t["external_id"] for t in list(prov.truth())[prov.size:]}


def test_sandbox_old_debt_comes_after_the_seeded_invoices():
    plan = {legacy.key: legacy for legacy in legacy_plan(ANCHOR)}
    with time_machine.travel(at_anchor(), tick=False):
        ids_by_size = {}
        for size in (0, 3, 250):
            sandbox = Sandbox(providers=("xendit",), size=size, anchor=ANCHOR)
            everything = _read(sandbox)
            assert _read(sandbox, direct=False, limit=7) == everything  # both modes, any page size
            assert _read(sandbox, limit=9, cursor_name="last_invoice") == everything  # the SDK's cursor name
            ids = [i["id"] for i in everything]
            assert len(ids) == len(set(ids)) == size + 6
            seeded, old = everything[:size], everything[size:]
            created = [i["created"] for i in everything]
            assert created == sorted(created, reverse=True)  # newest first: the old debt comes last
            assert [i["id"][12:] for i in old] == [f"002affffffffff{k:02x}"[4:] for k in (5, 4, 3, 2, 1, 0)]
            assert all(re.fullmatch(r"[0-9a-f]{8}002a[0-9a-f]{12}", i["id"]) for i in everything)  # seed 42's tag
            assert [i["status"] for i in old] == ["PENDING", "PENDING", "EXPIRED", "PENDING", "EXPIRED", "PENDING"]
            assert [i["external_id"] for i in old] == [
                "INV0001000/X/2024", "INV0000999/X/2024", "INV0000998/IV/2024", "INV0000997/IV/2024",
                "INV0000996/X/2021", "INV0000995/X/2021"]
            for item in old:
                legacy = plan[int(item["id"][22:], 16)]
                assert item["created"][:10] == legacy.issued.isoformat()
                assert item["expiry_date"][:10] == legacy.due.isoformat()
                assert "paid_at" not in item and item["updated"] < "2025"
            # the cursor crosses from the last seeded invoice into the old debt, and within it
            if seeded:
                assert _list(sandbox, f"limit=100&last_invoice_id={seeded[-1]['id']}").body == old
                assert _list(sandbox, f"limit=2&last_invoice_id={seeded[-1]['id']}").body == old[:2]
            assert _list(sandbox, f"limit=3&last_invoice_id={old[1]['id']}").body == old[2:5]
            assert _list(sandbox, f"limit=100&last_invoice={old[-1]['id']}").body == []
            ids_by_size[size] = [i["id"] for i in old]
        assert ids_by_size[0] == ids_by_size[3] == ids_by_size[250]  # their ids do not depend on the size

        # at a million the old debt is still six checks away
        sandbox = Sandbox(providers=("xendit",), size=1_000_000, anchor=ANCHOR)
        started = time.monotonic()
        last_seeded = sandbox.providers["xendit"]._id(999_999)
        tail = _list(sandbox, f"limit=100&last_invoice_id={last_seeded}").body
        owed = _list(sandbox, f'limit=100&statuses=["PENDING","EXPIRED"]&{OWED_PAIR}').body
        assert time.monotonic() - started < 1.0
        assert [i["id"] for i in tail] == [i["id"] for i in owed] == ids_by_size[0]


def test_sandbox_old_debt_answers_the_filters_and_lookups():
    with time_machine.travel(at_anchor(), tick=False):
        sandbox = Sandbox(providers=("xendit",), size=300, anchor=ANCHOR)
        ids = _legacy_ids(sandbox)
        by_id = {i["id"]: i for i in _read(sandbox)}

        def listed(query, **kwargs):
            return [i["id"] for i in _read(sandbox, query, **kwargs)]

        # the client's owed pass: PENDING/EXPIRED created before the window, both statuses forms, both modes
        newest_first = [ids[k] for k in (5, 4, 3, 2, 1, 0)]
        assert listed(f'statuses=["PENDING","EXPIRED"]&{OWED_PAIR}') == newest_first
        assert listed(f"statuses=PENDING&statuses=EXPIRED&{OWED_PAIR}", direct=False) == newest_first
        assert listed(f'statuses=["PENDING","EXPIRED"]&{OWED_PAIR}', limit=4) == newest_first  # paged by the cursor
        assert listed(f'statuses=["EXPIRED"]&{OWED_PAIR}') == [ids[3], ids[1]]
        assert listed(f'statuses=["PAID","SETTLED"]&{OWED_PAIR}') == []
        assert listed(OWED_PAIR) == newest_first  # no statuses: every one of them
        # every status filter without a pair also reaches them, after the seeded matches
        expired = listed('statuses=["EXPIRED"]')
        assert expired[-2:] == [ids[3], ids[1]] and len(expired) > 2
        # created / expired / paid pairs
        assert listed("created_after=2024-04-01T00:00:00Z&created_before=2024-05-01T00:00:00Z") == [ids[3], ids[2]]
        assert listed("created_after=2021-10-18T00:00:00Z&created_before=2021-10-19T00:00:00Z") == [ids[0]]
        assert listed("expired_after=2024-05-04T00:00:00Z&expired_before=2024-05-06T00:00:00Z") == [ids[3]]
        assert not set(ids.values()) & set(listed("paid_after=2016-01-01T00:00:00Z&paid_before=2030-01-01T00:00:00Z"))
        # a pair that excludes them leaves them out
        assert not set(ids.values()) & set(listed("created_after=2025-01-01T00:00:00Z&created_before=2027-01-01T00:00:00Z"))
        # external_id
        assert listed("external_id=INV0000998/IV/2024") == [ids[3]]
        assert listed("external_id=INV0001000/X/2024") == [ids[5]]
        oldest_seeded = _read(sandbox)[299]
        assert oldest_seeded["external_id"].startswith("INV0001001/")  # the seeded numbering ends where the old debt's begins
        assert oldest_seeded["id"] in listed(f"external_id={oldest_seeded['external_id']}")
        # lookups: direct and Appgregator
        for key, invoice_id in ids.items():
            direct = _direct_get(sandbox, invoice_id)
            assert direct.status == 200 and direct.body == by_id[invoice_id]
            found = _find(sandbox, invoice_id).body
            assert len(found) == 1 and found[0]["id"] == invoice_id and found[0]["callback_token"]
            assert {k: v for k, v in found[0].items() if k in by_id[invoice_id]} == by_id[invoice_id]
        unknown = ids[0][:-2] + "06"
        assert _direct_get(sandbox, unknown).status == 404 and _find(sandbox, unknown).body == []
        # truth: the same keys as the seeded invoices, the state the list shows
        truth = list(sandbox.providers["xendit"].truth())
        assert len(truth) == 306 and {frozenset(t) for t in truth} == {frozenset(truth[0])}
        old = {t["external_id"]: t for t in truth[300:]}
        assert set(old) == set(ids.values())
        for invoice_id, t in old.items():
            assert t["provider_status"] == by_id[invoice_id]["status"] and t["outstanding"] == t["amount"]
            assert t["status"] in ("open", "expired") and t["paid_at"] is None
            assert t["number"] == by_id[invoice_id]["external_id"]


def test_sandbox_late_payer_follows_the_sandbox_clock():
    late = {legacy.key: legacy for legacy in legacy_plan(ANCHOR) if legacy.kind == "late"}
    assert sorted(late) == [4, 5]
    first, second = late[4], late[5]
    pays = datetime(first.paid_on.year, first.paid_on.month, first.paid_on.day, tzinfo=timezone.utc)
    sandbox = Sandbox(providers=("xendit",), size=120, anchor=ANCHOR)
    prov = sandbox.providers["xendit"]
    ids = _legacy_ids(sandbox)
    paid_pair = f"paid_after={(pays - timedelta(days=1)).isoformat()}&paid_before={(pays + timedelta(days=1)).isoformat()}"
    paid_pair = paid_pair.replace("+00:00", "Z")

    with time_machine.travel(pays - timedelta(seconds=1), tick=False):
        before = _direct_get(sandbox, ids[4]).body
        assert before["status"] == "PENDING" and "paid_at" not in before
        assert ids[4] in [i["id"] for i in _read(sandbox, f'statuses=["PENDING"]&{OWED_PAIR}')]
        assert _read(sandbox, paid_pair) == []
        truth = {t["external_id"]: t for t in prov.truth()}
        assert (truth[ids[4]]["status"], truth[ids[4]]["outstanding"]) == ("open", truth[ids[4]]["amount"])
    with time_machine.travel(pays, tick=False):  # the day it pays: PAID from 00:00 UTC
        after = _direct_get(sandbox, ids[4]).body
        assert (after["status"], after["paid_at"], after["updated"]) == (
            "PAID", "2026-12-16T00:00:00.000Z", "2026-12-16T00:00:00.000Z")
        assert after["paid_amount"] == after["amount"] and after["created"] == before["created"]
        assert _direct_get(sandbox, ids[5]).body["status"] == "PENDING"  # the other pays later
        assert [i["id"] for i in _read(sandbox, paid_pair)] == [ids[4]]
        assert [i["id"] for i in _read(sandbox, f'statuses=["PAID"]&{OWED_PAIR}')] == [ids[4]]
        assert [i["id"] for i in _read(sandbox, f'statuses=["PENDING","EXPIRED"]&{OWED_PAIR}')] == [
            ids[k] for k in (5, 3, 2, 1, 0)]
        truth = {t["external_id"]: t for t in prov.truth()}
        assert truth[ids[4]]["status"] == "paid" and truth[ids[4]]["outstanding"] == 0
        assert truth[ids[4]]["paid_at"] == pays == truth[ids[4]]["provider_updated_at"]
        assert _find(sandbox, ids[4]).body[0]["status"] == "PAID"
    with time_machine.travel(pays + timedelta(days=30), tick=False):
        assert _direct_get(sandbox, ids[4]).body == after  # an unchanged record reads the same later
        assert second.paid(sandbox.now())
        assert _direct_get(sandbox, ids[5]).body["paid_at"] == f"{second.paid_on.isoformat()}T00:00:00.000Z"
    with time_machine.travel(pays - timedelta(seconds=1), tick=False):
        assert _direct_get(sandbox, ids[4]).body == before  # a pure function of the clock


def test_sandbox_mutates_old_debt_and_overrides_win_over_the_clock():
    sandbox = Sandbox(providers=("xendit",), size=40, anchor=ANCHOR)
    prov = sandbox.providers["xendit"]
    ids = _legacy_ids(sandbox)
    with time_machine.travel(at_anchor(), tick=False):
        amount = _direct_get(sandbox, ids[0]).body["amount"]
        paid = prov.mutate(ids[0], {"status": "paid"})
        assert (paid["status"], paid["provider_status"], paid["outstanding"]) == ("paid", "PAID", 0)
        assert paid["paid_at"] == at_anchor() == paid["provider_updated_at"] and paid["paid_amount"] == amount
        pair = "paid_after=2026-11-01T00:00:00Z&paid_before=2026-11-02T00:00:00Z"
        assert ids[0] in [i["id"] for i in _read(sandbox, pair)]
        assert _direct_get(sandbox, ids[0]).body["status"] == "PAID"
        # the partial one (EXPIRED: Xendit has no partial payment) is paid in full or not at all
        with pytest.raises(ValueError):
            prov.mutate(ids[1], {"outstanding": "1"})
        assert prov.mutate(ids[1], {"outstanding": "0", "provider_status": "SETTLED"})["provider_status"] == "SETTLED"
        # a late payer expired by hand stays expired when its payment day comes
        expired = prov.mutate(ids[5], {"status": "expired"})
        assert (expired["provider_status"], expired["due_at"]) == ("EXPIRED", expired["provider_updated_at"])
        assert at_anchor() < expired["due_at"] < at_anchor() + timedelta(seconds=1)  # the (pinned) moment of the change
        # the control endpoint and the notification machinery reach them too
        answer = sandbox.handle("POST", f"/_sandbox/invoices/xendit/{ids[2]}", {}, b'{"status": "paid"}')[0]
        assert answer.status == 200 and answer.body["status"] == "paid"
        headers, body = prov.notifications(ids[3], event="PAID")[0]
        callback = json.loads(body)
        assert headers["x-callback-token"] == SECRETS["callback_token"]
        assert (callback["id"], callback["status"], callback["external_id"]) == (ids[3], "PAID", "INV0000998/IV/2024")
        assert _direct_get(sandbox, ids[3]).body["status"] == "PAID"
        older = json.loads(prov.notifications(ids[4], event="PAID", out_of_order=True)[1][1])
        assert older["status"] == "PENDING" and "paid_at" not in older
        paid_by_callback = _direct_get(sandbox, ids[4]).body["paid_at"]
        assert paid_by_callback.startswith(f"{ANCHOR.isoformat()}T06:00:00.")  # the callback's moment, not paid_on
    with time_machine.travel(datetime(2027, 2, 1, tzinfo=timezone.utc), tick=False):  # after both payment days
        assert _direct_get(sandbox, ids[5]).body["status"] == "EXPIRED"  # the override wins
        assert _direct_get(sandbox, ids[4]).body["paid_at"] == paid_by_callback  # the override, not the clock's
        sandbox.reset()  # back to the plan: the clock decides again
        assert _direct_get(sandbox, ids[5]).body["status"] == "PAID"
        assert _direct_get(sandbox, ids[0]).body["status"] == "PENDING"


def test_sandbox_without_old_debt():
    with_debt = Sandbox(providers=("xendit",), size=30, anchor=ANCHOR)
    legacy_ids = set(_legacy_ids(with_debt).values())
    for size in (0, 30):
        sandbox = Sandbox(providers=("xendit",), size=size, anchor=ANCHOR, legacy=False)
        prov = sandbox.providers["xendit"]
        assert len(list(prov.truth())) == size
        everything = _read(sandbox, limit=7)
        assert len(everything) == size and not legacy_ids & {i["id"] for i in everything}
        assert _read(sandbox, f'statuses=["PENDING","EXPIRED"]&{OWED_PAIR}') == []
        some = next(iter(legacy_ids))
        assert _direct_get(sandbox, some).status == 404 and _find(sandbox, some).body == []
        assert _list(sandbox, f"last_invoice_id={some}").status == 400
        with pytest.raises(KeyError):
            prov.mutate(some, {"status": "paid"})
    # and the seeded population is the same either way
    assert _read(with_debt)[:30] == _read(Sandbox(providers=("xendit",), size=30, anchor=ANCHOR, legacy=False))


# -- sliced full reads (gateways.slices) --------------------------------------------------------

def test_a_sliced_full_read_returns_exactly_what_the_sequential_one_does(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=2500)
    sequential = read_all(make(server))
    calls_before = server.sandbox.stats["xendit"]
    client = make(server, options={"read_concurrency": 6})
    pages = list(client.iter_pages())
    sliced = [i for p in pages for i in p.invoices]
    assert len(sliced) == len({i.external_id for i in sliced})  # no invoice twice
    assert {i.external_id: i for i in sliced} == {i.external_id: i for i in sequential}
    # One call opens each slice, and each full page asks for the next one: nothing more.
    slices = client._slices(client._plan(None))
    assert len(slices) == 6 * Client.SLICES_PER_READER + 6 * Client.SLICES_PER_READER // 4  # window + owed years
    assert server.sandbox.stats["xendit"] - calls_before == len(slices) + sum(len(p.invoices) == 100 for p in pages)


def test_slice_bounds_are_disjoint_and_leave_no_millisecond_out():
    from gateways.slices import split_range
    from gateways.xendit import parse_ms

    parts = split_range(1_000, 1_010, 4)
    assert parts[0][0] == 1_000 and parts[-1][1] == 1_010
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    client = fake_client(FakeSession((200, [])), options={**OPTIONS["xendit"], "read_concurrency": 2})
    slices = client._slices(client._plan(None))
    created = [s for s in slices if s["f"] == "created"]
    # Xendit's pairs are strict: after < created < before. Each inner slice starts 1 ms before the
    # previous one ends, so the instant `before` of one slice is inside the next.
    for left, right in zip(created, created[1:]):
        assert parse_ms(right["a"]) == parse_ms(left["b"]) - 1


def test_a_sliced_read_resumes_every_slice_where_it_stopped(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=1800, legacy=False)
    everything = {i.external_id for i in read_all(make(server, options={"read_concurrency": 4}))}
    pages = list(make(server, options={"read_concurrency": 4}).iter_pages())
    committed = pages[: len(pages) // 2]
    marker = json.loads(committed[-1].resume)
    assert len(marker["s"]) > 4 and any(s["d"] for s in marker["s"]) and not all(s["d"] for s in marker["s"])
    rest = list(make(server, options={"read_concurrency": 4}).iter_pages(resume=committed[-1].resume))
    before = [i.external_id for p in committed for i in p.invoices]
    after = [i.external_id for p in rest for i in p.invoices]
    assert not set(before) & set(after)  # nothing read twice ...
    assert set(before) | set(after) == everything  # ... and nothing left out
    assert list(make(server).iter_pages(resume=pages[-1].resume)) == []  # a finished marker: nothing left


def test_slices_are_read_at_once(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=800, legacy=False)
    started = time.perf_counter()
    assert len(read_all(make(server, options={"read_concurrency": 1}))) == 800
    _ = time.perf_counter() - started
    server.sandbox.add_fault("xendit", Fault(kind="latency", seconds=0.1, times=10_000))
    started = time.perf_counter()
    assert len(read_all(make(server, options={"read_concurrency": 1}))) == 800
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    assert len(read_all(make(server, options={"read_concurrency": 8}))) == 800
    sliced = time.perf_counter() - started
    # 9 list calls page after page, ~35 (one per slice) in parallel: 8 at a time is ~5 rounds of 0.1 s.
    assert sequential >= 0.9 and sliced < sequential


def test_a_429_pauses_every_slice_reader(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=600, legacy=False)
    server.sandbox.add_fault("xendit", Fault(kind="429", retry_after=1, times=1, after=3))
    started = time.perf_counter()
    invoices = read_all(make(server, options={"read_concurrency": 4}, retry_after_max=5))
    assert len(invoices) == 600 == len({i.external_id for i in invoices})
    assert time.perf_counter() - started >= 1.0  # Retry-After was waited out


def test_a_failing_slice_fails_the_read_after_the_pages_before_it(sandbox_factory):
    server = sandbox_factory(providers=("xendit",), size=600, legacy=False)
    # After 12 good answers: with 4 readers, the pages of the first 8 or more are in before the
    # failing request is even sent, however the machine is loaded (after=5 raced the planning calls).
    server.sandbox.add_fault("xendit", Fault(kind="bad_signature", times=1, after=12))
    got = []
    with pytest.raises(AuthError):
        for page in make(server, options={"read_concurrency": 4}).iter_pages():
            got.append(page)
    assert got and all(json.loads(p.resume)["s"] for p in got)


def test_requests_per_minute_paces_all_readers():
    session = FakeSession((200, []))
    client = fake_client(session, options={**OPTIONS["xendit"], "read_concurrency": 4, "requests_per_minute": 600})
    sleeps = []
    client.http.sleep = sleeps.append
    list(client.iter_pages())
    assert len(session.calls) == 4 * Client.SLICES_PER_READER
    # One call every 0.1 s whatever the thread: the waits asked for add up to ~(calls - 1) x 0.1 s.
    assert sum(sleeps) >= 0.1 * (len(session.calls) - 1) - 0.05
