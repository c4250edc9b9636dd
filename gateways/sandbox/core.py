"""The gateway sandbox: one local HTTP server that speaks the five providers' documented APIs.

Every provider lives under its own path prefix, so a credential's `base_url` is
`http://127.0.0.1:<port>/<provider>` and the client appends the documented path as usual
(Xendit direct and FarPay would otherwise both own `/v2/invoices`).

Control endpoints (JSON), for tests, benchmarks and demos:
- `POST /_sandbox/faults` `{"provider": "xendit"|"*", "kind": K, "times": 1, "after": 0,
  "seconds": 2, "retry_after": 1}` queues a fault; `DELETE /_sandbox/faults` clears them.
  Kinds: latency, 429, 500, 502, 503, 504, hang (sleep, then 504, nothing applied),
  hang_after (apply the request, then sleep: the "timeout after sending" case), malformed,
  truncated, bad_signature (answer as the provider does for bad auth).
  A single request can also ask for one with the header `X-Sandbox-Fault: K`.
- `POST /_sandbox/invoices/<provider>/<external_id>` `{"status": "paid", "outstanding": "0", ...}`
  changes one invoice (normalized field names); `POST /_sandbox/reset` drops changes and faults.
- `GET /_sandbox/stats` request counts per provider; `GET /_sandbox/requests/<provider>` the last
  requests received (method, path, query, headers without secrets, body) for assertions.
- `POST /_sandbox/notify` `{"provider": "espay"|"xendit"|"faspay"|"farpay", "external_id": ...,
  "url": "<receiver url>", "event": ..., "bad_signature": false, "duplicate": false,
  "out_of_order": false}` plays the provider's payment notification: the invoice is first put in
  the event's state (so a later sync agrees), then the notification is built and signed as the
  provider does (Espay PAYMENTREPORT signature, Xendit x-callback-token, Faspay
  sha1(md5(username+password+transaction_number)), FarPay Standard Webhooks) and POSTed to `url`.
  `bad_signature` signs wrongly; `duplicate` delivers each message twice; `out_of_order` sends the
  newer state first, then an older one (Espay: two instalments, the later one first). Answers
  `{"status", "body"}` of the last delivery and `deliveries` (each one's status and body).
"""
from __future__ import annotations

import importlib
import re
import sys
import json
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import requests

logger = logging.getLogger("gateways.sandbox")

PROVIDERS = ("faspay", "xendit", "munio", "farpay", "espay")
FAULT_KINDS = ("latency", "429", "500", "502", "503", "504", "hang", "hang_after", "malformed", "truncated",
               "bad_signature")

#: The credentials the sandbox accepts, per provider (the demo merchants and the tests use them).
CREDENTIALS: dict[str, dict[str, str]] = {
    "faspay": {"username": "bot-arbook", "password": "sandbox-faspay-pass"},
    "xendit": {"api_key": "sandbox-appgregator-key", "secret_key": "xnd_development_sandbox_secret",
               "callback_token": "sandbox-xendit-callback-token"},
    "munio": {"client_key": "MUNIO-SANDBOX01", "login": "finance@arbook.test", "password": "sandbox-munio-pass",
              "access_token": "sandbox-munio-static-token"},
    "farpay": {"api_key": "sandbox-farpay-api-key", "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    "espay": {"signature_key": "sandbox-espay-key", "comm_code": "SGWARBOOK"},
}
#: Non-secret options the sandbox expects (Appgregator project and connection names).
OPTIONS: dict[str, dict[str, str]] = {
    "xendit": {"mode": "appgregator", "name": "arbook-sandbox", "connection_name": "xendit-sandbox-1"},
    "espay": {"comm_code": "SGWARBOOK", "ccy": "IDR"},
    "farpay": {"version": "v2"},
}


class JSONEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return int(o) if o == o.to_integral_value() and "." not in str(o) else float(o)
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        return super().default(o)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, cls=JSONEncoder, separators=(",", ":")).encode()


@dataclass
class Request:
    method: str
    path: str  # below the provider prefix, e.g. "/v2/invoices"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null", parse_float=Decimal)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return dumps(self.body)


Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass
class Fault:
    kind: str
    times: int = 1
    after: int = 0
    seconds: float = 0.0
    retry_after: int = 1


