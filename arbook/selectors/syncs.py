"""Sync runs as the syncs page reads them: scoped, filtered, keyset-paginated (no COUNT).

The run table grows by one row per credential per sync interval, for ever; a page is read by
keyset on (started_at, id) (`arbook.selectors.paginator`, over the `syncrun_cred_started` /
`syncrun_status_started` indexes), so page 500 costs what page 1 costs, and nobody waits for a
COUNT(*).

The cursor token is `<microseconds since 1970, UTC>.<id>` of the last run shown: whole numbers,
exact (no float on the way, so ties at the microsecond are neither skipped nor repeated), each read
by `arbook.params` within what a date column and an id column hold.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from arbook.models import GatewayCredential, SyncRun
from arbook.params import MAX_ID, ParamError, moment_micros, parse_int, parse_micros
from arbook.scoping import scope
from arbook.selectors.paginator import VALUE, Cursor, KeysetPage, Sort, keyset_page
from arbook.status import SYNC_RUN

PAGE_SIZE = 25
#: Newest first.
RUN_ORDER = Sort("started_at", descending=True, model=SyncRun)


def encode_cursor(cursor: Cursor) -> str:
    return f"{moment_micros(cursor.value)}.{cursor.pk}"


def decode_cursor(text: str) -> Cursor | None:
    """The cursor `encode_cursor` wrote; None for anything else."""
    micros, dot, pk = str(text).partition(".")
    try:
        if not dot:
            raise ParamError("no id")
        return Cursor(RUN_ORDER.param, VALUE, parse_micros(micros), parse_int(pk, min_value=1, max_value=MAX_ID))
    except ParamError:
        return None


def scoped_runs(*, user) -> QuerySet[SyncRun]:
    return scope(SyncRun.objects.all(), user, merchant_field="credential__merchant")


def scoped_credentials(*, user) -> QuerySet[GatewayCredential]:
    return scope(GatewayCredential.objects.select_related("merchant"), user).order_by(
        "merchant__name", "provider", "label", "pk")


def sync_runs(*, user, credential_id: int | None = None, status: str | None = None, after: Cursor | None = None,
              limit: int = PAGE_SIZE) -> KeysetPage:
    """One page of runs, newest first; `next_cursor` is None on the last page."""
    qs = scoped_runs(user=user).select_related("credential", "credential__merchant")
    if credential_id:
        qs = qs.filter(credential_id=credential_id)
    if status:
        qs = qs.filter(status=status)
    return keyset_page(qs, sort=RUN_ORDER, size=limit, after=after, encode=encode_cursor)


def credentials_with_latest_run(*, user) -> list[GatewayCredential]:
    """The user's credentials, each with `latest_run_id/status/started` (one query, subqueries)."""
    latest = SyncRun.objects.filter(credential=OuterRef("pk")).order_by("-started_at", "-pk")
    return list(scoped_credentials(user=user).annotate(
        latest_run_id=Subquery(latest.values("pk")[:1]),
        latest_run_status=Subquery(latest.values("status")[:1]),
        latest_run_started=Subquery(latest.values("started_at")[:1]),
    ))


def is_queued(credential: GatewayCredential) -> bool:
    """Enqueued ("Sync now" or the scheduler) and no run has started since."""
    requested = credential.sync_requested_at
    started = getattr(credential, "latest_run_started", None)
    return bool(requested and (started is None or started < requested))


def run_json(run: SyncRun, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the progress poller needs about one run; the error text is already secret-free.

    `status_label` and `status_colour` are the run's badge from the status registry, the same
    `{% badge "sync_run" run.status %}` renders on the page."""
    now = now or timezone.now()
    end = run.finished_at or now
    return {
        "id": run.pk, "credential": run.credential_id, "status": run.status,
        "status_label": SYNC_RUN.label(run.status), "status_colour": SYNC_RUN.colour(run.status),
        "trigger": run.get_trigger_display(), "full": run.full,
        "started_at": timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S"),
        "finished_at": timezone.localtime(run.finished_at).strftime("%Y-%m-%d %H:%M:%S") if run.finished_at else None,
        "seconds": round((end - run.started_at).total_seconds(), 1),
        "pages": run.pages, "fetched": run.fetched, "created": run.created, "updated": run.updated,
        "unchanged": run.unchanged, "lookups": run.lookups, "missing": run.missing, "error": run.error,
    }


def sync_status(*, user, credential_id: int | None = None, status: str | None = None,
                limit: int = PAGE_SIZE) -> dict[str, Any]:
    """The newest runs (as on the page's first page) and which credentials wait in the queue."""
    page = sync_runs(user=user, credential_id=credential_id, status=status, limit=limit)
    creds = credentials_with_latest_run(user=user)
    now = timezone.now()
    runs = [run_json(r, now=now) for r in page.rows]
    queued = [c.pk for c in creds if is_queued(c)]
    running = [c.pk for c in creds if c.latest_run_status == SyncRun.Status.RUNNING]
    return {"runs": runs, "queued": queued, "running": running, "active": bool(queued or running)}
