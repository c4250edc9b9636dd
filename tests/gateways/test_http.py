"""The shared HTTP layer (gateways/http.py) against a running sandbox.

The calls go to Espay's routes: `merchantinfo` (a read; sent with idempotent=True, as the Espay
client does, so it is retried) and `sendinvoice` (a POST that must never be retried blindly).
Faults are queued through the sandbox's control endpoint and take effect before the route runs.
"""
from __future__ import annotations

import logging
import socket
import time

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from gateways.errors import AuthError, BadResponseError, OutcomeUnknownError, TransientError
from gateways.espay import sendinvoice_signature
from gateways.http import HttpClient
from gateways.sandbox import CREDENTIALS, start

from .conftest import ANCHOR

KEY = CREDENTIALS["espay"]["signature_key"]
COMM = CREDENTIALS["espay"]["comm_code"]
INFO = "/rest/merchant/merchantinfo"
SEND = "/rest/virtualaccount/sendinvoice"


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


class Sleeps(list):
    """An injected `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_http(base_url: str, **overrides) -> tuple[HttpClient, Sleeps]:
    sleeps = Sleeps()
    options = {"backoff_base": 0.01, "max_retries": 2, "timeout": (1, 2), "secrets": [KEY], "sleep": sleeps}
    options.update(overrides)
    return HttpClient(provider="espay", base_url=base_url, **options), sleeps


def fault(server, **body) -> None:
    requests.post(server.url + "/_sandbox/faults", json={"provider": "espay", **body}, timeout=5).raise_for_status()


def hits(server) -> int:
    return requests.get(server.url + "/_sandbox/stats", timeout=5).json().get("espay", 0)


def merchant_info(http: HttpClient):
    return http.request_json("POST", INFO, data={"key": KEY}, idempotent=True)


def send_form(rq_uuid: str = "http-1") -> dict[str, str]:
    when = "2026-11-03 09:30:00"
    return {"rq_uuid": rq_uuid, "rq_datetime": when, "comm_code": COMM, "ccy": "IDR", "total_invoices": "1",
            "signature": sendinvoice_signature(rq_uuid, when, COMM, KEY),
            "invoices": '{"H-1":{"member_code":"M","amount":1000,"total_amount":1000,"number_of_installment":"1",'
                        '"installment_amount":"1000","billing_date":"05"}}'}


# -- retries ---------------------------------------------------------------------------------

def test_retries_on_503_then_succeeds(server):
    http, sleeps = make_http(server.base_url("espay"))
    fault(server, kind="503", times=2)
    assert merchant_info(http)["error_code"] == "0000"
    assert hits(server) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.01 and 0 <= sleeps[1] <= 0.02  # full jitter under the exponential cap


def test_429_honours_retry_after(server):
    http, sleeps = make_http(server.base_url("espay"))
    fault(server, kind="429", retry_after=3)
    assert merchant_info(http)["error_code"] == "0000"
    assert sleeps == [3.0]
    assert hits(server) == 2


def test_retry_after_beyond_the_limit_is_not_waited_for(server):
    http, sleeps = make_http(server.base_url("espay"), retry_after_max=5)
    fault(server, kind="429", retry_after=120)
    with pytest.raises(TransientError, match="wait 120s") as caught:
        merchant_info(http)
    assert caught.value.status_code == 429 and sleeps == [] and hits(server) == 1


def test_transient_error_after_retries_are_exhausted(server):
    http, sleeps = make_http(server.base_url("espay"))
    fault(server, kind="503", times=10)
    with pytest.raises(TransientError, match=r"server error \(HTTP 503, 3 attempts\)") as caught:
        merchant_info(http)
    assert caught.value.status_code == 503 and caught.value.provider == "espay"
    assert hits(server) == 3 and len(sleeps) == 2


def test_hung_response_times_out_as_transient(server):
    http, sleeps = make_http(server.base_url("espay"), timeout=(1, 0.5), max_retries=1)
    fault(server, kind="hang", seconds=2, times=5)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"timed out \(2 attempts\)") as caught:
        merchant_info(http)
    assert not isinstance(caught.value, OutcomeUnknownError)  # a read may simply be repeated
    assert time.monotonic() - started < 1.8  # two 0.5 s read timeouts, not the 2 s hang
    assert len(sleeps) == 1


# -- POST is never retried blindly -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["503", "429"])
def test_post_is_not_retried(server, kind):
    http, sleeps = make_http(server.base_url("espay"))
    fault(server, kind=kind, times=5)
    with pytest.raises(TransientError) as caught:
        http.request_json("POST", SEND, data=send_form())
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert hits(server) == 1 and sleeps == []


def test_post_read_timeout_is_outcome_unknown(server):
    http, sleeps = make_http(server.base_url("espay"), timeout=(1, 0.5))
    fault(server, kind="hang_after", seconds=1.5)
    with pytest.raises(OutcomeUnknownError, match="outcome is unknown") as caught:
        http.request_json("POST", SEND, data=send_form("http-unknown"))
    assert isinstance(caught.value, TransientError)
    assert hits(server) == 1 and sleeps == []
    # The request was applied before the hang: the sandbox listed the invoice.
    assert [t["external_id"] for t in server.sandbox.providers["espay"].truth()] == ["H-1"]


def test_post_to_a_closed_port_is_transient_not_unknown():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http, _ = make_http(f"http://127.0.0.1:{port}/espay")
    with pytest.raises(TransientError, match="could not connect") as caught:
        http.request("POST", SEND, data=send_form())
    assert not isinstance(caught.value, OutcomeUnknownError)


# -- refusals and bad bodies -----------------------------------------------------------------

class Canned(requests.adapters.BaseAdapter):
    """A provider-agnostic stand-in for an endpoint that answers one fixed response."""

    def __init__(self, status: int, body: bytes = b"{}"):
        super().__init__()
        self.status, self.body, self.calls = status, body, 0

    def send(self, request, **kwargs):
        self.calls += 1
        response = requests.Response()
        response.status_code, response._content, response.url, response.request = (
            self.status, self.body, request.url, request)
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        return response

    def close(self):
        pass


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_auth_error(status):
    adapter = Canned(status, b'{"message": "unauthorized"}')
    session = requests.Session()
    session.mount("http://canned/", adapter)
    http, sleeps = make_http("http://canned", session=session)
    with pytest.raises(AuthError, match=f"HTTP {status}") as caught:
        http.request_json("GET", "/invoices")
    assert caught.value.status_code == status
    assert adapter.calls == 1 and sleeps == []  # retrying cannot fix a credential


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_malformed_json_is_a_bad_response(server, kind):
    http, _ = make_http(server.base_url("espay"))
    fault(server, kind=kind)
    with pytest.raises(BadResponseError, match="not valid JSON") as caught:
        merchant_info(http)
    assert caught.value.status_code == 200


def test_other_4xx_is_a_bad_response(server):
    http, sleeps = make_http(server.base_url("espay"))
    with pytest.raises(BadResponseError, match="HTTP 404") as caught:
        http.request("POST", "/rest/no/such/route", data={}, idempotent=True)
    assert caught.value.status_code == 404 and sleeps == [] and hits(server) == 1


def test_parsed_numbers_are_decimals_not_floats(server):
    adapter = Canned(200, b'{"amount": 1234.50, "count": 3}')
    session = requests.Session()
    session.mount("http://canned/", adapter)
    http, _ = make_http("http://canned", session=session)
    data = http.request_json("GET", "/x")
    assert str(data["amount"]) == "1234.50" and type(data["amount"]).__name__ == "Decimal"
    assert data["count"] == 3


# -- secrets ---------------------------------------------------------------------------------

def test_secrets_never_appear_in_log_lines_or_messages(server, caplog):
    caplog.set_level(logging.DEBUG)
    http, _ = make_http(server.base_url("espay"))
    derived = sendinvoice_signature("http-secret", "2026-11-03 09:30:00", COMM, KEY)
    http.add_secret(derived)
    messages = []

    # Secrets carried in the body (how Espay sends them) never reach any log line, even at DEBUG.
    http.request_json("POST", SEND, data=send_form("http-secret"))
    fault(server, kind="503", times=5)
    with pytest.raises(TransientError) as caught:
        http.request_json("POST", SEND, data=send_form("http-secret"))
    messages.append(str(caught.value))

    # A secret (or a signature derived from one) inside a path is masked in our messages and log lines.
    requests.delete(server.url + "/_sandbox/faults", timeout=5)
    for path in (f"/rest/{KEY}/x", f"/rest/sig/{derived}"):
        with pytest.raises(BadResponseError) as caught:
            http.request("POST", path, data={}, idempotent=True)
        messages.append(str(caught.value))
    adapter = Canned(401)
    session = requests.Session()
    session.mount("http://canned/", adapter)
    canned, _ = make_http("http://canned", session=session)
    with pytest.raises(AuthError) as caught:
        canned.request("GET", f"/accounts/{KEY}")
    messages.append(str(caught.value))

    assert all("***" in m for m in messages[1:])
    # The client side's log lines (the sandbox's own access log plays the provider's server).
    client_side = [r for r in caplog.records
                   if r.name.startswith("gateways") and not r.name.startswith("gateways.sandbox")]
    ours = "\n".join(r.getMessage() for r in client_side)
    assert "provider=espay" in ours
    for secret in (KEY, derived):
        assert secret not in ours
        assert all(secret not in m for m in messages)
    # urllib3 logs request lines (with the path) at DEBUG by itself; HttpClient cannot mask those,
    # so the only rule that protects them is "no secret in a URL path". Bodies never show up there.
    third_party = "\n".join(r.getMessage() for r in caplog.records if r not in client_side)
    assert "http-secret" not in third_party and "signature=" not in third_party


def test_the_proxy_environment_is_read_once_per_client(monkeypatch):
    from gateways.http import HttpClient

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "sandbox.local")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp-bundle.pem")
    proxied = HttpClient(provider="xendit", base_url="https://api.xendit.co").session
    assert proxied.proxies.get("https") == "http://proxy.internal:3128" and proxied.verify == "/etc/ssl/corp-bundle.pem"
    assert not proxied.trust_env  # no per-request environment lookups, no .netrc credentials
    direct = HttpClient(provider="xendit", base_url="https://sandbox.local/xendit").session
    assert not direct.proxies
