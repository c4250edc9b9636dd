"""The shape every provider client has, and small parsing helpers they share."""
from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from . import status as st
from .errors import BadResponseError, ConfigurationError
from .fields import INT, Field, read_options
from .http import HttpClient
from .models import InvoiceRef, Page, RemoteInvoice, SettledScope
from .numbers import NotANumber, parse_decimal

JAKARTA = ZoneInfo("Asia/Jakarta")
#: The windows of a full read (`GatewayClient.window`, `owed_from`), for the clients that list by date.
WINDOW_OPTIONS: tuple[Field, ...] = (
    Field("window_months_back", "Settled history (paid, cancelled) is read from this many months back.",
          kind=INT, default=24, minimum=0),
    Field("window_months_ahead", "Settled history is read up to this many months ahead.", kind=INT, default=12, minimum=0),
    Field("owed_years_back", "Invoices still owed are read back this many years, whatever their age.",
          kind=INT, default=10, minimum=0),
)
#: Options that change how a listing is read, never what an invoice parses to: not in `digest_salt`
#: (changing them must not make the next sync parse every invoice again).
HOW_TO_READ = frozenset({"read_concurrency", "requests_per_minute"})
logger = logging.getLogger("gateways")
#: Changes whenever the clients' code does (the sandbox aside): part of `digest_salt`, so a new
#: parser makes the next sync parse every invoice again instead of trusting digests of old parses.
CODE_VERSION = hashlib.sha1(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()


class GatewayClient(ABC):
    """One provider's client, built from a credential's (`base_url`, `secrets`, `options`).

    `base_url` is the origin (optionally with a path prefix); blank means the documented host.
    Subclasses set the class attributes and implement `iter_pages` and `check_connection`.
    """

    provider: ClassVar[str]
    default_base_url: ClassVar[str]
    #: Alternative sets of required secret keys; one set must be complete (DESIGN.md table).
    required_secrets: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: What a credential of this provider holds (`gateways.fields`): the admin form is built from
    #: these, and `settings` holds the options read through them.
    secret_fields: ClassVar[tuple[Field, ...]] = ()
    option_fields: ClassVar[tuple[Field, ...]] = ()
    #: The provider's status vocabulary -> normalized state; unknown values map to `unknown`.
    STATUS_MAP: ClassVar[Mapping[str, str]] = {}
    #: False for a provider with no list API (Espay): there is nothing to poll or reconcile.
    lists_invoices: ClassVar[bool] = True
    #: True when pages come newest first and an incremental read may stop at the first page in
    #: which nothing changed (Munio: no date filter, so this is its only watermark).
    stop_when_unchanged: ClassVar[bool] = False
    #: The zone of the provider's date filters: its windows follow this calendar (FarPay is
    #: Danish, Faspay and Xendit Indonesian). Every date the client derives comes from one aware
    #: instant (`now()`) read in this zone.
    zone: ClassVar[tzinfo] = timezone.utc
    #: True when `lookup` can find one invoice by itself (after a full read that missed it).
    can_lookup: ClassVar[bool] = False

    def __init__(
        self,
        *,
        base_url: str = "",
        secrets: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        session: requests.Session | None = None,
        now: Callable[[], datetime] | None = None,
        **http_options: Any,
    ):
        self.secrets = dict(secrets or {})
        self.options = dict(options or {})
        #: The declared options, typed, defaults filled in (ConfigurationError when malformed).
        self.settings: dict[str, Any] = read_options(self.option_fields, self.options, provider=self.provider)
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.http = HttpClient(
            provider=self.provider,
            base_url=(base_url or self.documented_base_url()),
            session=session,
            secrets=[v for v in self.secrets.values() if isinstance(v, str)],
            **http_options,
        )
        self._unknown_logged: set[str] = set()
        self.validate()

    @cached_property
    def digest_salt(self) -> str:
        """What decides a parsed invoice besides its raw item: the provider, the clients' code
        and the credential's options (`Page.salt`). Secrets do not change a parse."""
        options = json.dumps({k: v for k, v in self.options.items() if k not in HOW_TO_READ}, sort_keys=True,
                             default=str)
        return hashlib.sha1(f"{self.provider}\x1f{CODE_VERSION}\x1f{options}".encode()).hexdigest()

    def documented_base_url(self) -> str:
        """The host a blank `base_url` means (Xendit's depends on its mode)."""
        return self.default_base_url

    def validate(self) -> None:
        """Raise `ConfigurationError` when no alternative set of required secrets is complete."""
        if not self.required_secrets:
            return
        for names in self.required_secrets:
            if all(str(self.secrets.get(n) or "").strip() for n in names):
                return
        wanted = " or ".join("+".join(names) for names in self.required_secrets)
        raise ConfigurationError(f"{self.provider}: the credential needs {wanted}", provider=self.provider)

    @abstractmethod
    def iter_pages(self, *, since: datetime | None = None, resume: str | None = None) -> Iterator[Page]:
        """Yield pages of `RemoteInvoice`.

        `since` asks for an incremental read (what changed since then, as far as the provider
        can filter; a client may return more, never less). `resume` is a `Page.resume` marker
        from an interrupted run: continue after that page.
        """

    @abstractmethod
    def check_connection(self) -> str:
        """One cheap authenticated call; returns a short human message, raises on failure."""

    # -- shared helpers ---------------------------------------------------------------------
    def map_status(self, value: Any) -> str:
        """Map a provider status through STATUS_MAP; unknown values are logged once per client."""
        key = str(value).strip() if value is not None else ""
        mapped = self.STATUS_MAP.get(key) or self.STATUS_MAP.get(key.lower()) or self.STATUS_MAP.get(key.upper())
        if mapped:
            return mapped
        if key not in self._unknown_logged:
            self._unknown_logged.add(key)
            logger.warning("provider=%s unknown status %r mapped to unknown", self.provider, key[:64])
        return st.UNKNOWN

    def lookup(self, ref: InvoiceRef) -> RemoteInvoice | None:
        """One stored invoice read by itself (`can_lookup`); None when the provider no longer
        knows it. The sync calls it after a full read for every stored unsettled invoice that no
        read of the run returned (paid after leaving the window, say)."""
        raise NotImplementedError(f"{self.provider} has no lookup of a single invoice")

    def settled_scope(self) -> SettledScope:
        """Which settled invoices a full read returns (see `SettledScope`); by default all."""
        return SettledScope()

    # -- the clock ----------------------------------------------------------------------------
    def today(self) -> date:
        """Today in the provider's zone, from the one instant `now()`."""
        return self.now().astimezone(self.zone).date()

    def midnight(self, day: date) -> datetime:
        """The instant `day` starts in the provider's zone."""
        return datetime.combine(day, time.min, tzinfo=self.zone)

    def window(self) -> tuple[date, date]:
        """The settled window: `window_months_back` (24) before today to `window_months_ahead` (12)
        after, inclusive, in the provider's zone."""
        today = self.today()
        back, ahead = self.settings["window_months_back"], self.settings["window_months_ahead"]
        return add_months(today, -back), add_months(today, ahead)

    def owed_from(self) -> date:
        """The earliest date to which unsettled invoices are read: `owed_years_back` (10) years
        before today, never later than the settled window's start."""
        return min(add_months(self.today(), -12 * self.settings["owed_years_back"]), self.window()[0])


# -- parsing helpers (shared by the provider modules) ----------------------------------------

def to_decimal(value: Any, *, field: str = "", provider: str = "") -> Decimal | None:
    """Decimal from a JSON number or decimal string; None stays None; garbage is a BadResponseError."""
    try:
        return parse_decimal(value)
    except NotANumber:
        raise BadResponseError(f"{provider}: field {field!r} is not a number", provider=provider) from None


def to_datetime(value: Any, *, naive_tz: timezone | ZoneInfo = timezone.utc, field: str = "",
                provider: str = "") -> datetime | None:
    """Aware datetime from ISO-8601 (with `Z`, offsets, microseconds, or a plain date).

    Naive values are read in `naive_tz` (Faspay: Asia/Jakarta; others: UTC).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):  # the common case first: ISO-8601 as sent (3.11 reads a "Z" too)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=naive_tz)
    text = str(value).strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.strptime(text, "%d-%m-%Y")
        except ValueError:
            raise BadResponseError(f"{provider}: field {field!r} is not a date/time", provider=provider) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_tz)
    return parsed


def add_months(day: date, months: int) -> date:
    month_index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    for dd in (day.day, 30, 29, 28):
        try:
            return date(year, month, dd)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def month_windows(start: date, end: date, *, months: int = 1) -> Iterator[tuple[date, date]]:
    """Consecutive [from, to] windows (inclusive) covering start..end."""
    cursor = start
    while cursor <= end:
        nxt = add_months(cursor, months)
        yield cursor, min(end, nxt - timedelta(days=1))
        cursor = nxt
