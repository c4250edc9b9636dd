"""Bulk SQL for the writers that move thousands of rows (the sync, its seen-ids, the Espay upload).

PostgreSQL gets COPY: no statement with thousands of placeholders to build, send and parse, and
no model instances (about 50 µs each); an upsert is COPY into a temporary staging table and one
``INSERT ... SELECT ... ON CONFLICT`` merge. Other databases (SQLite, the embedded default) get
the same statements with plain multi-row VALUES, or the ORM.

Rows are tuples of database-ready values in `columns` order (psycopg adapts str, int, bool,
Decimal and aware datetimes itself); a JSON column takes its JSON *text*. `insert_objects` takes
{attname: value} dicts of model values instead and adapts them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

#: Rows per statement on SQLite, which binds at most 32766 variables.
SQLITE_ROWS = 500


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _qn(model._meta.db_table)


def _column_list(columns: Sequence[str]) -> str:
    return ", ".join(_qn(c) for c in columns)


def _fields(model, columns: Sequence[str]) -> list[models.Field]:
    by_column = {f.column: f for f in model._meta.concrete_fields}
    return [by_column[c] for c in columns]


#: What `array` joins a text array with: a control character no identifier or name carries (a
#: value that does holds it is sent as a plain list instead).
_SEP = "\x1f"


def array(values: Sequence[Any], *, of: str = "varchar") -> tuple[str, Any]:
    """(SQL, parameter) of an array of `of` ("varchar" or "bigint") for a PostgreSQL statement.

    Django binds parameters on the client, and psycopg quotes a list element by element in
    Python: about 1 ms per 1,000 strings, paid by the sync's writer several times per batch. One
    joined string is quoted in C (~20x cheaper) and split by `string_to_array`, which PostgreSQL
    folds into a constant while planning, so the plan is that of a literal array."""
    if of == "bigint":
        return ("string_to_array(%s, ',', 'N')::bigint[]",
                ",".join("N" if v is None else str(int(v)) for v in values))
    if len(values) > 1 and all(type(v) is str and _SEP not in v for v in values):
        return f"string_to_array(%s, chr(31))::{of}[]", _SEP.join(values)
    return f"%s::{of}[]", list(values)


def _copy(cursor, table: str, column_list: str, rows: Iterable[Sequence[Any]]) -> None:
    with cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _values_sql(model, columns: Sequence[str], rows: Iterable[Sequence[Any]], suffix: str = ""
                ) -> Iterable[tuple[str, list[Any]]]:
    """Multi-row INSERT statements (SQLite): each value adapted by its model field, as the ORM
    would; a JSON column's text is passed as it is."""
    fields = [None if isinstance(f, models.JSONField) else f for f in _fields(model, columns)]
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    values = [[f.get_db_prep_save(v, connection) if f else v for v, f in zip(row, fields)] for row in rows]
    for start in range(0, len(values), SQLITE_ROWS):
        chunk = values[start:start + SQLITE_ROWS]
        yield (f"INSERT INTO {_table(model)} ({_column_list(columns)}) VALUES {', '.join([row_sql] * len(chunk))}"
               f"{suffix}", [v for row in chunk for v in row])