@dataclass(frozen=True)
class Legacy:
    """One invoice of the sandbox's old debt, beyond the `size` seeded ones (see `legacy_plan`).

    `kind` says which owed state the provider gives it: "open" (not paid at all), "partial"
    (partly paid, where the provider has that; else another owed state of its own), "other" (the
    provider's other owed state: failed, charged back, expired...), "late" (open until `paid_on`,
    paid from then on, by the sandbox's clock: an invoice that leaves the settled window while
    owed and is paid afterwards)."""

    key: int
    kind: str
    issued: date
    due: date
    paid_on: date | None = None

    def paid(self, now: datetime) -> bool:
        """A late payer's state at `now` (the sandbox's clock)."""
        return self.paid_on is not None and now >= datetime.combine(self.paid_on, datetime.min.time(), timezone.utc)


#: (key, kind, days before the anchor it is due, days after the anchor a late payer pays).
LEGACY_PLAN = ((0, "open", 1826, None), (1, "partial", 1823, None), (2, "open", 913, None),
               (3, "other", 910, None), (4, "late", 725, 45), (5, "late", 722, 50))
#: Days from a legacy invoice's issue to its due date.
LEGACY_TERMS = 14


def legacy_plan(anchor: date) -> tuple[Legacy, ...]:
    """The old debt every dated sandbox population carries: owed invoices due 60 and 30 months
    before the anchor (what a 24-month window would lose), and two late payers due ~24 months
    before it that are paid 45/50 days after it (they leave the window owed and are paid later).
    All are older than every seeded invoice, so they sort before index 0 (oldest first)."""
    plan = []
    for key, kind, back, pays in LEGACY_PLAN:
        due = anchor - timedelta(days=back)
        plan.append(Legacy(key=key, kind=kind, issued=due - timedelta(days=LEGACY_TERMS), due=due,
                           paid_on=anchor + timedelta(days=pays) if pays is not None else None))
    return tuple(plan)


