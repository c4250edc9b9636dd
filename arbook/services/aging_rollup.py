"""Recounting the rollups (`arbook.models.AgingRollup` and `DayRollup`, kept by PostgreSQL triggers).

The triggers keep it exact on every write; a recount is for what they cannot see: the server's
TIME_ZONE changed (the rollup keeps days in it, `arbook_server_zone()`), or a check after a
restore. `manage.py rebuild_aging_rollup` calls `rollup_rebuild`. The triggers append each write's
difference as new rows; `rollups_compact` (the beat's `rollups-compact` entry) folds them.
"""
from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction

from arbook.models import AgingRollup, DayRollup

#: (model, its sums, the recount function) per rollup; every other column but id and delta is its key.
ROLLUPS = ((AgingRollup, ("amount", "count"), "arbook_aging_rollup_rebuild"),
           (DayRollup, ("amount", "count", "known"), "arbook_day_rollup_rebuild"))


class RollupUnavailable(RuntimeError):
    """Not PostgreSQL, or its migration has not run: there is no rollup to recount."""


def rollup_rebuild(*, merchant_id: int | None = None, check_only: bool = False) -> int:
    """Recount both rollups (of one merchant, or all) from the invoices, in one transaction that
    writers wait for; returns at how many keys they differed. `check_only`: count, then undo."""
    if connection.vendor != "postgresql":
        raise RollupUnavailable("The aging rollup exists on PostgreSQL only; on SQLite the report scans.")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regproc('arbook_aging_rollup_rebuild') IS NOT NULL")
        if not cursor.fetchone()[0]:
            raise RollupUnavailable("The aging rollup is not installed: run `manage.py migrate` first.")
        where = "WHERE merchant_id = %s" if merchant_id is not None else ""
        args = [merchant_id] if merchant_id is not None else []
        zone = settings.TIME_ZONE.replace("'", "''")
        cursor.execute("CREATE OR REPLACE FUNCTION arbook_server_zone() RETURNS text LANGUAGE sql IMMUTABLE "
                       f"AS $$ SELECT '{zone}'::text $$")
        differing = 0
        for model, sums, rebuild in ROLLUPS:
            table = model._meta.db_table
            key = ", ".join(f.column for f in model._meta.concrete_fields if f.column not in ("id", "delta", *sums))
            # One row per key with its sums (a key's delta rows folded), zero sums left out.
            summed = ", ".join(f"SUM({c}) AS {c}" for c in sums)
            nonzero = " OR ".join(f"SUM({c}) <> 0" for c in sums)
            by_key = f"SELECT {key}, {summed} FROM {table} {where} GROUP BY {key} HAVING {nonzero}"
            cursor.execute(f"CREATE TEMP TABLE before_recount ON COMMIT DROP AS {by_key}", args)
            cursor.execute(f"SELECT {rebuild}(%s)", [merchant_id])
            # Keys whose sums differ, or that only one side has.
            cursor.execute(f"""SELECT count(*) FROM (SELECT DISTINCT {key} FROM (
                (SELECT * FROM before_recount EXCEPT ALL {by_key})
                UNION ALL
                ({by_key} EXCEPT ALL SELECT * FROM before_recount)) d) k""", args + args)
            differing += cursor.fetchone()[0]
            cursor.execute("DROP TABLE before_recount")
        if check_only:
            transaction.set_rollback(True)
    return differing


def rollups_compact() -> int:
    """Fold the rollups' delta rows (one per write statement and key) into one row per key, so
    readers sum as few rows as possible; returns how many rows were folded. Safe at any time and
    twice at once (each run folds only the rows it deleted); 0 where there is no rollup."""
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regproc('arbook_rollups_compact') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute("SELECT arbook_rollups_compact()")
        return cursor.fetchone()[0]