def insert(model, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert new rows (a unique violation fails the statement)."""
    with connection.cursor() as cursor:
        if is_postgresql():
            _copy(cursor, _table(model), _column_list(columns), rows)
            return
        for sql, params in _values_sql(model, columns, list(rows)):
            cursor.execute(sql, params)


def merge(model, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, conflict: Sequence[str] = (),
          update: Sequence[str] = ()) -> int:
    """Insert the rows, updating `update` of those that collide on the unique `conflict` columns
    (no `update`: a row that collides with any unique constraint is skipped). Returns how many
    rows were inserted or updated.

    PostgreSQL: COPY into a temporary staging table (the table's column types, no constraints;
    one per database session and column set, created IF NOT EXISTS every time because a creation
    inside a transaction that rolled back is gone again), then one merge. The rows are moved out
    of the stage (DELETE ... RETURNING), so it is empty for the next call even when no COMMIT
    comes between them (a caller's outer transaction, the tests')."""
    if not rows:
        return 0
    column_list = _column_list(columns)
    if update:
        suffix = (f" ON CONFLICT ({_column_list(conflict)}) DO UPDATE SET "
                  + ", ".join(f"{_qn(c)} = EXCLUDED.{_qn(c)}" for c in update))
    else:
        suffix = " ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        if not is_postgresql():
            done = 0
            for sql, params in _values_sql(model, columns, rows, suffix):
                cursor.execute(sql, params)
                done += cursor.rowcount
            return done
        stage = "arbook_stage_" + hashlib.sha1(f"{model._meta.db_table}:{column_list}".encode()).hexdigest()[:12]
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {column_list} FROM {_table(model)} "
                       "WITH NO DATA")
        _copy(cursor, stage, column_list, rows)
        cursor.execute(f"WITH moved AS (DELETE FROM {stage} RETURNING {column_list}) "
                       f"INSERT INTO {_table(model)} ({column_list}) SELECT {column_list} FROM moved{suffix}")
        return cursor.rowcount


def insert_objects(model, rows: Sequence[dict[str, Any]], *, need_ids: bool = False) -> list[int]:
    """Insert new rows given as {attname: value} (fields left out take their default, auto_now
    fields now). Returns the new ids when `need_ids` (PostgreSQL: taken from the table's sequence
    first, so COPY can send them). Other databases: `bulk_create`."""
    if not rows:
        return []
    if not is_postgresql():
        objs = [model(**row) for row in rows]
        model.objects.bulk_create(objs, batch_size=1000)
        return [obj.pk for obj in objs]
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key and not f.generated]
    ids: list[int] = []
    if need_ids:
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                           [meta.db_table, len(rows)])
            ids = [pk for (pk,) in cursor.fetchall()]
    plan = []
    for f in fields:
        default = timezone.now() if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) \
            else f.get_default()
        plan.append((f.attname, f.name, default, _copy_adapter(f)))

    def values(index: int, row: dict[str, Any]) -> list[Any]:
        out = [ids[index]] if need_ids else []
        for attname, name, default, adapt in plan:
            value = row[attname] if attname in row else row.get(name, default)
            out.append(adapt(value) if adapt else value)
        return out

    columns = (["id"] if need_ids else []) + [f.column for f in fields]
    insert(model, columns, (values(index, row) for index, row in enumerate(rows)))
    return ids


def _copy_adapter(field) -> Callable[[Any], Any] | None:
    """How a model value goes into COPY: psycopg adapts str, int, bool, Decimal and aware
    datetimes itself (None = as is); JSON goes as its text; anything else through the field."""
    if isinstance(field, models.JSONField):
        return lambda value: None if value is None else json.dumps(value, cls=field.encoder or DjangoJSONEncoder)
    if isinstance(field, (models.CharField, models.TextField, models.IntegerField, models.BooleanField,
                          models.DecimalField, models.DateTimeField, models.ForeignKey)):
        return None
    return lambda value: field.get_db_prep_save(value, connection)


def update(objs: Sequence[models.Model], names: Sequence[str]) -> None:
    """`bulk_update` of these fields in one statement built directly: Django's bulk_update spends
    ~1 s of Python per 500 rows × 9 fields resolving CASE expressions. PostgreSQL: UPDATE ... FROM
    jsonb_to_recordset (a join, linear in the rows, and one parameter); elsewhere the CASE ...
    WHEN id SQL that bulk_update would write."""
    if not objs:
        return
    model = type(objs[0])
    fields = [model._meta.get_field(name) for name in names]
    if is_postgresql():
        payload = json.dumps([{"id": obj.pk, **{f"c{i}": getattr(obj, field.attname) for i, field in enumerate(fields)}}
                              for obj in objs], cls=DjangoJSONEncoder)
        record = ", ".join(["id bigint", *[f"c{i} {field.cast_db_type(connection)}" for i, field in enumerate(fields)]])
        assignments = ", ".join(f"{_qn(field.column)} = v.c{i}" for i, field in enumerate(fields))
        sql = (f"UPDATE {_table(model)} AS t SET {assignments} "
               f"FROM jsonb_to_recordset(%s::jsonb) AS v({record}) WHERE t.id = v.id")
        params: list[Any] = [payload]
    else:
        sets, params = [], []
        for field in fields:
            whens = " ".join("WHEN %s THEN %s" for _ in objs)
            sets.append(f"{_qn(field.column)} = CASE {_qn('id')} {whens} ELSE {_qn(field.column)} END")
            for obj in objs:
                params += [obj.pk, field.get_db_prep_save(getattr(obj, field.attname), connection)]
        sql = f"UPDATE {_table(model)} SET {', '.join(sets)} WHERE {_qn('id')} IN ({', '.join(['%s'] * len(objs))})"
        params += [obj.pk for obj in objs]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def select_in(model, columns: Sequence[str], *, where: dict[str, Any], key: str, values: list[Any]) -> list[tuple]:
    """`columns` of the rows matching `where` whose `key` column is one of `values` (PostgreSQL:
    one array parameter instead of a thousand placeholders)."""
    if is_postgresql():
        conditions = [f"{_qn(c)} IS NULL" if v is None else f"{_qn(c)} = %s" for c, v in where.items()]
        if values and all(type(v) is str for v in values):
            array_sql, array_param = array(values)
        elif values and all(type(v) is int for v in values):
            array_sql, array_param = array(values, of="bigint")
        else:
            array_sql, array_param = "%s", list(values)
        conditions.append(f"{_qn(key)} = ANY({array_sql})")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_column_list(columns)} FROM {_table(model)} WHERE {' AND '.join(conditions)}",
                           [*(v for v in where.values() if v is not None), array_param])
            return cursor.fetchall()
    names = {f.column: f.name for f in model._meta.concrete_fields}
    return list(model.objects.filter(**{names[c]: v for c, v in where.items()}, **{f"{names[key]}__in": values})
                .values_list(*(names[c] for c in columns)))


def analyze(model) -> None:
    """ANALYZE a table (PostgreSQL) whose statistics are behind a fast bulk write: autovacuum
    analyzes only minutes later, and meanwhile the planner believes the table is tiny."""
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {_table(model)}")
