"""The rollups against a recount (PostgreSQL): what the triggers kept versus the same sums
computed afresh from the invoices, by the migration's own recount queries."""
from __future__ import annotations

import importlib

from django.db import connections

_migration = importlib.import_module("arbook.migrations.0023_aging_rollup")
KEY = [c.strip() for c in _migration.KEY.split(",")]
RECOUNT = _migration._delta(_migration._rows(1, "arbook_invoice"))
#: One row per key (its delta rows summed), keys that sum to nothing left out, as a recount has them.
STORED = (f"SELECT {', '.join(KEY)}, SUM(amount), SUM(count) FROM arbook_agingrollup GROUP BY {', '.join(KEY)} "
          "HAVING SUM(amount) <> 0 OR SUM(count) <> 0")
DAY_RECOUNT = _migration._day_delta(_migration._day_rows(1, "arbook_invoice"))
DAY_STORED = (f"SELECT {_migration.DAY_KEY}, SUM(amount), SUM(count), SUM(known) FROM arbook_dayrollup "
              f"GROUP BY {_migration.DAY_KEY} HAVING SUM(amount) <> 0 OR SUM(count) <> 0 OR SUM(known) <> 0")


def _read(cursor, sql: str, label: str, sums: int) -> dict:
    cursor.execute(sql)
    return {(label, *r[:-sums]): tuple(r[-sums:]) for r in cursor.fetchall()}


def rollup_mismatch(using: str = "default") -> dict:
    """{key: (stored, recounted)} for every key where a rollup and its recount differ ({} when
    exact); keys start with "aging" or "day"."""
    out = {}
    with connections[using].cursor() as cursor:
        for label, stored_sql, recount_sql, sums in (("aging", STORED, RECOUNT, 2), ("day", DAY_STORED, DAY_RECOUNT, 3)):
            stored, recounted = _read(cursor, stored_sql, label, sums), _read(cursor, recount_sql, label, sums)
            out.update({k: (stored.get(k), recounted.get(k)) for k in stored.keys() | recounted.keys()
                        if stored.get(k) != recounted.get(k)})
    return out


def rollup_installed(using: str = "default") -> bool:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regproc('arbook_aging_rollup_rebuild') IS NOT NULL")
        return cursor.fetchone()[0]
