"""Read replica routing: report pages read from `DATABASE_REPLICA_URL`, everything else from the primary.

Why a flag and not "every read": most reads feed a write (sync, notifications, the Espay upload,
the reminders' re-check) and must see the primary. Only the report views, marked in `arbook.urls`
(`REPORT_READS`), run with `reading_reports()` on, and only arbook's own tables move; sessions and
users stay on the primary so a fresh sign-in never looks signed out.

A user who just changed something (any POST, PUT, PATCH or DELETE) gets a short-lived cookie and
reads from the primary until it runs out, so they see their own change. A replica that cannot be
reached, or lags more than `DATABASE_REPLICA_MAX_LAG` seconds, is skipped: the reports read from the
primary until it is back, and `replica_status()` says why (the overview shows it).
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"
STICKY_COOKIE = "arbook_primary"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
#: How often one process asks the replica how far behind it is (seconds).
CHECK_EVERY = 5.0

_reports = contextvars.ContextVar("arbook_reading_reports", default=False)
_lock = threading.Lock()
_last: tuple[float, ReplicaStatus] | None = None


@dataclass(frozen=True)
class ReplicaStatus:
    configured: bool
    usable: bool = False
    lag_seconds: float | None = None
    reason: str = ""


def replica_configured() -> bool:
    return REPLICA in connections.settings


def sticky_seconds() -> int:
    return int(getattr(settings, "DATABASE_REPLICA_STICKY_SECONDS", 30))


def max_lag() -> float:
    return float(getattr(settings, "DATABASE_REPLICA_MAX_LAG", 300))


def _measure() -> ReplicaStatus:
    """Ask the replica itself: is it a standby, and how old is the newest change it has applied?"""
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
                "THEN 0 ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
            )
            in_recovery, lag = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("replica unreachable, reports read from the primary: %s", type(exc).__name__)
        connections[REPLICA].close()
        return ReplicaStatus(True, False, None, "unreachable")
    lag = float(lag or 0)
    if not in_recovery:
        return ReplicaStatus(True, False, None, "not a standby")
    if lag > max_lag():
        logger.warning("replica %.0f s behind, reports read from the primary", lag)
        return ReplicaStatus(True, False, lag, "too far behind")
    return ReplicaStatus(True, True, lag, "")


def replica_status(*, fresh: bool = False) -> ReplicaStatus:
    """The replica's state, measured at most every CHECK_EVERY seconds per process."""
    global _last
    if not replica_configured():
        return ReplicaStatus(False)
    now = time.monotonic()
    with _lock:
        if not fresh and _last is not None and now - _last[0] < CHECK_EVERY:
            return _last[1]
    status = _measure()
    with _lock:
        _last = (time.monotonic(), status)
    return status


def forget() -> None:
    """Drop the cached measurement (tests, and after reconfiguring the replica)."""
    global _last
    with _lock:
        _last = None


@contextmanager
def reading_reports():
    """Within this block arbook's tables are read from the replica, if one is usable on entry
    (measured once here, not on every query); yields whether it is."""
    on = replica_configured() and replica_status().usable
    token = _reports.set(on)
    try:
        yield on
    finally:
        _reports.reset(token)


def _on_replica_iter(chunks):
    """Keep a streamed export on the replica: the flag is set around each chunk the server pulls."""
    iterator = iter(chunks)
    while True:
        token = _reports.set(True)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            _reports.reset(token)
        yield chunk


def reads_from_replica() -> bool:
    return _reports.get()


def report_db() -> str:
    """The alias report reads use right now: for raw SQL and the transactions around cursors."""
    return REPLICA if reads_from_replica() else "default"


def sticky_until(request) -> float:
    """Until when (epoch seconds) this browser reads from the primary; 0 when it need not."""
    try:
        return float(request.COOKIES.get(STICKY_COOKIE, "0"))
    except (TypeError, ValueError):
        return 0.0


class ReplicaRouter:
    """Report reads of arbook's tables → replica; writes, migrations and the rest → primary."""

    def db_for_read(self, model, **hints):
        if model._meta.app_label == "arbook" and reads_from_replica():
            return REPLICA
        return "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the replica holds the same rows

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"  # the replica follows the primary by streaming replication


class ReplicaMiddleware:
    """Sends a browser that just changed something to the primary for a while (`sticky_seconds`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method not in SAFE_METHODS and replica_configured():
            response.set_cookie(STICKY_COOKIE, f"{time.time() + sticky_seconds():.0f}", max_age=sticky_seconds(),
                                httponly=True, samesite="Lax", secure=request.is_secure())
        return response


def report_read(view):
    """Wrap a report view (`arbook.urls.REPORT_READS`) so it reads from the replica when it may.

    Not when the request changes something, nor while this browser's sticky cookie runs. A streamed
    export stays on the replica for every chunk; `request.reads_replica` tells the templates.
    """
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        request.reads_replica = False
        if not (replica_configured() and request.method in ("GET", "HEAD") and sticky_until(request) <= time.time()):
            return view(request, *args, **kwargs)
        with reading_reports() as on:
            request.reads_replica = on
            response = view(request, *args, **kwargs)
        if on and getattr(response, "streaming", False):
            response.streaming_content = _on_replica_iter(response.streaming_content)
        return response

    return wrapped
