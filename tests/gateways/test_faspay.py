"""Faspay Billing: client (gateways/faspay.py) and sandbox (gateways/sandbox/faspay.py)."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import time_machine
from requests.structures import CaseInsensitiveDict

from gateways import AuthError, BadResponseError, ConfigurationError, TransientError, get_client
from gateways import status as st
from gateways.base import JAKARTA
from gateways.faspay import PATH, Client, signature
from gateways.sandbox import CREDENTIALS
from gateways.sandbox.core import LEGACY_PLAN, Request, Sandbox, legacy_plan
from gateways.sandbox.faspay import PAGE_SIZE, expected_signature

from .conftest import ANCHOR, credential

FIXTURES = Path(__file__).parent / "fixtures" / "faspay"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=JAKARTA)  # inside the sandbox's (ANCHOR) world
FAST = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2)}
USERNAME, PASSWORD = CREDENTIALS["faspay"]["username"], CREDENTIALS["faspay"]["password"]
SIGNATURE = signature(USERNAME, PASSWORD)


# -- helpers ---------------------------------------------------------------------------------------

def make_response(payload, status=200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    response.url = "https://fasbill-dev.faspay.co.id" + PATH
    return response


class FakeSession:
    """Stands in for requests.Session: records calls, answers with `responder(body) -> Response`."""

    def __init__(self, responder):
        self.responder = responder
        self.calls: list[dict] = []

    def request(self, method, url, **kwargs):
        self.calls.append({"method": method, "url": url, **kwargs})
        return self.responder(kwargs.get("json"))


def empty_page(body=None):
    return make_response({"current_page": "1", "total_pages": 0, "total_data": 0, "response_code": "00",
                          "data": [], "message": "Success get billing"})


def fake_client(responder, **options) -> tuple[Client, FakeSession]:
    session = FakeSession(responder)
    options.setdefault("window_months_back", 0)
    options.setdefault("window_months_ahead", 0)  # one window: 7 calls, one per status code
    options.setdefault("owed_years_back", 0)  # no older owed reads (their own test below)
    options.setdefault("read_concurrency", 1)  # query after query (sliced reads: their own tests)
    client = Client(secrets=dict(CREDENTIALS["faspay"]), options=options, session=session, now=lambda: NOW, **FAST)
    return client, session


def sandbox_client(server, **options) -> Client:
    kwargs = credential("faspay", server)
    kwargs["options"].update({"read_concurrency": 1, **options})  # sliced reads: their own tests
    return get_client("faspay", now=lambda: NOW, **kwargs, **FAST)


def read_all(client, **kwargs):
    return [invoice for page in client.iter_pages(**kwargs) for invoice in page.invoices]


def truth_of(server) -> dict[str, dict]:
    return {row["external_id"]: row for row in server.sandbox.providers["faspay"].truth()}


def comparable(invoice) -> tuple:
    return (invoice.status, invoice.provider_status, invoice.outstanding, invoice.customer_ref,
            invoice.customer_name, invoice.issued_at, invoice.due_at, invoice.number, invoice.currency)


def comparable_truth(row) -> tuple:
    return (row["status"], row["provider_status"], row["outstanding"], row["customer_ref"],
            row["customer_name"], row["issued_at"], row["due_at"], row["number"], row["currency"])


def sandbox_get(server, body=None, *, params=None, data=None):
    url = server.base_url("faspay") + PATH
    return requests.get(url, json=body, params=params, data=data, timeout=5)


def valid_body(**changes):
    body = {"signature": SIGNATURE, "page": "1", "start_period": "2024-11-01 00:00:00",
            "end_period": "2027-01-31 23:59:59", "status": 2}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture(autouse=True)
def sandbox_clock():
    """The sandbox's clock runs from NOW, the client's today, so the old debt's late payers are
    still owed (they pay 45/50 days after ANCHOR) whatever day the suite runs."""
    with time_machine.travel(NOW):
        yield


@pytest.fixture(scope="module")
def shared_server():
    """One read-only sandbox (size 600) for the tests that do not mutate."""
    from gateways.sandbox import start

    server = start(providers=("faspay",), size=600, anchor=ANCHOR)
    yield server
    server.stop()


# -- signature --------------------------------------------------------------------------------------

def test_signature_is_sha1_of_lowercase_hex_md5():
    # Vectors computed outside Python: printf '%s' "$(printf '%s' USERPASS | md5sum | cut -d' ' -f1)" | sha1sum
    assert signature("bot-arbook", "sandbox-faspay-pass") == "2eb4f7a497499d0e28c518147c646b70b7abae11"
    assert signature("bot12345", "p@ssw0rd") == "9ee7323a8277ecb1efa0970df10378617c39c542"
    inner = hashlib.md5(b"bot12345p@ssw0rd").hexdigest()
    assert inner == "37a74fb2bc00c4043400f2056ce7dd76"
    assert signature("bot12345", "p@ssw0rd") == hashlib.sha1(inner.encode()).hexdigest()
    # The documented example has the same shape: 40 lowercase hex digits.
    documented = json.loads(re.sub(r",\s*}", "}", (FIXTURES / "get-all-billing-request.doc.txt").read_text()))
    assert re.fullmatch(r"[0-9a-f]{40}", documented["signature"])
    assert re.fullmatch(r"[0-9a-f]{40}", SIGNATURE)
    assert expected_signature(USERNAME, PASSWORD) == SIGNATURE  # the sandbox checks the same recipe


# -- the documented examples ------------------------------------------------------------------------

def test_documented_response_parses_to_remote_invoices():
    documented = json.loads((FIXTURES / "get-all-billing-response.json").read_text())
    answered = []

    def responder(body):
        answered.append(body["status"])
        return make_response(documented) if len(answered) == 1 else empty_page()

    client, _ = fake_client(responder)
    pages = list(client.iter_pages())
    assert len(pages) == 1 and pages[0].number == 1
    invoices = pages[0].invoices
    assert [i.external_id for i in invoices] == [
        "INV-FPY-022300178", "INV-T8V-022300005", "INV-T8V-022300008", "INV-T8V-022300007",
        "INV-MP2-022300002", "INV-FPY-042301733"]
    first = invoices[0]
    assert first.number == "INV-FPY-022300178"
    assert (first.status, first.provider_status) == (st.PAID, "Paid")
    assert first.outstanding == Decimal("-400800")  # overpayment credit, kept negative
    assert first.amount is None and first.paid_amount is None  # the list has no total
    assert first.currency == "IDR"
    assert (first.customer_ref, first.customer_name) == ("32", "PT. Media Indonusa (ASTEL Group)")
    assert first.issued_at == datetime(2023, 2, 7, 0, 0, tzinfo=JAKARTA)
    assert first.due_at == datetime(2023, 2, 8, 10, 4, tzinfo=JAKARTA)
    assert first.due_at.utcoffset() == timedelta(hours=7)
    assert first.raw["period"] == "202302"
    assert [i.outstanding for i in invoices[1:4]] == [Decimal(0)] * 3
    draft = invoices[4]
    assert (draft.status, draft.provider_status, draft.outstanding) == (st.DRAFT, "Draft", Decimal("456900"))
    assert draft.customer_ref == "99" and draft.due_at == datetime(2023, 3, 22, 17, 3, tzinfo=JAKARTA)
    assert invoices[5].issued_at == datetime(2023, 4, 11, tzinfo=JAKARTA)
    assert answered == [0, 7, 1, 4, 5, 2, 3]  # every status code once; one window; no second page


def test_request_matches_documented_example():
    documented = json.loads(re.sub(r",\s*}", "}", (FIXTURES / "get-all-billing-request.doc.txt").read_text()))
    client, session = fake_client(empty_page, customer_id="21")
    list(client.iter_pages())
    call = session.calls[0]
    assert call["method"] == "GET" and call["url"] == "https://fasbill-dev.faspay.co.id" + PATH
    body = call["json"]  # sent as the body of the GET
    assert set(body) == set(documented) - {"due_date"}
    for name in body:
        assert type(body[name]) is type(documented[name]), name
    assert body["signature"] == SIGNATURE and body["page"] == "1" and body["customer_id"] == 21
    assert (body["start_period"], body["end_period"]) == ("2026-11-01 00:00:00", "2026-11-30 23:59:59")
    assert [c["json"]["status"] for c in session.calls] == [0, 7, 1, 4, 5, 2, 3]

    client, session = fake_client(empty_page, period_format="date")
    list(client.iter_pages())
    assert (session.calls[0]["json"]["start_period"], session.calls[0]["json"]["end_period"]) == \
        ("2026-11-01", "2026-11-30")


def test_status_vocabularies_and_unknown_values(caplog):
    rows = [{"invoice_no": f"INV-{n}", "customer_name": "x", "invoice_date": "2026-11-02 00:00:00",
             "due_date": "2026-11-09 00:00:00", "invoice_status": label, "outstanding_amount": "1500.50",
             "period": "202611"}
            for n, label in enumerate(["Overdue", "Partial Paid", "Proforma", "Cancelled", "Unpaid", 4, "EXPIRED",
                                       "paid", "Refunded", "Refunded"])]
    rows.append({"invoice_no": "INV-TABLE", "Invoice_status": "Paid", "customer_name": "table spelling",
                 "invoice_date": None, "due_date": None, "outstanding_amount": 0, "period": "202611"})
    rows.append({"invoice_no": "INV-NOLABEL", "customer_name": "no label", "invoice_date": "2026-11-02",
                 "due_date": "2026-11-09 08:00:00", "outstanding_amount": 10})
    payload = {"current_page": "1", "total_pages": 1, "total_data": len(rows), "response_code": "00", "data": rows,
               "message": "Success get billing"}
    calls = []

    def responder(body):
        calls.append(body)
        return make_response(payload) if len(calls) == 3 else empty_page()  # the 3rd query asks for status 1

    client, _ = fake_client(responder)
    with caplog.at_level(logging.WARNING, logger="gateways"):
        invoices = {i.external_id: i for i in read_all(client)}
    got = [invoices[f"INV-{n}"].status for n in range(10)]
    assert got == [st.OPEN, st.PARTIALLY_PAID, st.DRAFT, st.CANCELLED, st.OPEN, st.OPEN, st.EXPIRED, st.PAID,
                   st.UNKNOWN, st.UNKNOWN]
    assert invoices["INV-8"].provider_status == "Refunded" and invoices["INV-5"].provider_status == "4"
    assert invoices["INV-0"].outstanding == Decimal("1500.50")
    assert caplog.text.count("Refunded") == 1  # logged once, never raised
    table = invoices["INV-TABLE"]
    assert (table.status, table.provider_status) == (st.PAID, "Paid")
    assert table.issued_at == datetime(2026, 11, 1, tzinfo=JAKARTA) and table.due_at is None  # from `period`
    assert invoices["INV-NOLABEL"].provider_status == "Unpaid"  # the bucket it was listed under
    assert invoices["INV-NOLABEL"].issued_at == datetime(2026, 11, 2, tzinfo=JAKARTA)


# -- paging --------------------------------------------------------------------------------------------

def test_paging_walks_to_total_pages_and_stops():
    def row(n):
        return {"customer_id": 1, "customer_name": "c", "invoice_date": "2026-11-02 00:00:00", "invoice_no": f"N{n}",
                "due_date": "2026-11-30 00:00:00", "invoice_status": "Draft", "outstanding_amount": 1,
                "period": "202611"}

    def responder(body):
        page = int(body["page"])
        if body["status"] == 0:  # three pages: 2 + 2 + 1 rows
            data = [row(page * 2), row(page * 2 + 1)][: 2 if page < 3 else 1]
            return make_response({"current_page": str(page), "total_pages": 3, "total_data": 5,
                                  "response_code": "00", "data": data, "message": "ok"})
        if body["status"] == 7:  # claims 9 pages, runs dry at page 2: an empty page ends the query
            data = [row(100)] if page == 1 else []
            return make_response({"current_page": str(page), "total_pages": 9, "total_data": 900,
                                  "response_code": "00", "data": data, "message": "ok"})
        return make_response({"current_page": "1", "total_pages": 0, "total_data": 0, "response_code": "00",
                              "data": None, "message": "ok"})  # `data` null: nothing

    client, session = fake_client(responder)
    pages = list(client.iter_pages())
    asked = [(c["json"]["status"], c["json"]["page"]) for c in session.calls]
    assert asked == [(0, "1"), (0, "2"), (0, "3"), (7, "1"), (7, "2"), (1, "1"), (4, "1"), (5, "1"), (2, "1"),
                     (3, "1")]
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert [len(p.invoices) for p in pages] == [2, 2, 1, 1]


def test_full_read_matches_sandbox_truth(shared_server):
    truth = truth_of(shared_server)
    client = sandbox_client(shared_server)
    pages = list(client.iter_pages())
    invoices = [i for p in pages for i in p.invoices]
    assert len(invoices) == len(truth) == 600 + len(LEGACY_PLAN)  # each once: one bucket per invoice
    got = {i.external_id: i for i in invoices}
    assert set(got) == set(truth)
    assert {k: comparable(v) for k, v in got.items()} == {k: comparable_truth(v) for k, v in truth.items()}
    assert all(i.amount is None and i.paid_amount is None for i in invoices)  # the list has no total
    assert all(t["amount"] > 0 for t in truth.values())  # ...but the sandbox knows it
    labels = Counter(i.provider_status for i in invoices)
    assert set(labels) == {"Draft", "Proforma", "Unpaid", "Overdue", "Partial Paid", "Paid", "Cancelled"}
    assert any(i.outstanding < 0 for i in invoices if i.status == st.PAID)  # credits
    assert any(i.due_at is None for i in invoices)  # odd-but-allowed shapes survive
    assert any(i.customer_ref == "" for i in invoices)
    overdue = [i for i in invoices if i.provider_status == "Overdue"]
    assert overdue and all(i.status == st.OPEN and i.due_at < NOW for i in overdue)
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert any(len(p.invoices) == PAGE_SIZE for p in pages)  # some query needed more than one page


def test_resume_continues_after_the_committed_page(shared_server):
    client = sandbox_client(shared_server)
    pages = list(client.iter_pages())
    cut = len(pages) // 2
    # A resumed run on a later day walks the same plan (the marker carries its bounds).
    later = sandbox_client(shared_server)
    later.now = lambda: NOW + timedelta(days=45)
    rest = list(later.iter_pages(resume=pages[cut].resume))
    assert [i.external_id for p in rest for i in p.invoices] == \
        [i.external_id for p in pages[cut + 1:] for i in p.invoices]
    assert rest[0].number == 1
    assert list(client.iter_pages(resume=pages[-1].resume)) == []
    with pytest.raises(ValueError):
        list(client.iter_pages(resume="not json"))


def test_window_and_customer_options(shared_server):
    truth = truth_of(shared_server)
    client = sandbox_client(shared_server, window_months_back=6, window_months_ahead=1)
    got = {i.external_id for i in read_all(client)}
    first = datetime(2026, 5, 1, tzinfo=JAKARTA)  # 6 months before 2026-11-20, from the 1st
    end = datetime(2027, 1, 1, tzinfo=JAKARTA)
    # The window bounds the settled history; bills still owed (or draft) are read however old.
    assert got == {k for k, t in truth.items()
                   if t["issued_at"] < end and (first <= t["issued_at"] or t["status"] in st.UNSETTLED)}
    assert any(truth[k]["issued_at"] < first for k in got)

    customer = Counter(t["customer_ref"] for t in truth.values() if t["customer_ref"]).most_common(1)[0][0]
    client = sandbox_client(shared_server, customer_id=customer)
    got = {i.external_id for i in read_all(client)}
    assert got == {k for k, t in truth.items() if t["customer_ref"] == customer} and len(got) > 3


def test_incremental_read(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=400, legacy=False)  # the seeded window only
    truth = truth_of(server)
    since = datetime(2026, 10, 15, tzinfo=JAKARTA)
    recent = datetime(2026, 4, 1, tzinfo=JAKARTA)  # 6 months (default lookback) before since's month
    # An old overdue bill is paid after `since`, inside the lookback: the incremental read must see it.
    target = next(t for t in truth.values() if t["provider_status"] == "Overdue" and t["issued_at"] >= recent)
    server.sandbox.providers["faspay"].mutate(target["external_id"], {"status": "paid"})
    truth = truth_of(server)
    client = sandbox_client(server)
    got = {i.external_id: i for i in read_all(client, since=since)}
    expected = {k for k, t in truth.items()
                if t["status"] not in (st.PAID, st.CANCELLED) or t["issued_at"] >= recent}
    assert set(got) == expected
    assert len(got) < len(truth)  # old paid/cancelled history is skipped
    assert (got[target["external_id"]].status, got[target["external_id"]].outstanding) == (st.PAID, Decimal(0))


def test_mutate_shows_in_a_reread(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=300, legacy=False)  # exactly 300 invoices
    truth = truth_of(server)
    overdue = next(t for t in truth.values() if t["provider_status"] == "Overdue")
    paid = next(t for t in truth.values() if t["provider_status"] == "Paid" and t["due_at"] < NOW - timedelta(days=60))
    draft = next(t for t in truth.values() if t["provider_status"] == "Draft")
    control = server.url + "/_sandbox/invoices/faspay/"
    answer = requests.post(control + overdue["external_id"],
                           json={"status": "paid", "paid_at": "2026-10-30T10:00:00+07:00"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["status"] == st.PAID
    sandbox = server.sandbox.providers["faspay"]
    sandbox.mutate(paid["external_id"], {"status": "open"})  # reopened after its due date: Overdue again
    sandbox.mutate(draft["external_id"], {"outstanding": str(draft["amount"] / 4)})  # a part payment
    assert requests.post(control + "INV-FPY-0000099999", json={"status": "paid"}, timeout=5).status_code == 404
    with pytest.raises(KeyError):
        sandbox.mutate("INV-XYZ-123", {"status": "paid"})
    with pytest.raises(ValueError):
        sandbox.mutate(draft["external_id"], {"status": "charged_back"})

    got = {i.external_id: i for i in read_all(sandbox_client(server))}
    assert len(got) == 300
    assert (got[overdue["external_id"]].status, got[overdue["external_id"]].provider_status,
            got[overdue["external_id"]].outstanding) == (st.PAID, "Paid", Decimal(0))
    assert (got[paid["external_id"]].provider_status, got[paid["external_id"]].outstanding) == \
        ("Overdue", paid["amount"])
    assert (got[draft["external_id"]].status, got[draft["external_id"]].outstanding) == \
        (st.PARTIALLY_PAID, draft["amount"] / 4)
    after = truth_of(server)
    assert after[overdue["external_id"]]["paid_at"] == datetime(2026, 10, 30, 10, tzinfo=JAKARTA)
    assert after[draft["external_id"]]["paid_amount"] == draft["amount"] * 3 / 4
    server.sandbox.reset()
    assert truth_of(server)[overdue["external_id"]]["provider_status"] == "Overdue"


# -- check_connection ----------------------------------------------------------------------------------

def test_check_connection_is_one_get_with_a_json_body(shared_server):
    truth = truth_of(shared_server)
    expected = sum(1 for t in truth.values() if t["provider_status"] == "Unpaid"
                   and date(2026, 11, 1) <= t["issued_at"].date() <= NOW.date())
    requests.post(shared_server.url + "/_sandbox/reset", timeout=5)
    message = sandbox_client(shared_server).check_connection()
    assert message == f"Connected: {expected} unpaid invoices issued this month" and expected > 1
    seen = requests.get(shared_server.url + "/_sandbox/requests/faspay", timeout=5).json()
    assert len(seen) == 1 and seen[0]["method"] == "GET" and seen[0]["path"] == PATH
    assert seen[0]["headers"]["content-type"] == "application/json"
    body = json.loads(seen[0]["body"])
    assert (body["status"], body["page"], body["start_period"]) == (1, "1", "2026-11-01 00:00:00")


# -- errors --------------------------------------------------------------------------------------------

def test_auth_errors(shared_server, caplog):
    kwargs = credential("faspay", shared_server)
    kwargs["secrets"]["password"] = "wrong-password-123"
    client = get_client("faspay", now=lambda: NOW, **kwargs, **FAST)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthError) as refused:
            client.check_connection()
    assert "Invalid signature" in str(refused.value)
    for secret in ("wrong-password-123", client.signature, USERNAME):
        assert secret not in str(refused.value) and secret not in caplog.text

    requests.post(shared_server.url + "/_sandbox/faults", json={"provider": "faspay", "kind": "bad_signature"},
                  timeout=5)
    with pytest.raises(AuthError):
        sandbox_client(shared_server).check_connection()

    client, _ = fake_client(lambda body: make_response({"message": "Unauthorized"}, status=401))
    with pytest.raises(AuthError):
        client.check_connection()


def test_transient_errors(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=50)
    faults = server.url + "/_sandbox/faults"
    requests.post(faults, json={"provider": "faspay", "kind": "503", "times": 1}, timeout=5)
    assert sandbox_client(server).check_connection().startswith("Connected")  # retried once, then fine

    requests.post(faults, json={"provider": "faspay", "kind": "503", "times": 3}, timeout=5)
    with pytest.raises(TransientError) as unavailable:
        sandbox_client(server).check_connection()
    assert unavailable.value.status_code == 503

    requests.post(faults, json={"provider": "faspay", "kind": "429", "times": 3, "retry_after": 0}, timeout=5)
    with pytest.raises(TransientError):
        list(sandbox_client(server).iter_pages())

    requests.post(faults, json={"provider": "faspay", "kind": "hang", "times": 3, "seconds": 0.6}, timeout=5)
    client = get_client("faspay", now=lambda: NOW, **credential("faspay", server),
                        backoff_base=0.01, max_retries=2, timeout=(1, 0.2))
    with pytest.raises(TransientError, match="timed out"):
        client.check_connection()


@pytest.mark.parametrize("payload, why", [
    ({"response_code": "01", "message": "Invalid status"}, "response_code 01: Invalid status"),
    ({"response_code": "00", "current_page": "1", "data": [{"invoice_no": "A"}]}, "no total_pages"),
    ({"response_code": "00", "current_page": "1", "total_pages": 1, "data": {"invoice_no": "A"}}, "not a list"),
    ({"response_code": "00", "current_page": "1", "total_pages": "x", "data": []}, "not a number"),
    ({"response_code": "00", "total_pages": 1, "data": [{"customer_name": "no number"}]}, "no invoice_no"),
    ({"response_code": "00", "total_pages": 1, "data": [{"invoice_no": "A", "outstanding_amount": "lots"}]},
     "not a number"),
    ({"response_code": "00", "total_pages": 1, "data": [{"invoice_no": "A", "due_date": "tomorrow"}]},
     "not a date"),
    ({"data": []}, "no response_code"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_responses(payload, why):
    client, _ = fake_client(lambda body: make_response(payload))
    with pytest.raises(BadResponseError, match=why):
        [page.invoices for page in client.iter_pages()]  # a bad row fails when its page is parsed


def test_bad_response_from_sandbox_faults(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=50)
    for kind in ("malformed", "truncated"):
        requests.post(server.url + "/_sandbox/faults", json={"provider": "faspay", "kind": kind}, timeout=5)
        with pytest.raises(BadResponseError):
            sandbox_client(server).check_connection()
    client, _ = fake_client(lambda body: make_response(b"<html>502 Bad Gateway</html>"))
    with pytest.raises(BadResponseError, match="not valid JSON"):
        client.check_connection()


def test_data_not_found_is_an_empty_result():
    client, session = fake_client(lambda body: make_response({"response_code": "01", "message": "Data not found"}))
    assert list(client.iter_pages()) == []
    assert len(session.calls) == 7


@pytest.mark.parametrize("secrets, options, why", [
    ({"username": "bot-arbook"}, {}, "username\\+password"),
    ({"username": "", "password": "x"}, {}, "username\\+password"),
    (dict(CREDENTIALS["faspay"]), {"customer_id": "ACME"}, "customer_id"),
    (dict(CREDENTIALS["faspay"]), {"split_months": 0}, "split_months"),
    (dict(CREDENTIALS["faspay"]), {"period_format": "unix"}, "period_format"),
])
def test_configuration_errors(secrets, options, why):
    with pytest.raises(ConfigurationError, match=why) as error:
        get_client("faspay", secrets=secrets, options=options)
    assert "sandbox-faspay-pass" not in str(error.value)


def test_secrets_never_logged(shared_server, caplog):
    client = sandbox_client(shared_server, window_months_back=2, window_months_ahead=0)
    with caplog.at_level(logging.DEBUG):
        assert read_all(client)
        client.check_connection()
    assert "get-all-billing" in caplog.text  # the calls were logged...
    for secret in (USERNAME, PASSWORD, SIGNATURE, hashlib.md5((USERNAME + PASSWORD).encode()).hexdigest()):
        assert secret not in caplog.text  # ...without the credential or anything derived from it


# -- the sandbox itself ----------------------------------------------------------------------------------

def test_sandbox_validates_like_faspay(shared_server):
    def answer(response):
        assert response.status_code == 200
        return response.json()

    assert answer(sandbox_get(shared_server, valid_body(signature="0" * 40))) == \
        {"response_code": "01", "message": "Invalid signature"}
    assert answer(sandbox_get(shared_server, valid_body(signature=None)))["response_code"] == "01"
    for missing in ("page", "status", "start_period", "end_period"):
        result = answer(sandbox_get(shared_server, valid_body(**{missing: None})))
        assert result == {"response_code": "01", "message": f"{missing} is required"}
    for bad in ({"status": 6}, {"page": "0"}, {"start_period": "01/05/2023"}, {"customer_id": "abc"},
                {"end_period": "2024-01-01"}):
        assert answer(sandbox_get(shared_server, valid_body(**bad)))["response_code"] == "01", bad
    ok = answer(sandbox_get(shared_server, valid_body()))
    assert ok["response_code"] == "00" and ok["current_page"] == "1" and len(ok["data"]) == PAGE_SIZE
    assert ok["total_pages"] == -(-ok["total_data"] // PAGE_SIZE) > 1
    # the same query as a form body and as query parameters (what a GET-body-less client could send)
    params = {k: str(v) for k, v in valid_body().items()}
    assert answer(sandbox_get(shared_server, data=params))["data"] == ok["data"]
    assert answer(sandbox_get(shared_server, params=params))["data"] == ok["data"]
    beyond = answer(sandbox_get(shared_server, valid_body(page=str(ok["total_pages"] + 1))))
    assert beyond["response_code"] == "00" and beyond["data"] == []
    assert answer(sandbox_get(shared_server)) == {"response_code": "01", "message": "Signature is required"}
    assert requests.post(shared_server.base_url("faspay") + PATH, json=valid_body(), timeout=5).status_code == 405


def test_sandbox_buckets_and_filters(shared_server):
    truth = truth_of(shared_server)
    totals = {}
    for code in (0, 1, 2, 3, 4, 5, 7):
        totals[code] = sandbox_get(shared_server, valid_body(status=code)).json()["total_data"]
    whole = [t for t in truth.values() if date(2024, 11, 1) <= t["issued_at"].date() <= date(2027, 1, 31)]
    assert sum(totals.values()) == len(whole)  # every invoice in exactly one bucket
    assert totals == dict(Counter(t["status_code"] for t in whole))
    unpaid = sandbox_get(shared_server, valid_body(status=1)).json()["data"]
    overdue = sandbox_get(shared_server, valid_body(status=4)).json()["data"]
    today = ANCHOR.isoformat()
    assert unpaid and all(r["invoice_status"] == "Unpaid" and r["due_date"][:10] >= today for r in unpaid)
    assert overdue and all(r["invoice_status"] == "Overdue" and r["due_date"][:10] < today for r in overdue)
    # inclusive date-only bounds; due_date filter = due on that day
    some = next(t for t in truth.values() if t["status_code"] == 2 and t["due_at"] is not None)
    day = some["issued_at"].date().isoformat()
    rows = sandbox_get(shared_server, valid_body(start_period=day, end_period=day)).json()["data"]
    assert some["external_id"] in {r["invoice_no"] for r in rows}
    assert all(r["invoice_date"].startswith(day) for r in rows)
    due = some["due_at"].date()
    rows = sandbox_get(shared_server, valid_body(due_date=due.isoformat())).json()["data"]
    assert {r["invoice_no"] for r in rows} == {k for k, t in truth.items() if t["status_code"] == 2 and
                                               t["due_at"] is not None and t["due_at"].date() == due}


def test_sandbox_pages_stay_cheap_at_a_million():
    sandbox = Sandbox(providers=("faspay",), size=1_000_000, anchor=ANCHOR).providers["faspay"]
    body = json.dumps(valid_body(page="1234", status=2)).encode()
    request = Request("GET", PATH, {}, {"content-type": "application/json"}, body)
    started = time.perf_counter()
    first = sandbox.get_all_billing(request, None).body
    build = time.perf_counter() - started
    started = time.perf_counter()
    again = sandbox.get_all_billing(request, None).body
    page = time.perf_counter() - started
    assert first == again and len(first["data"]) == PAGE_SIZE and first["total_data"] > 300_000
    assert build < 15 and page < 0.5, (build, page)
    assert sandbox._index_of(sandbox._record(999_999)["invoice_no"]) == 999_999
    listed = first["data"][0]["invoice_no"]
    assert sandbox.mutate(listed, {"status": "cancelled"})["provider_status"] == "Cancelled"
    assert sandbox.get_all_billing(request, None).body["total_data"] == first["total_data"] - 1  # index patched


# -- the sandbox's old debt (legacy invoices beyond `size`) ------------------------------------------------

#: The six legacy invoices of an ANCHOR sandbox, oldest first: INV-OLD-<MMYY of the invoice date><key>.
LEGACY_NUMBERS = ["INV-OLD-102100000", "INV-OLD-102100001", "INV-OLD-042400002", "INV-OLD-042400003",
                  "INV-OLD-102400004", "INV-OLD-102400005"]
OLD_WINDOW = {"start_period": "2016-11-01 00:00:00", "end_period": "2027-01-31 23:59:59"}  # 10 years back
CODES = (0, 1, 2, 3, 4, 5, 7)


def faspay_sandbox(size, **config):
    return Sandbox(providers=("faspay",), size=size, anchor=ANCHOR, **config).providers["faspay"]


def billing(sandbox, **changes) -> dict:
    body = json.dumps(valid_body(**changes)).encode()
    response = sandbox.get_all_billing(Request("GET", PATH, {}, {"content-type": "application/json"}, body), None)
    assert response.status == 200 and response.body["response_code"] == "00", response.body
    return response.body


def listed(sandbox, **changes) -> list[str]:
    """Every invoice number of one query, page after page."""
    numbers, page = [], 1
    while True:
        answer = billing(sandbox, page=str(page), **changes)
        if not answer["data"]:
            assert page == answer["total_pages"] + 1 or answer["total_pages"] == 0
            return numbers
        assert answer["total_pages"] == -(-answer["total_data"] // PAGE_SIZE)
        assert len(answer["data"]) == (PAGE_SIZE if page < answer["total_pages"] else
                                       answer["total_data"] - PAGE_SIZE * (answer["total_pages"] - 1))
        numbers += [row["invoice_no"] for row in answer["data"]]
        page += 1


def at_utc_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), timezone.utc)


def test_sandbox_old_debt_is_there_whatever_the_size():
    plan = legacy_plan(ANCHOR)
    assert [lg.kind for lg in plan] == ["open", "partial", "open", "other", "late", "late"]
    anchor = datetime(2026, 11, 1, tzinfo=JAKARTA)
    for size in (0, 7, 600):
        sandbox = faspay_sandbox(size)
        truth = list(sandbox.truth())
        assert len(truth) == size + len(plan)
        old, seeded = truth[:len(plan)], truth[len(plan):]
        assert [t["external_id"] for t in old] == LEGACY_NUMBERS  # oldest first, before every seeded one
        assert not set(LEGACY_NUMBERS) & {t["external_id"] for t in seeded}
        assert all(set(t) == set(seeded[0]) for t in old) if seeded else True
        assert all(t["issued_at"] < s["issued_at"] for t in old for s in seeded[:1])
        for t, lg in zip(old, plan):
            assert t["issued_at"] == datetime(lg.issued.year, lg.issued.month, lg.issued.day, tzinfo=JAKARTA)
            assert t["due_at"].date() == lg.due and t["due_at"] < anchor
            assert t["customer_ref"].isdigit() and t["customer_name"] and t["currency"] == "IDR"
            assert sandbox._index_of(t["external_id"]) < 0
        by_kind = {lg.key: t for lg, t in zip(plan, old)}
        for key in (0, 2, 4, 5):  # open, and the late payers before they pay: the full total, overdue
            t = by_kind[key]
            assert (t["status"], t["provider_status"], t["status_code"]) == (st.OPEN, "Overdue", 4)
            assert t["outstanding"] == t["amount"] > 0 and t["paid_amount"] == 0 and t["paid_at"] is None
        partial, other = by_kind[1], by_kind[3]
        for t in (partial, other):
            assert (t["status"], t["provider_status"], t["status_code"]) == (st.PARTIALLY_PAID, "Partial Paid", 5)
            assert 0 < t["outstanding"] < t["amount"] and t["paid_amount"] == t["amount"] - t["outstanding"]
        assert partial["outstanding"] != other["outstanding"]

    rows = billing(faspay_sandbox(0), status=4, **OLD_WINDOW)["data"]
    first = rows[0]
    assert first["invoice_no"] == LEGACY_NUMBERS[0] and first["invoice_status"] == "Overdue"
    assert (first["invoice_date"], first["period"]) == ("2021-10-18 00:00:00", "202110")
    assert first["due_date"].startswith("2021-11-01 ") and isinstance(first["customer_id"], int)


def test_sandbox_old_debt_in_buckets_windows_filters_and_pages():
    sandbox, seeded = faspay_sandbox(2000), faspay_sandbox(2000, legacy=False)  # the same seeded population
    truth = {t["external_id"]: t for t in sandbox.truth()}
    for code in CODES:
        old = [n for n in LEGACY_NUMBERS if truth[n]["status_code"] == code]
        numbers = listed(sandbox, status=code, **OLD_WINDOW)
        assert numbers == old + listed(seeded, status=code, **OLD_WINDOW), code  # old debt first, then seeded
        assert billing(sandbox, status=code, **OLD_WINDOW)["total_data"] == len(numbers)
        # the 24-month window starts after the old debt: the seeded answer, unchanged
        assert billing(sandbox, status=code)["total_data"] == billing(seeded, status=code)["total_data"]
    overdue = listed(sandbox, status=4, **OLD_WINDOW)
    assert overdue[:4] == [LEGACY_NUMBERS[k] for k in (0, 2, 4, 5)] and len(overdue) > PAGE_SIZE
    second = billing(sandbox, status=4, page="2", **OLD_WINDOW)
    assert second["data"][0]["invoice_no"] == listed(seeded, status=4, **OLD_WINDOW)[PAGE_SIZE - 4]

    # the window filters on invoice_date: date-only bounds are inclusive, a later start time excludes the day
    spring = {"start_period": "2024-04-18", "end_period": "2024-04-21"}
    assert listed(sandbox, status=4, **spring) == [LEGACY_NUMBERS[2]]
    assert listed(sandbox, status=5, **spring) == [LEGACY_NUMBERS[3]]
    assert listed(sandbox, status=4, start_period="2024-04-18 00:00:01", end_period="2024-04-21") == []
    assert listed(sandbox, status=4, start_period="2021-01-01", end_period="2021-12-31") == [LEGACY_NUMBERS[0]]
    assert listed(sandbox, status=5, start_period="2021-01-01", end_period="2021-12-31") == [LEGACY_NUMBERS[1]]
    # customer_id and due_date
    for number in LEGACY_NUMBERS:
        t = truth[number]
        customer = int(t["customer_ref"])
        mine = listed(sandbox, status=t["status_code"], customer_id=str(customer), **OLD_WINDOW)
        assert number in mine
        assert mine == [n for n in LEGACY_NUMBERS if truth[n]["status_code"] == t["status_code"]
                        and truth[n]["customer_ref"] == t["customer_ref"]] + \
            listed(seeded, status=t["status_code"], customer_id=str(customer), **OLD_WINDOW)
        assert listed(sandbox, status=t["status_code"], due_date=t["due_at"].date().isoformat(), **OLD_WINDOW) == \
            [number]
        assert number not in listed(sandbox, status=2, customer_id=str(customer), **OLD_WINDOW)

    empty = faspay_sandbox(0)
    answer = billing(empty, status=4, **OLD_WINDOW)
    assert (answer["total_data"], answer["total_pages"], len(answer["data"])) == (4, 1, 4)
    assert billing(empty, status=4, page="2", **OLD_WINDOW)["data"] == []
    assert billing(empty, status=2, **OLD_WINDOW)["total_data"] == 0


def test_sandbox_late_payers_pay_by_the_sandbox_clock():
    plan = legacy_plan(ANCHOR)
    late = [lg for lg in plan if lg.kind == "late"]
    assert [lg.paid_on for lg in late] == [date(2026, 12, 16), date(2026, 12, 21)]
    sandbox = faspay_sandbox(50)
    first, second = LEGACY_NUMBERS[4], LEGACY_NUMBERS[5]

    def truth():
        return {t["external_id"]: t for t in sandbox.truth()}

    with time_machine.travel(at_utc_midnight(late[0].paid_on) - timedelta(seconds=1), tick=False):
        before = truth()[first]
        assert (before["provider_status"], before["outstanding"], before["paid_at"]) == \
            ("Overdue", before["amount"], None)
        assert first in listed(sandbox, status=4, **OLD_WINDOW)
        assert first not in listed(sandbox, status=2, **OLD_WINDOW)
    with time_machine.travel(at_utc_midnight(late[0].paid_on), tick=False):
        after = truth()
        paid = after[first]
        assert (paid["status"], paid["provider_status"], paid["status_code"]) == (st.PAID, "Paid", 2)
        assert paid["outstanding"] == 0 and paid["paid_amount"] == paid["amount"] == before["amount"]
        assert paid["paid_at"] == at_utc_midnight(late[0].paid_on)
        assert listed(sandbox, status=2, **OLD_WINDOW)[0] == first  # the oldest paid invoice now
        assert first not in listed(sandbox, status=4, **OLD_WINDOW)
        assert after[second]["provider_status"] == "Overdue"  # pays five days later
        row = next(r for r in billing(sandbox, status=2, **OLD_WINDOW)["data"] if r["invoice_no"] == first)
        assert (row["invoice_status"], Decimal(str(row["outstanding_amount"]))) == ("Paid", 0)
    with time_machine.travel(at_utc_midnight(late[1].paid_on) + timedelta(days=400), tick=False):
        after = truth()
        assert [after[n]["provider_status"] for n in (first, second)] == ["Paid", "Paid"]
        assert [after[n]["provider_status"] for n in LEGACY_NUMBERS[:4]] == \
            ["Overdue", "Partial Paid", "Overdue", "Partial Paid"]  # the rest of the old debt stays owed
        assert listed(sandbox, status=2, **OLD_WINDOW)[:2] == [first, second]


def test_sandbox_mutate_and_notify_an_old_invoice():
    sandbox = faspay_sandbox(100)
    original = {t["external_id"]: t for t in sandbox.truth()}
    overdue_before = billing(sandbox, status=4, **OLD_WINDOW)["total_data"]
    paid_before = billing(sandbox, status=2, **OLD_WINDOW)["total_data"]
    opened = LEGACY_NUMBERS[0]
    row = sandbox.mutate(opened, {"status": "paid", "paid_at": "2026-10-30T10:00:00+07:00"})
    assert (row["external_id"], row["status"], row["provider_status"], row["outstanding"]) == \
        (opened, st.PAID, "Paid", 0)
    assert row["paid_at"] == datetime(2026, 10, 30, 10, tzinfo=JAKARTA)
    assert listed(sandbox, status=2, **OLD_WINDOW)[0] == opened
    assert opened not in listed(sandbox, status=4, **OLD_WINDOW)
    assert billing(sandbox, status=4, **OLD_WINDOW)["total_data"] == overdue_before - 1
    assert billing(sandbox, status=2, **OLD_WINDOW)["total_data"] == paid_before + 1

    part = sandbox.mutate(LEGACY_NUMBERS[1], {"outstanding": "1000"})
    assert (part["provider_status"], part["outstanding"]) == ("Partial Paid", Decimal(1000))
    assert sandbox.mutate(LEGACY_NUMBERS[3], {"status": "cancelled"})["provider_status"] == "Cancelled"
    assert listed(sandbox, status=3, **OLD_WINDOW)[0] == LEGACY_NUMBERS[3]

    # overrides win over the clock: one late payer pays early, the other is reopened for good
    early = sandbox.mutate(LEGACY_NUMBERS[4], {"status": "paid"})
    assert (early["provider_status"], early["paid_at"]) == ("Paid", datetime(2026, 11, 1, 9, tzinfo=JAKARTA))
    sandbox.mutate(LEGACY_NUMBERS[5], {"status": "open"})
    with time_machine.travel(at_utc_midnight(date(2027, 6, 1)), tick=False):
        now = {t["external_id"]: t for t in sandbox.truth()}
        assert now[LEGACY_NUMBERS[5]]["provider_status"] == "Overdue"
        assert now[LEGACY_NUMBERS[4]]["paid_at"] == datetime(2026, 11, 1, 9, tzinfo=JAKARTA)

    # the payment notification finds it by its number and puts it in the event's state first
    [(headers, body)] = sandbox.notifications(LEGACY_NUMBERS[2], event="PAID")
    message = json.loads(body)
    assert message["transaction_number"] == LEGACY_NUMBERS[2] and message["billing_status"] == "PAID"
    assert message["billing_total"] == str(original[LEGACY_NUMBERS[2]]["amount"])
    inner = hashlib.md5((USERNAME + PASSWORD + LEGACY_NUMBERS[2]).encode()).hexdigest()
    assert message["signature"] == hashlib.sha1(inner.encode()).hexdigest()
    assert {t["external_id"]: t for t in sandbox.truth()}[LEGACY_NUMBERS[2]]["provider_status"] == "Paid"

    with pytest.raises(KeyError):
        sandbox.mutate("INV-OLD-102100006", {"status": "paid"})
    sandbox.reset()
    assert {t["external_id"]: t for t in sandbox.truth()} == original


def test_sandbox_without_old_debt():
    for size in (0, 600):
        plain, with_old = faspay_sandbox(size, legacy=False), faspay_sandbox(size)
        truth = list(plain.truth())
        assert len(truth) == size and not any(t["external_id"].startswith("INV-OLD-") for t in truth)
        assert truth == list(with_old.truth())[len(LEGACY_NUMBERS):]
        for code in CODES:
            old = sum(1 for t in list(with_old.truth())[:len(LEGACY_NUMBERS)] if t["status_code"] == code)
            assert billing(plain, status=code, **OLD_WINDOW)["total_data"] == \
                billing(with_old, status=code, **OLD_WINDOW)["total_data"] - old
        with pytest.raises(KeyError):
            plain.mutate(LEGACY_NUMBERS[0], {"status": "paid"})
    assert billing(faspay_sandbox(0, legacy=False), status=4, **OLD_WINDOW)["total_data"] == 0


def test_sandbox_old_debt_stays_cheap_at_a_million():
    sandbox = faspay_sandbox(1_000_000)
    first = billing(sandbox, status=4, **OLD_WINDOW)  # builds the index
    assert [r["invoice_no"] for r in first["data"][:4]] == [LEGACY_NUMBERS[k] for k in (0, 2, 4, 5)]
    overdue = sandbox._bucket_arrays()[4]
    assert first["total_data"] == len(overdue) + 4 and first["total_pages"] == -(-(len(overdue) + 4) // PAGE_SIZE)
    assert [r["invoice_no"] for r in first["data"][4:]] == \
        [sandbox._record(i)["invoice_no"] for i in overdue[:PAGE_SIZE - 4]]
    started = time.perf_counter()
    for page in (2, 1234, first["total_pages"]):
        rows = billing(sandbox, status=4, page=str(page), **OLD_WINDOW)["data"]
        offset = (page - 1) * PAGE_SIZE - 4
        assert [r["invoice_no"] for r in rows] == \
            [sandbox._record(i)["invoice_no"] for i in overdue[offset:offset + PAGE_SIZE]]
    customer = billing(sandbox, status=5, customer_id=str(sandbox._record(-3)["customer"]), **OLD_WINDOW)
    assert customer["data"][0]["invoice_no"] == LEGACY_NUMBERS[3]
    assert time.perf_counter() - started < 10
    assert sandbox.mutate(LEGACY_NUMBERS[0], {"status": "paid"})["provider_status"] == "Paid"
    assert billing(sandbox, status=4, **OLD_WINDOW)["total_data"] == first["total_data"] - 1


# -- sliced full reads (gateways.slices) --------------------------------------------------------

def _days(tasks) -> set[tuple[int, date]]:
    """Every (status code, invoice day) a list of (code, from, to) queries asks for."""
    return {(code, start + timedelta(days=n)) for code, start, end in tasks for n in range((end - start).days + 1)}


def test_a_sliced_full_read_returns_exactly_what_the_sequential_one_does(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=2500)
    sequential = read_all(sandbox_client(server))
    client = sandbox_client(server, read_concurrency=6)
    pages = list(client.iter_pages())
    sliced = [i for p in pages for i in p.invoices]
    assert len(sliced) == len({i.external_id for i in sliced}) == 2500 + len(LEGACY_PLAN)  # none twice
    assert {i.external_id: i for i in sliced} == {i.external_id: i for i in sequential}
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    # The slices ask for exactly the (code, day) pairs of the query-after-query plan, each once:
    # whole-month windows, disjoint, oldest first, the settled window cut finer (5 per reader).
    bounds = client._plan_bounds(None)
    slices = client._slices(bounds)
    tasks = [(code, date.fromisoformat(s["r"] if s["r"] and code in (2, 3) else s["a"]), date.fromisoformat(s["b"]))
             for s in slices for code in s["k"]]
    assert _days(tasks) == _days([(t.code, t.start, t.end) for t in client._plan(*bounds)])
    assert sum((end - start).days + 1 for _, start, end in tasks) == len(_days(tasks))
    windows = [(date.fromisoformat(s["a"]), date.fromisoformat(s["b"])) for s in slices]
    assert all(end + timedelta(days=1) == following for (_, end), (following, _) in zip(windows, windows[1:]))
    assert all(start.day == 1 for start, _ in windows)
    assert len([s for s in slices if len(s["k"]) == 7]) == 19  # 37 months for 6 x 5 slices: 2-month windows


def test_inside_a_slice_the_codes_follow_a_bills_life():
    """A bill that moves on while the read is under way is seen in its newer bucket: in every
    window the codes are asked in `OPEN_CODES + CLOSED_CODES` order, whichever threads run."""
    client, session = fake_client(lambda body: empty_page(), read_concurrency=4, window_months_back=11,
                                  owed_years_back=2)
    assert list(client.iter_pages()) == []
    asked: dict[str, list[int]] = {}
    for call in session.calls:
        asked.setdefault(call["json"]["start_period"], []).append(call["json"]["status"])
    assert len(asked) == 12 + 1  # 12 settled months for 4 x 5 slices (1-month windows), one old owed block
    assert sorted(map(tuple, asked.values())) == [(0, 7, 1, 4, 5)] + [(0, 7, 1, 4, 5, 2, 3)] * 12


def test_a_sliced_read_resumes_every_slice_where_it_stopped(sandbox_factory):
    server = sandbox_factory(providers=("faspay",), size=2000, legacy=False)
    everything = {i.external_id for i in read_all(sandbox_client(server))}
    pages = list(sandbox_client(server, read_concurrency=4).iter_pages())
    # Cut where a slice stopped inside a query's pages (and some slices are done, some not).
    cut = next(n for n, p in enumerate(pages) if n >= len(pages) // 3 and any(
        s["c"] and s["c"][1] > 1 for s in json.loads(p.resume)["s"]))
    committed = pages[: cut + 1]
    states = json.loads(committed[-1].resume)["s"]
    assert any(s["d"] for s in states) and not all(s["d"] for s in states)
    # A later day, a different option: the marker's slices are walked, not a new plan.
    later = sandbox_client(server, read_concurrency=2, split_months=1)
    later.now = lambda: NOW + timedelta(days=45)
    rest = list(later.iter_pages(resume=committed[-1].resume))
    before = [i.external_id for p in committed for i in p.invoices]
    after = [i.external_id for p in rest for i in p.invoices]
    assert not set(before) & set(after)  # nothing read twice ...
    assert set(before) | set(after) == everything  # ... and nothing left out
    assert list(sandbox_client(server).iter_pages(resume=pages[-1].resume)) == []  # finished: nothing left


@pytest.mark.parametrize("marker", [
    '{"s": [{"a": "2026-01-01"}]}',
    '{"s": [{"a": "2026-01-01", "b": "2026-03-31", "k": [9], "r": null, "c": null, "d": false}]}',
    '{"s": [{"a": "2026-01-01", "b": "2026-03-31", "k": [1], "r": null, "c": [3, 1], "d": false}]}',
    '{"s": [{"a": "yesterday", "b": "2026-03-31", "k": [1], "r": null, "c": null, "d": false}]}',
])
def test_a_broken_sliced_marker_is_refused(marker):
    client, session = fake_client(lambda body: empty_page(), read_concurrency=4)
    with pytest.raises(ValueError):
        list(client.iter_pages(resume=marker))
    assert session.calls == []


def test_slices_are_read_at_once(sandbox_factory):
    from gateways.sandbox import Fault

    server = sandbox_factory(providers=("faspay",), size=300, legacy=False)
    server.sandbox.add_fault("faspay", Fault(kind="latency", seconds=0.1, times=10_000))
    started = time.perf_counter()
    sequential = read_all(sandbox_client(server))
    sequential_s = time.perf_counter() - started
    started = time.perf_counter()
    sliced = read_all(sandbox_client(server, read_concurrency=16))
    sliced_s = time.perf_counter() - started
    assert sorted(i.external_id for i in sliced) == sorted(i.external_id for i in sequential)
    # 38 queries one after another; 269 finer ones (37 months x 7 + 2 x 5), 16 at a time.
    assert sequential_s >= 3.8 and sliced_s < sequential_s * 0.75


def test_an_incremental_read_stays_query_after_query(sandbox_factory):
    """Slices are for full reads; an incremental one asks the same queries as before, in order."""
    client, session = fake_client(lambda body: empty_page(), read_concurrency=8, window_months_back=11)
    list(client.iter_pages(since=NOW - timedelta(days=1)))
    sequential, plain = fake_client(lambda body: empty_page(), window_months_back=11)
    list(sequential.iter_pages(since=NOW - timedelta(days=1)))
    assert [c["json"] for c in session.calls] == [c["json"] for c in plain.calls]
