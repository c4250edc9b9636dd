"""Espay: signatures, the sendinvoice form, per-line results, errors, and the sandbox behind them."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

from gateways import get_client
from gateways import status as st
from gateways.base import JAKARTA
from gateways.errors import AuthError, BadResponseError, ConfigurationError, OutcomeUnknownError, TransientError
from gateways.espay import (ALREADY_LISTED, MISSING, STATUS_MAP, SUCCESS, EspayInvoice, paymentreport_reply_signature,
                            paymentreport_signature, sendinvoice_signature, signature)
from gateways.models import RemoteInvoice
from gateways.sandbox import CREDENTIALS, start

from .conftest import ANCHOR, credential

FIXTURES = Path(__file__).parent / "fixtures" / "espay"
KEY = CREDENTIALS["espay"]["signature_key"]
COMM = CREDENTIALS["espay"]["comm_code"]
FAST = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2)}
RQ_AT = datetime(2026, 11, 3, 9, 30, 0, tzinfo=JAKARTA)


@pytest.fixture(scope="module")
def shared_server():
    """One sandbox for the module (stopping one costs ~0.5 s); each test starts from a reset."""
    server = start(providers=("espay",), anchor=ANCHOR)
    yield server
    server.stop()


@pytest.fixture
def server(shared_server):
    requests.post(shared_server.url + "/_sandbox/reset", timeout=5).raise_for_status()
    return shared_server


def client_for(server, **overrides):
    kwargs = credential("espay", server)
    kwargs.update(FAST)
    kwargs.update(overrides)
    return get_client("espay", **kwargs)


def line(doc_no: str, member_code: str = "M-001", amount: str = "150000", **extra) -> EspayInvoice:
    return EspayInvoice(doc_no=doc_no, member_code=member_code, amount=Decimal(amount), billing_date="05", **extra)


def espay_calls(server) -> list[dict]:
    return list(server.sandbox.providers["espay"].calls)


def sent_forms(server) -> list[dict]:
    got = requests.get(server.url + "/_sandbox/requests/espay", timeout=5).json()
    return [{k: v[-1] for k, v in parse_qs(r["body"], keep_blank_values=True).items()}
            for r in got if r["path"] == "/rest/virtualaccount/sendinvoice"]


def stats(server) -> dict:
    return requests.get(server.url + "/_sandbox/stats", timeout=5).json()


def fault(server, **body):
    requests.post(server.url + "/_sandbox/faults", json={"provider": "espay", **body}, timeout=5).raise_for_status()


# -- signatures ------------------------------------------------------------------------------

def test_sendinvoice_signature_reproduces_the_documented_test_vector():
    assert sendinvoice_signature("123ABC-DEF456", "2017-08-08 09:17:45", "MYCOMMCODE", "S3cr317kEY") == (
        "638f5fd9f590ce81b15570d32edaec03dab1498aa2525947411be6d6e2aa7a2d")
    assert signature("123ABC-DEF456", "2017-08-08 09:17:45", "MYCOMMCODE", "S3cr317kEY", "SendInvoice") == (
        "638f5fd9f590ce81b15570d32edaec03dab1498aa2525947411be6d6e2aa7a2d")


def test_payment_notification_recipes():
    expected = hashlib.sha256(b"##S3CR317KEY##2026-11-03 10:00:00##INV-7##PAYMENTREPORT##").hexdigest()
    assert paymentreport_signature("S3cr317kEY", "2026-11-03 10:00:00", "inv-7") == expected
    reply = hashlib.sha256(b"##S3CR317KEY##UUID-1##2026-11-03 10:00:01##0000##PAYMENTREPORT-RS##").hexdigest()
    assert paymentreport_reply_signature("S3cr317kEY", "uuid-1", "2026-11-03 10:00:01", "0000") == reply


# -- the request line ------------------------------------------------------------------------

def test_invoice_wire_format_matches_the_documented_example():
    documented = json.loads((FIXTURES / "sendinvoice_request_invoices.json").read_text())
    ours = {
        "INVZSKSK022": EspayInvoice(doc_no="INVZSKSK022", member_code="18032018", member_name="Arief",
                                    amount=Decimal(20000), total_amount=Decimal(20000), number_of_installment=12,
                                    installment_amount=Decimal(2000000), balance_payment_amount=Decimal(2000000),
                                    description="VA Payment Test", billing_date=5).wire(),
        "INVZSKSK023": EspayInvoice(doc_no="INVZSKSK023", member_code="18032019", member_name="Sahid",
                                    amount=30000, total_amount="30000", number_of_installment="12",
                                    installment_amount="3000000", balance_payment_amount="3000000",
                                    description="VA Payment Test", billing_date="05").wire(),
    }
    assert ours == documented


def test_invoice_line_refuses_floats_and_fills_defaults():
    with pytest.raises(TypeError):
        EspayInvoice(doc_no="A", member_code="M", amount=10.5, billing_date="05")
    with pytest.raises(ValueError):
        EspayInvoice(doc_no="A", member_code="M", amount=Decimal(100), billing_date="05", number_of_installment=3)
    inv = EspayInvoice(doc_no=" A1 ", member_code="M", amount=Decimal("1250.50"), billing_date="7")
    assert (inv.doc_no, inv.total_amount, inv.installment_amount, inv.billing_date) == (
        "A1", Decimal("1250.50"), Decimal("1250.50"), "07")
    assert inv.wire()["amount"] == "1250.50"  # never a float
    assert EspayInvoice(doc_no="B", member_code="M", amount=1, billing_date="32").billing_date == "32"


# -- the documented response -----------------------------------------------------------------

def test_documented_response_example_parses(server):
    client = client_for(server)
    data = json.loads((FIXTURES / "sendinvoice_response.json").read_text())
    sent = ["INVZSKSK022", "INVZSKSK023", "INVZSKSK024", "INVZSKSK025", "INVZSKSK026"]
    result = client.parse_response(data, doc_nos=sent)

    assert list(result.results) == sent  # every doc_no sent, in the order sent
    assert (result.rq_uuid, result.error_code, result.total_invoice) == ("123ABC-DEF456", SUCCESS, 4)
    assert result.rs_datetime == datetime(2018, 5, 10, 14, 0, 5, tzinfo=JAKARTA)

    ok = result.results["INVZSKSK023"]
    assert ok.ok and ok.doc_ref_no == "DOC010101"
    expires = datetime(2018, 5, 17, 7, 0, tzinfo=timezone.utc)  # 14:00 Jakarta
    assert [(v.bank_code, v.va_number, v.expires_at, v.description) for v in ok.vas] == [
        ("008", "6280615238775939", expires, "VA Payment Test"),
        ("009", "8871215238775939", expires, "VA Payment Test"),
    ]
    assert ok.vas[0].expires_at.utcoffset() == timedelta(hours=7)

    # An error inside invoices_success is still an error: the code decides, not the container.
    assert (result.results["INVZSKSK022"].code, result.results["INVZSKSK022"].ok) == ("0002", False)
    assert result.results["INVZSKSK024"].code == "0001"
    assert result.results["INVZSKSK024"].message == "Mandatory field left empty = Billing Date"
    assert result.results["INVZSKSK025"].already_listed
    assert result.results["INVZSKSK026"].code == MISSING
    assert result.results["INVZSKSK026"].message == "missing from response"
    assert [r.doc_no for r in result.succeeded] == ["INVZSKSK023"]
    assert not result.ok

    invoice = EspayInvoice(doc_no="INVZSKSK023", member_code="18032019", member_name="Sahid", amount=30000,
                           total_amount=30000, number_of_installment=12, installment_amount=3000000,
                           billing_date="05")
    issued = datetime(2018, 5, 10, 14, 0, tzinfo=JAKARTA)
    remote = client.parse_invoice(invoice, ok, issued_at=issued)
    assert remote == RemoteInvoice(
        external_id="INVZSKSK023", status=st.OPEN, provider_status="LISTED", currency="IDR", number="INVZSKSK023",
        customer_name="Sahid", customer_ref="18032019", amount=Decimal(30000), outstanding=Decimal(30000),
        paid_amount=Decimal(0), issued_at=issued, payment_channel="VA 008, 009")
    assert remote.raw["doc_ref_no"] == "DOC010101"
    with pytest.raises(ValueError):
        client.parse_invoice(invoice, result.results["INVZSKSK022"])


def test_error_wins_over_success_and_odd_shapes_are_accepted(server):
    client = client_for(server)
    va = {"bank_code": "014", "va_number": "3901000000000001", "expired": "2026-11-10 23:59:59"}
    data = {
        "rq_uuid": "u", "rs_datetime": "garbled", "error_code": "0000",
        "invoices": {"A": {"error_code": "0000", "doc_ref_no": "DOC1", "list_va": [va]},
                     "B": {"error_code": "0000", "doc_ref_no": "DOC2", "list_va": {"014": {**va, "expired": "?"}}}},
        "invoices_success": [],  # an empty block as PHP encodes it
        "invoices_error": {"A": {"error_code": "0002", "error_msg": "Data already listed = Document No"}},
        "total_invoice": "x",
    }
    result = client.parse_response(data, doc_nos=["A", "B"])
    assert result.results["A"].already_listed and not result.results["A"].vas
    assert result.results["B"].ok and result.results["B"].vas[0].expires_at is None
    assert result.rs_datetime is None and result.total_invoice is None


def test_status_map_and_unknown_values(server, caplog):
    client = client_for(server)
    assert {client.map_status(k) for k in STATUS_MAP} <= set(st.ALL)
    assert client.map_status("S") == st.PAID and client.map_status("EX") == st.EXPIRED
    with caplog.at_level(logging.WARNING):
        assert client.map_status("ZZ") == st.UNKNOWN
        assert client.map_status("ZZ") == st.UNKNOWN
    assert caplog.text.count("unknown status") == 1


# -- against the sandbox ---------------------------------------------------------------------

def test_send_round_trip_with_per_line_errors(server):
    client = client_for(server)
    batch = [
        line("INV-1", member_name="PT Satu", description="October dues"),
        line("INV-2", member_code="REJECT-9"),
        line("INV-3", member_code=""),
        line("INV-4", amount="0"),
        line("INV-5", amount="99000.00"),
    ]
    result = client.send_invoices(rq_uuid="batch-1-chunk-1", invoices=batch, rq_datetime=RQ_AT)

    assert result.rq_uuid == "batch-1-chunk-1" and result.error_code == SUCCESS
    assert result.sent_at == RQ_AT
    codes = {doc: (r.code, r.message) for doc, r in result.results.items()}
    assert codes == {
        "INV-1": ("0000", "success"),
        "INV-2": ("0005", "Member rejected"),
        "INV-3": ("0001", "Mandatory field left empty = Member Code"),
        "INV-4": ("0003", "Invalid amount = Amount"),
        "INV-5": ("0000", "success"),
    }
    first = result.results["INV-1"]
    assert [v.bank_code for v in first.vas] == ["008", "009", "014", "002"]
    assert all(len(v.va_number) == 16 and v.va_number.isdigit() for v in first.vas)
    assert {v.expires_at for v in first.vas} == {datetime(2026, 11, 10, 23, 59, 59, tzinfo=JAKARTA)}
    assert first.vas[0].description == "October dues"
    assert first.doc_ref_no.startswith("DOC")

    # What went over the wire: a form, the count equal to the invoices, a signature that verifies.
    (form,) = sent_forms(server)
    assert set(form) == {"rq_uuid", "rq_datetime", "signature", "comm_code", "ccy", "invoices", "total_invoices"}
    invoices = json.loads(form["invoices"])
    assert list(invoices) == ["INV-1", "INV-2", "INV-3", "INV-4", "INV-5"]
    assert form["total_invoices"] == "5" == str(len(invoices))
    assert form["rq_datetime"] == "2026-11-03 09:30:00" and form["comm_code"] == COMM and form["ccy"] == "IDR"
    assert form["signature"] == sendinvoice_signature("batch-1-chunk-1", "2026-11-03 09:30:00", COMM, KEY)
    assert invoices["INV-5"]["amount"] == 99000 and invoices["INV-1"]["billing_date"] == "05"
    requests_log = requests.get(server.url + "/_sandbox/requests/espay", timeout=5).json()
    assert requests_log[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert espay_calls(server)[0]["signature_valid"] is True

    # The sandbox's ground truth holds exactly the accepted lines, with the same VA numbers.
    truth = {t["external_id"]: t for t in server.sandbox.providers["espay"].truth()}
    assert set(truth) == {"INV-1", "INV-5"}
    assert truth["INV-5"]["amount"] == Decimal(99000) and truth["INV-5"]["status"] == st.OPEN
    assert truth["INV-1"]["vas"] == {v.bank_code: v.va_number for v in first.vas}


def test_rq_datetime_defaults_to_now_in_jakarta(server):
    fixed = datetime(2026, 11, 3, 20, 15, 7, 123456, tzinfo=timezone.utc)  # 04 Nov 03:15:07 in Jakarta
    client = client_for(server, now=lambda: fixed)
    result = client.send_invoices(rq_uuid="clock-1", invoices=[line("CLK-1")])
    assert sent_forms(server)[0]["rq_datetime"] == "2026-11-04 03:15:07"
    assert result.sent_at == fixed.replace(microsecond=0)
    assert result.results["CLK-1"].vas[0].expires_at == datetime(2026, 11, 11, 23, 59, 59, tzinfo=JAKARTA)


def test_500_are_accepted_and_501_raise_before_sending(server):
    client = client_for(server)
    batch = [line(f"BULK-{i:04d}", member_code=f"M{i}") for i in range(500)]
    result = client.send_invoices(rq_uuid="bulk-1", invoices=batch, rq_datetime=RQ_AT)
    assert len(result.results) == 500 and result.ok and result.total_invoice == 500
    call = espay_calls(server)[-1]
    assert (call["total_invoices"], call["count"], call["signature_valid"]) == ("500", 500, True)

    before = stats(server).get("espay", 0)
    too_many = batch + [line("BULK-0500")]
    with pytest.raises(ValueError, match="at most 500"):
        client.send_invoices(rq_uuid="bulk-2", invoices=too_many)
    with pytest.raises(ValueError):
        client.send_invoices(rq_uuid="bulk-3", invoices=[])
    with pytest.raises(ValueError, match="twice"):
        client.send_invoices(rq_uuid="bulk-4", invoices=[line("D"), line("D")])
    with pytest.raises(ValueError):
        client.send_invoices(rq_uuid="", invoices=[line("E")])
    assert stats(server).get("espay", 0) == before


def test_duplicate_send_is_reported_as_already_listed(server):
    client = client_for(server)
    first = client.send_invoices(rq_uuid="dup-1", invoices=[line("DUP-1"), line("DUP-2")], rq_datetime=RQ_AT)
    assert first.ok
    again = client.send_invoices(rq_uuid="dup-2", invoices=[line("DUP-2"), line("DUP-3")], rq_datetime=RQ_AT)
    assert again.results["DUP-2"].already_listed and again.results["DUP-2"].code == ALREADY_LISTED
    assert again.results["DUP-2"].message == "Data already listed = Document No"
    assert again.results["DUP-3"].ok
    assert [t["external_id"] for t in server.sandbox.providers["espay"].truth()].count("DUP-2") == 1


def test_timeout_after_sending_is_outcome_unknown_and_a_retry_finds_the_lines_listed(server):
    client = client_for(server, timeout=(1, 0.5))
    batch = [line("HANG-1"), line("HANG-2", member_code="REJECT-1")]
    fault(server, kind="hang_after", seconds=1.5)
    with pytest.raises(OutcomeUnknownError):
        client.send_invoices(rq_uuid="hang-1", invoices=batch, rq_datetime=RQ_AT)
    assert stats(server)["espay"] == 1  # never retried blindly

    retry = client.send_invoices(rq_uuid="hang-1", invoices=batch, rq_datetime=RQ_AT)
    assert retry.results["HANG-1"].already_listed  # the first try did land
    assert retry.results["HANG-2"].code == "0005"
    assert [c["rq_uuid"] for c in espay_calls(server)] == ["hang-1", "hang-1"]


def test_server_error_on_post_is_transient_and_not_retried(server):
    client = client_for(server)
    fault(server, kind="503", times=3)
    with pytest.raises(TransientError) as caught:
        client.send_invoices(rq_uuid="e-1", invoices=[line("E-1")])
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert caught.value.status_code == 503
    assert stats(server)["espay"] == 1


def test_auth_errors(server):
    wrong = client_for(server, secrets={"signature_key": "not-the-key"})
    with pytest.raises(AuthError, match="0101"):
        wrong.send_invoices(rq_uuid="a-1", invoices=[line("A-1")])
    with pytest.raises(AuthError, match="0103"):
        wrong.check_connection()
    other_comm = client_for(server, options={"comm_code": "SOMEONEELSE"})
    with pytest.raises(AuthError, match="0102"):
        other_comm.send_invoices(rq_uuid="a-2", invoices=[line("A-2")])
    fault(server, kind="bad_signature")
    with pytest.raises(AuthError):
        client_for(server).send_invoices(rq_uuid="a-3", invoices=[line("A-3")])
    assert list(server.sandbox.providers["espay"].truth()) == []


def test_bad_responses(server):
    client = client_for(server)
    fault(server, kind="malformed")
    with pytest.raises(BadResponseError, match="not valid JSON"):
        client.send_invoices(rq_uuid="b-1", invoices=[line("B-1")])
    usd = client_for(server, options={"comm_code": COMM, "ccy": "USD"})
    with pytest.raises(BadResponseError, match="0108"):
        usd.send_invoices(rq_uuid="b-2", invoices=[line("B-2")])
    with pytest.raises(BadResponseError, match="0104: Total invoices does not match"):
        client.parse_response({"error_code": "0104", "error_message": "Total invoices does not match"}, doc_nos=["X"])
    with pytest.raises(BadResponseError):
        client.parse_response(["not", "an", "object"], doc_nos=["X"])
    # A request-level error that still carries per-line results is returned, not raised.
    partial = client.parse_response({"error_code": "0009", "invoices": {"X": {"error_code": "0000"}}},
                                    doc_nos=["X", "Y"])
    assert partial.error_code == "0009" and partial.results["X"].ok and partial.results["Y"].missing


def test_configuration_errors(server):
    base = credential("espay", server)
    with pytest.raises(ConfigurationError, match="signature_key"):
        get_client("espay", base_url=base["base_url"], secrets={}, options=base["options"])
    with pytest.raises(ConfigurationError, match="comm_code"):
        get_client("espay", base_url=base["base_url"], secrets={"signature_key": KEY}, options={})
    client = get_client("espay", secrets={"signature_key": KEY}, options={"comm_code": COMM})
    assert client.http.base_url == "https://sandbox-api.espay.id" and client.ccy == "IDR"


def test_check_connection_and_no_listing(server):
    client = client_for(server)
    assert client.check_connection() == "Connected: 4 banks enabled (002, 008, 009, 014)"
    assert list(client.iter_pages()) == []
    assert list(client.iter_pages(since=datetime.now(timezone.utc), resume='{"p": 3}')) == []


def test_secrets_never_reach_logs_or_messages(server, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(server)
    client.send_invoices(rq_uuid="s-1", invoices=[line("S-1")], rq_datetime=RQ_AT)
    sig = sendinvoice_signature("s-1", "2026-11-03 09:30:00", COMM, KEY)
    messages = []
    fault(server, kind="503")
    for attempt in (lambda: client.send_invoices(rq_uuid="s-2", invoices=[line("S-2")]),
                    lambda: client_for(server, secrets={"signature_key": "wrong-key-123"}).check_connection()):
        with pytest.raises(Exception) as caught:
            attempt()
        messages.append(str(caught.value))
    # Espay echoing the key back in an error message is masked too.
    with pytest.raises(AuthError) as caught:
        client.parse_response({"error_code": "0101", "error_message": f"Invalid Signature for {KEY}"}, doc_nos=["Z"])
    messages.append(str(caught.value))
    assert "***" in messages[-1]
    assert caplog.records, "expected log lines to inspect"
    for secret in (KEY, sig, "wrong-key-123"):
        assert secret not in caplog.text
        assert all(secret not in m for m in messages)


def test_sandbox_accepts_a_json_body_and_indonesian_keys(server):
    rq_datetime = "2026-11-03 09:30:00"
    body = {
        "rq_uuid": "json-1", "rq_datetime": rq_datetime, "comm_code": COMM, "ccy": "IDR", "total_invoices": 1,
        "signature": sendinvoice_signature("json-1", rq_datetime, COMM, KEY),
        "invoices": {"ID-1": {"member_code": "M1", "amount": 5000, "total_amount": 5000, "jumlah_cicilan": "1",
                              "amount_cicilan": "5000", "pelunasan_amount": "5000", "tanggal_penagihan": "05"}},
    }
    answer = requests.post(server.base_url("espay") + "/rest/virtualaccount/sendinvoice", json=body, timeout=5).json()
    assert answer["invoices"]["ID-1"]["error_code"] == "0000"
    assert answer["invoices_error"] == []
    mismatch = dict(body, rq_uuid="json-2", total_invoices=2,
                    signature=sendinvoice_signature("json-2", rq_datetime, COMM, KEY))
    answer = requests.post(server.base_url("espay") + "/rest/virtualaccount/sendinvoice", json=mismatch,
                           timeout=5).json()
    assert answer["error_code"] == "0104" and "invoices" not in answer


def test_mutate_shows_in_truth_and_builds_a_verifiable_notification(server):
    client = client_for(server)
    client.send_invoices(rq_uuid="m-1", invoices=[line("PAY-1", amount="200000"), line("PAY-2")], rq_datetime=RQ_AT)
    sandbox = server.sandbox.providers["espay"]
    before = next(t for t in sandbox.truth() if t["external_id"] == "PAY-1")["updated_at"]

    answer = requests.post(server.url + "/_sandbox/invoices/espay/PAY-1", json={"status": "paid"}, timeout=5)
    assert answer.status_code == 200
    truth = {t["external_id"]: t for t in sandbox.truth()}
    paid = truth["PAY-1"]
    assert (paid["status"], paid["provider_status"], paid["outstanding"], paid["paid_amount"]) == (
        st.PAID, "S", Decimal(0), Decimal(200000))
    assert paid["paid_at"] is not None and paid["updated_at"] >= before
    assert client.map_status(paid["provider_status"]) == paid["status"]
    assert truth["PAY-2"]["status"] == st.OPEN

    sandbox.mutate("PAY-2", {"outstanding": "50000"})
    part = next(t for t in sandbox.truth() if t["external_id"] == "PAY-2")
    assert (part["status"], part["paid_amount"]) == (st.PARTIALLY_PAID, Decimal(100000))
    sandbox.mutate("PAY-2", {"status": "open"})
    reopened = next(t for t in sandbox.truth() if t["external_id"] == "PAY-2")
    assert (reopened["outstanding"], reopened["paid_at"]) == (Decimal(150000), None)

    with pytest.raises(KeyError):
        sandbox.mutate("NOPE", {"status": "paid"})
    assert requests.post(server.url + "/_sandbox/invoices/espay/NOPE", json={"status": "paid"},
                         timeout=5).status_code == 404
    with pytest.raises(ValueError):
        sandbox.mutate("PAY-1", {"status": "draft"})

    note = sandbox.payment_notification("PAY-1")
    assert note["order_id"] == "PAY-1" and note["amount"] == "200000.00" and note["comm_code"] == COMM
    assert note["signature"] == paymentreport_signature(KEY, note["rq_datetime"], "PAY-1")

    requests.post(server.url + "/_sandbox/reset", timeout=5)
    assert list(sandbox.truth()) == []
