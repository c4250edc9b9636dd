"""Reading the aging rollup (`arbook.models.AgingRollup`): when it may answer, and its day ranges.

The rollup holds, per day key, what the invoices that age *now* owe. It answers the aging report
when the report's invoices are exactly those of some merchants, narrowed at most by credential,
gateway and currency (the rollup's own key columns; a search or a hold filter needs the invoices),
and days are counted in a zone the triggers keep for each of those merchants: its own or the
server's. As of a past day, its rows unchanged since then (`changed_day` ≤ the as-of day) stood
then as now; the changed invoices are read from their history by `arbook.selectors.aging`.

Everything else (SQLite, a zone PostgreSQL does not know, another filter) answers None here and
the report scans the invoices instead: the same figures, only slower.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.models import Q, QuerySet

from arbook.dbrouting import report_db
from arbook.models import AgingRollup, DayRollup

#: The invoice-list filters the rollup's key can apply; any other filter means scanning.
ROLLUP_FILTERS = frozenset({"merchant", "credential", "provider", "currency"})


@dataclass(frozen=True)
class RollupScope:
    """The report's invoices as the rollup can name them: every invoice of `merchants` ((id, time
    zone) pairs), narrowed to the credentials, gateways and currencies given (empty: all)."""

    merchants: tuple[tuple[int, str], ...]
    credential_ids: tuple[int, ...] = ()
    providers: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()


def scope_for(*, merchants: Iterable[tuple], applied: dict, cleaned: dict, filters: Iterable[str]) -> RollupScope | None:
    """The `RollupScope` of an invoice-list filter (`applied`: the filters given, `cleaned`: their
    values, `filters`: the FilterSet's filter names), or None when one it cannot apply is given."""
    given = {k for k in applied if k in set(filters)}
    if not given <= ROLLUP_FILTERS:
        return None
    chosen = {str(v) for v in applied.get("merchant", ())}
    rows = tuple((int(m[0]), str(m[2] or "")) for m in merchants if not chosen or str(m[0]) in chosen)

    def one(name: str) -> tuple:
        value = cleaned.get(name) if name in given else None
        return (value,) if value not in (None, "") else ()

    try:
        credentials = tuple(int(v) for v in one("credential"))
    except (TypeError, ValueError):
        return None
    return RollupScope(merchants=rows, credential_ids=credentials, providers=one("provider"),
                       currencies=tuple(str(c).upper() for c in one("currency")))


def rollup_rows(scope: RollupScope | None, *, zone: dt.tzinfo) -> QuerySet[AgingRollup] | None:
    """The rollup's rows for `scope` with days counted in `zone`, or None when it cannot answer."""
    if scope is None:
        return None
    using = report_db()
    if connections[using].vendor != "postgresql":
        return None
    name = str(zone)
    if any(tz != name for _pk, tz in scope.merchants) and name != settings.TIME_ZONE:
        return None  # some merchant's days in this zone are not kept
    server, known = _zone_facts(connections[using], name)
    if not known or (any(tz != name for _pk, tz in scope.merchants) and server != name):
        return None
    rows = AgingRollup.objects.using(using).filter(zone=name, merchant_id__in=[pk for pk, _tz in scope.merchants])
    if scope.credential_ids:
        rows = rows.filter(credential_id__in=scope.credential_ids)
    if scope.providers:
        rows = rows.filter(provider__in=scope.providers)
    if scope.currencies:
        rows = rows.filter(currency__in=scope.currencies)
    return rows


def _zone_facts(connection, name: str) -> tuple[str, bool]:
    """The zone the triggers count the server's days in, and whether PostgreSQL knows `name`:
    asked once per connection and zone (both change only with a migration or
    `rebuild_aging_rollup`, which come with a restart), not once per report."""
    cache = connection.__dict__.setdefault("arbook_rollup_zones", {})
    if name not in cache:
        with connection.cursor() as cursor:
            cursor.execute("SELECT arbook_server_zone(), arbook_zone_ok(%s)", [name])
            cache[name] = cursor.fetchone()
    return cache[name]


def existing_unchanged(rows: QuerySet[AgingRollup], as_of: dt.date) -> QuerySet[AgingRollup]:
    """The rows of invoices that existed at the end of `as_of` and have not changed since."""
    return rows.filter(exist_day__lte=as_of, changed_day__lte=as_of)


def day_range_q(column: str, *, as_of: dt.date, lo: int | None, hi: int | None) -> Q:
    """`column` (a local day; `NO_DAY` when the invoice has none) in an aging bucket: `lo`..`hi`
    days late (None, None: not yet late, the `current` bucket; hi None: open-ended)."""
    if lo is None:
        return Q(**{f"{column}__gte": as_of})
    q = Q(**{f"{column}__lte": as_of - dt.timedelta(days=lo)})
    if hi is not None:
        q &= Q(**{f"{column}__gte": as_of - dt.timedelta(days=hi)})
    return q


def rows_q(row_set: Iterable[str], *, credit: str, credit_states: Iterable[str]) -> Q:
    """The rollup rows in the aging rows `row_set` (`credit` names the credit row)."""
    row_set = set(row_set)
    states = sorted(r for r in row_set if r != credit)
    q = Q(status__in=states, credit=False) if states else Q(pk__in=[])
    if credit in row_set:
        q |= Q(credit=True, status__in=list(credit_states))
    return q


def day_rows(scope: RollupScope | None) -> QuerySet[DayRollup] | None:
    """The day rollup's rows of `scope`'s merchants (its days are UTC days: any zone), or None
    when it cannot answer (SQLite, or a scope narrowed by credential, gateway or currency)."""
    if scope is None or scope.credential_ids or scope.providers or scope.currencies:
        return None
    using = report_db()
    if connections[using].vendor != "postgresql":
        return None
    return DayRollup.objects.using(using).filter(merchant_id__in=[pk for pk, _tz in scope.merchants])


def window_days(field: str, *, since: dt.datetime, until: dt.datetime) -> tuple[list[Q], tuple[dt.date, dt.date]]:
    """Split the window `since` <= `field` <= `until` into its whole UTC days (first, last: read
    from the day rollup; first > last when there are none) and the Qs of its partial edge days
    (read from the invoices: a day at most at each end, each a plain range)."""
    first = since.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    last = until.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    first_start = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    last_end = dt.datetime.combine(max(last, first - dt.timedelta(days=1)) + dt.timedelta(days=1), dt.time.min,
                                   tzinfo=dt.UTC)
    edges = [Q(**{f"{field}__gte": since, f"{field}__lt": min(first_start, until + dt.timedelta(microseconds=1))}),
             Q(**{f"{field}__gte": last_end, f"{field}__lte": until})]
    return edges, (first, last)
