"""The one HTTP layer every client uses.

Why one layer: timeouts, retries, error classes and secret masking must be the same for every
provider, so a sync can act on the error class and no log line or message can leak a secret.

- Every call has a connect and a read timeout.
- Idempotent calls (GET, and anything passed `idempotent=True`) are retried on timeouts,
  connection errors, 429 (honouring Retry-After) and 5xx, with exponential backoff and full jitter.
- A POST is never retried blindly: a read timeout after sending raises `OutcomeUnknownError`
  so the caller can retry with the same idempotency key; a refused connection (nothing was
  sent) raises `TransientError`.
- 401/403 raise `AuthError`; other 4xx and unparseable bodies raise `BadResponseError`.
- Each attempt is logged as provider, method, path, status, duration; every registered secret
  (and anything derived from one, such as a signature) is masked in logs and messages.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import AuthError, BadResponseError, ConfigurationError, OutcomeUnknownError, TransientError

logger = logging.getLogger("gateways.http")

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MASK = "***"


def _session_for(base_url: str) -> requests.Session:
    """A session that reads the proxy and CA-bundle environment once, not on every request
    (requests' per-call lookup costs ~0.5 ms). NO_PROXY is honoured for this base URL; .netrc
    credentials are deliberately not picked up for a gateway."""
    session = requests.Session()
    # Sliced full reads (gateways.slices) share one session from up to 16 threads.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


class HttpClient:
    """A `requests.Session` wrapper bound to one provider and one base URL."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.session = session or _session_for(self.base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.sleep = sleep
        self._secrets: set[str] = set()
        for value in secrets:
            self.add_secret(value)
        # Shared by every thread using this client (a sliced read): a 429's Retry-After pauses
        # them all, and `pace` spaces their calls.
        self._gate = threading.Lock()
        self._next_slot = 0.0  # pacing: the earliest start of the next call
        self._paused_until = 0.0  # a 429's Retry-After, for the threads that did not get it
        self._paused_by: int | None = None
        self._interval = 0.0

    def pace(self, per_minute: int | float | None) -> None:
        """At most `per_minute` calls per minute from this client, whatever the thread (0: no cap)."""
        self._interval = 60.0 / per_minute if per_minute else 0.0

    def _wait_turn(self) -> None:
        """Wait for this call's slot: the pacing interval, and any pause another thread's 429 asked for
        (the thread that got the 429 sleeps its Retry-After itself)."""
        with self._gate:
            now = time.monotonic()
            start = now
            if self._paused_by != threading.get_ident():
                start = max(start, self._paused_until)
            if self._interval:
                start = max(start, self._next_slot)
                self._next_slot = start + self._interval
        if start > now:
            self.sleep(start - now)

    def _pause_all(self, seconds: float) -> None:
        with self._gate:
            until = time.monotonic() + seconds
            if until > self._paused_until:
                self._paused_until, self._paused_by = until, threading.get_ident()
        self.sleep(seconds)

    # -- masking -----------------------------------------------------------------------------
    def add_secret(self, value: Any) -> None:
        """Register a value that must never appear in a log line or an error message."""
        text = str(value or "")
        if len(text) >= 4:  # masking 1-3 character strings would garble every message
            self._secrets.add(text)

    def mask(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    # -- calls -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        accept_status: Iterable[int] = (),
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request (with retries when idempotent) and return a 2xx response.

        Statuses in `accept_status` are returned to the caller instead of raising, for providers
        that report errors in a 4xx body the client wants to read.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS")
        accepted = frozenset(accept_status)
        kwargs.setdefault("timeout", self.timeout)
        url = self.url(path)
        shown_path = self.mask(urlsplit(url).path)
        attempt = 0
        while True:
            attempt += 1
            self._wait_turn()
            started = time.monotonic()
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._log(method, shown_path, None, started, attempt, type(exc).__name__)
                sent = not isinstance(exc, (requests.ConnectTimeout,)) and not _refused(exc)
                if not idempotent:
                    if sent:
                        raise OutcomeUnknownError(
                            f"{self.provider}: {method} {shown_path} timed out after sending; "
                            "the outcome is unknown",
                            provider=self.provider,
                        ) from None
                    raise TransientError(
                        f"{self.provider}: {method} {shown_path} could not connect",
                        provider=self.provider,
                    ) from None
                if attempt > self.max_retries:
                    kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
                    raise TransientError(
                        f"{self.provider}: {method} {shown_path} {kind} ({attempt} attempts)",
                        provider=self.provider,
                    ) from None
                self.sleep(self._backoff(attempt))
                continue

            self._log(method, shown_path, response.status_code, started, attempt)
            status = response.status_code
            if 200 <= status < 300 or status in accepted:
                return response
            if status in (401, 403):
                raise AuthError(
                    f"{self.provider}: {method} {shown_path} was refused (HTTP {status}); "
                    "check the credential",
                    provider=self.provider,
                    status_code=status,
                )
            if status in RETRY_STATUSES:
                retry_after = _retry_after(response) if status == 429 else None
                if idempotent and attempt <= self.max_retries:
                    if retry_after is not None and retry_after > self.retry_after_max:
                        raise TransientError(
                            f"{self.provider}: rate limited; asked to wait {retry_after:.0f}s",
                            provider=self.provider,
                            status_code=status,
                        )
                    if retry_after is not None:
                        self._pause_all(retry_after)  # every thread of this client waits it out
                    else:
                        self.sleep(self._backoff(attempt))
                    continue
                what = "rate limited" if status == 429 else "server error"
                raise TransientError(
                    f"{self.provider}: {method} {shown_path} {what} (HTTP {status}, "
                    f"{attempt} attempt{'s' if attempt > 1 else ''})",
                    provider=self.provider,
                    status_code=status,
                )
            raise BadResponseError(
                f"{self.provider}: {method} {shown_path} was rejected (HTTP {status})",
                provider=self.provider,
                status_code=status,
            )

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request` and parse the body as JSON; a body that is not JSON is a `BadResponseError`."""
        response = self.request(method, path, **kwargs)
        return self.parse_json(response, method=method, path=path)

    def parse_json(self, response: requests.Response, *, method: str = "", path: str = "") -> Any:
        try:
            return json.loads(response.content, parse_float=_decimal)
        except ValueError:
            shown = self.mask(urlsplit(self.url(path)).path) if path else ""
            raise BadResponseError(
                f"{self.provider}: {method} {shown} returned a body that is not valid JSON "
                f"(HTTP {response.status_code}, {len(response.content)} bytes)",
                provider=self.provider,
                status_code=response.status_code,
            ) from None

    # -- helpers -----------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _log(self, method: str, path: str, status: int | None, started: float, attempt: int,
             error: str = "") -> None:
        logger.info(
            "provider=%s method=%s path=%s status=%s duration_ms=%d attempt=%d%s",
            self.provider, method, path, status if status is not None else "-",
            (time.monotonic() - started) * 1000, attempt, f" error={error}" if error else "",
        )


def _decimal(text: str) -> Decimal:
    """JSON numbers with a fraction parse as Decimal: a float never touches money."""
    return Decimal(text)


def _refused(exc: Exception) -> bool:
    """A connection that was never established means the request was never sent."""
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout) and (
        "refused" in str(exc).lower() or "Name or service not known" in str(exc)
        or "NewConnectionError" in repr(exc)
    )


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def require(secrets: Mapping[str, Any], *names: str, provider: str) -> None:
    """Raise a `ConfigurationError` naming the missing keys (never their values)."""
    missing = [n for n in names if not str(secrets.get(n) or "").strip()]
    if missing:
        raise ConfigurationError(f"{provider}: missing secret(s): {', '.join(missing)}", provider=provider)