class ProviderSandbox:
    """Base of one provider's fake: routes, an auth-failure answer, a population, changes."""

    name: str = ""

    def __init__(self, sandbox: "Sandbox"):
        self.sandbox = sandbox
        self.lock = threading.RLock()
        self.reset()

    @property
    def size(self) -> int:
        return self.sandbox.size_for(self.name)

    @property
    def legacy(self) -> tuple[Legacy, ...]:
        """The old-debt invoices of this population (empty when the sandbox is built with
        `legacy=False`); their late payers' state follows `self.sandbox.now()`."""
        return legacy_plan(self.sandbox.anchor) if self.sandbox.legacy else ()

    @property
    def credentials(self) -> dict[str, str]:
        return CREDENTIALS[self.name]

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path regex, handler) below the provider prefix."""
        raise NotImplementedError

    def auth_failure(self) -> Response:
        return Response(401, {"message": "unauthorized"})

    def reset(self) -> None:
        """Forget every change (the population is regenerated from the seed)."""

    def mutate(self, external_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} sandbox has no mutable population")

    def truth(self):
        """Iterate the population as the sandbox means it: dicts with `external_id`, `status`
        (normalized), `provider_status`, `currency`, `amount`, `outstanding`, ... (ground truth for tests)."""
        return iter(())

    # -- payment notifications (POST /_sandbox/notify) ----------------------------------------
    #: The event sent when none is asked for, and the earlier one `out_of_order` sends second.
    DEFAULT_EVENT = ""
    PREVIOUS_EVENT = ""
    #: event -> the `mutate` changes that put the invoice in that event's state.
    EVENT_CHANGES: dict[str, dict[str, Any]] = {}

    def notification(self, external_id: str, *, event: str, older: bool = False,
                     bad_signature: bool = False) -> tuple[dict[str, str], bytes]:
        """(headers, body) of one notification as the provider would send it."""
        raise NotImplementedError(f"{self.name} sends no payment notifications")

    def notifications(self, external_id: str, *, event: str | None = None, bad_signature: bool = False,
                      out_of_order: bool = False) -> list[tuple[dict[str, str], bytes]]:
        """The messages of one /_sandbox/notify call, in sending order (newest first)."""
        event = event or self.DEFAULT_EVENT
        if not event:
            raise NotImplementedError(f"{self.name} sends no payment notifications")
        with self.lock:
            if event in self.EVENT_CHANGES:
                self.mutate(external_id, dict(self.EVENT_CHANGES[event]))
            messages = [self.notification(external_id, event=event, bad_signature=bad_signature)]
            if out_of_order:
                messages.append(self.notification(external_id, event=self.PREVIOUS_EVENT, older=True,
                                                  bad_signature=bad_signature))
        return messages


class Sandbox:
    """The state shared by the HTTP handler threads: config, providers, faults, request log."""

    def __init__(self, *, seed: int = 42, size: int = 200, sizes: dict[str, int] | None = None,
                 anchor: date | None = None, providers: tuple[str, ...] = PROVIDERS, legacy: bool = True):
        self.seed = seed
        self.legacy = legacy
        self.default_size = size
        self.sizes = dict(sizes or {})
        self.anchor = anchor or datetime.now(timezone.utc).date()
        self.lock = threading.RLock()
        self.faults: dict[str, deque[Fault]] = {}
        self.stats: Counter[str] = Counter()
        self.requests: dict[str, deque[dict[str, Any]]] = {}
        self.providers: dict[str, ProviderSandbox] = {}
        for name in providers:
            module = importlib.import_module(f"{__package__}.{name}")
            self.providers[name] = module.Sandbox(self)
        self._routes = {
            name: [(m, re.compile(p + r"\Z"), h) for m, p, h in prov.routes()]
            for name, prov in self.providers.items()
        }

    @staticmethod
    def now() -> datetime:
        """The sandbox's clock (the real one; tests pin it with time-machine): it decides only
        what happens after the anchor (late payers' payments), never the seeded population."""
        return datetime.now(timezone.utc)

    def size_for(self, provider: str) -> int:
        return int(self.sizes.get(provider, self.default_size))

    # -- faults ------------------------------------------------------------------------------
    def add_fault(self, provider: str, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self.lock:
            self.faults.setdefault(provider, deque()).append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, provider: str) -> Fault | None:
        with self.lock:
            for key in (provider, "*"):
                queue = self.faults.get(key)
                if not queue:
                    continue
                fault = queue[0]
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    queue.popleft()
                return fault
        return None

    def reset(self) -> None:
        with self.lock:
            self.clear_faults()
            self.stats.clear()
            self.requests.clear()
            for prov in self.providers.values():
                with prov.lock:
                    prov.reset()

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[Response, Fault | None]:
        split = urlsplit(raw_path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        if path.startswith("/_sandbox/"):
            return self._control(method, path, body), None
        parts = path.split("/", 2)
        provider = parts[1] if len(parts) > 1 else ""
        if provider not in self.providers:
            return Response(404, {"message": f"no such provider prefix {provider!r}"}), None
        sub = "/" + (parts[2] if len(parts) > 2 else "")
        request = Request(method, sub, query, headers, body)
        with self.lock:
            self.stats[provider] += 1
            self.requests.setdefault(provider, deque(maxlen=50)).append(
                {"method": method, "path": sub, "query": query, "body": body.decode("utf-8", "replace")[:200_000],
                 "headers": {k: v for k, v in headers.items() if k in ("content-type", "accept")}})
        fault = None
        header_fault = headers.get("x-sandbox-fault")
        if header_fault:
            fault = Fault(kind=header_fault, seconds=float(headers.get("x-sandbox-seconds", "0") or 0))
        else:
            fault = self.take_fault(provider)
        prov = self.providers[provider]
        if fault is not None:
            early = self._early_fault(fault, prov)
            if early is not None:
                return early, None
        for route_method, pattern, handler in self._routes[provider]:
            match = pattern.match(sub)
            if match and route_method == method:
                try:
                    response = handler(request, match)
                except Exception:  # a sandbox bug must show as a 500, not kill the thread
                    logger.exception("sandbox %s handler failed", provider)
                    response = Response(500, {"message": "sandbox handler error"})
                return response, fault
        if any(p.match(sub) for _, p, _ in self._routes[provider]):
            return Response(405, {"message": "method not allowed"}), None
        return Response(404, {"message": f"{provider}: no route for {sub}"}), None

    def _early_fault(self, fault: Fault, prov: ProviderSandbox) -> Response | None:
        kind = fault.kind
        if kind == "latency":
            time.sleep(fault.seconds or 0.5)
            return None
        if kind == "hang":
            time.sleep(fault.seconds or 30)
            return Response(504, {"message": "sandbox hang ended"})
        if kind == "429":
            return Response(429, {"error_code": "RATE_LIMIT_EXCEEDED", "message": "too many requests"},
                            {"Retry-After": str(fault.retry_after)})
        if kind in ("500", "502", "503", "504"):
            return Response(int(kind), {"message": "sandbox injected server error"})
        if kind == "bad_signature":
            return prov.auth_failure()
        if kind == "malformed":
            return Response(200, b'{"data": [{"oops": ')
        return None  # truncated: applied to the real body after the handler ran

    def _control(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"{}", parse_float=Decimal)
        except ValueError:
            return Response(400, {"message": "control body must be JSON"})
        parts = [p for p in path.split("/") if p][1:]
        if parts == ["faults"] and method == "POST":
            try:
                fault = Fault(kind=str(payload["kind"]), times=int(payload.get("times", 1)),
                              after=int(payload.get("after", 0)), seconds=float(payload.get("seconds", 0)),
                              retry_after=int(payload.get("retry_after", 1)))
                self.add_fault(str(payload.get("provider", "*")), fault)
            except (KeyError, ValueError) as exc:
                return Response(400, {"message": str(exc)})
            return Response(200, {"ok": True})
        if parts == ["faults"] and method == "DELETE":
            self.clear_faults()
            return Response(200, {"ok": True})
        if parts == ["reset"] and method == "POST":
            self.reset()
            return Response(200, {"ok": True})
        if parts == ["stats"] and method == "GET":
            return Response(200, dict(self.stats))
        if len(parts) == 2 and parts[0] == "requests" and method == "GET":
            with self.lock:
                return Response(200, list(self.requests.get(parts[1], ())))
        if parts == ["notify"] and method == "POST":
            return self._notify(payload)
        if len(parts) == 3 and parts[0] == "invoices" and method == "POST" and parts[1] in self.providers:
            prov = self.providers[parts[1]]
            try:
                with prov.lock:
                    return Response(200, prov.mutate(parts[2], payload))
            except KeyError:
                return Response(404, {"message": f"no invoice {parts[2]!r}"})
            except (ValueError, NotImplementedError) as exc:
                return Response(400, {"message": str(exc)})
        return Response(404, {"message": "unknown control endpoint"})


    def _notify(self, payload: Any) -> Response:
        """Build a provider's notification(s) and deliver them to `url` (see the module docstring)."""
        if not isinstance(payload, dict):
            return Response(400, {"message": "the body must be a JSON object"})
        provider, url = str(payload.get("provider") or ""), str(payload.get("url") or "")
        if provider not in self.providers:
            return Response(400, {"message": f"no such provider {provider!r}"})
        if not url.startswith(("http://", "https://")):
            return Response(400, {"message": "url must be an http(s) URL"})
        try:
            messages = self.providers[provider].notifications(
                str(payload.get("external_id") or ""), event=payload.get("event") or None,
                bad_signature=bool(payload.get("bad_signature")), out_of_order=bool(payload.get("out_of_order")))
        except KeyError:
            return Response(404, {"message": f"no invoice {payload.get('external_id')!r}"})
        except (ValueError, NotImplementedError) as exc:
            return Response(400, {"message": str(exc)})
        if payload.get("duplicate"):
            messages = [m for m in messages for _ in range(2)]
        deliveries = []
        for headers, body in messages:
            try:
                answer = requests.post(url, data=body, headers=headers, timeout=(2, 10))
                deliveries.append({"status": answer.status_code, "body": answer.text[:4000]})
            except requests.RequestException as exc:
                deliveries.append({"status": 0, "body": f"{type(exc).__name__}: delivery failed"})
        return Response(200, {"status": deliveries[-1]["status"], "body": deliveries[-1]["body"],
                              "deliveries": deliveries})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this each small response waits ~40 ms
    # on a delayed ACK (Nagle).
    disable_nagle_algorithm = True
    server: "SandboxServer"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response, fault = self.server.sandbox.handle(self.command, self.path, headers, body)
        payload = response.encode()
        if fault is not None and fault.kind == "hang_after":
            time.sleep(fault.seconds or 30)
        if fault is not None and fault.kind == "truncated":
            payload = payload[: max(1, len(payload) // 2)]
        self.send_response(response.status)
        content_type = "application/json"
        for name, value in response.headers.items():
            if name.lower() == "content-type":
                content_type = value
            else:
                self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox):
        super().__init__(address, _Handler)
        self.sandbox = sandbox
        self._thread: threading.Thread | None = None

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (its timeout during a `hang` fault) is expected, not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def start(self) -> "SandboxServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gateway-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start(*, host: str = "127.0.0.1", port: int = 0, **config: Any) -> SandboxServer:
    """Start a sandbox in a background thread (port 0 = a free port); `.stop()` ends it."""
    return SandboxServer((host, port), Sandbox(**config)).start()
