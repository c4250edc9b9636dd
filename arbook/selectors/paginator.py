"""Keyset ("seek") pagination: the one paginator of every keyset list (invoices, sync runs).

A page is "the next `size` rows after (sort value, id) of the last row shown", never OFFSET, so
page 40,000 costs what page 1 costs, and no COUNT over the table is needed to page. Links are
First / Previous / Next / Last; "Last" walks the same order backwards from the end, which is how
a user reaches the end of a million rows in one click.

Nullable sort keys (due, issued and paid dates, amounts) put unknown values last in both
directions. Each query reads one "segment" — the rows with a value (ordered by value, id, so an
index on the column serves it) or the rows without (ordered by id) — and a page that crosses
from one into the other reads the second with one more query.

A cursor travels in the URL as a token: by default base64 JSON of (sort, segment, value, id),
read back by `Cursor.decode` within the bounds of the sort column (`arbook.params`). A list may
write its own token (the syncs page writes `<micros>.<id>`) by passing `encode=` to `keyset_page`.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Coalesce

from arbook.params import MAX_ID, MAX_TEXT, check_id, parse_decimal, parse_int, parse_moment

VALUE, NULL = "v", "n"
#: Integer columns a list may sort on (a customer's invoice count); their cursor value is its digits.
INTEGER_KINDS = frozenset({"IntegerField", "PositiveIntegerField", "BigIntegerField", "PositiveBigIntegerField",
                           "SmallIntegerField", "PositiveSmallIntegerField"})


@dataclass(frozen=True)
class Sort:
    """A list's order: one column of `model`, up or down, ties broken by id in the same direction."""

    field: str
    descending: bool
    model: type[Model]

    @classmethod
    def parse(cls, text: str | None, *, model: type[Model], fields: Mapping[str, str]) -> Sort | None:
        """`field` or `-field` of `fields` (the sortable columns); None for anything else."""
        text = (text or "").strip()
        field = text.lstrip("-")
        if field not in fields or text.count("-") > 1:
            return None
        return cls(field, text.startswith("-"), model)

    @property
    def param(self) -> str:
        return ("-" if self.descending else "") + self.field

    @property
    def nullable(self) -> bool:
        return self.model._meta.get_field(self.field).null


@dataclass(frozen=True)
class Cursor:
    sort: str
    segment: str  # VALUE or NULL
    value: Any
    pk: int

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else (
            None if self.value is None else str(self.value))
        raw = json.dumps([self.sort, self.segment, value, self.pk], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, sort: Sort) -> Cursor | None:
        """The cursor in `token`, or None when it is malformed, belongs to another sort order or
        carries a value its column cannot hold (a URL is user input: NaN, Infinity, 1e999999, a
        moment whose UTC offset overflows the year, an id past 2**63, a NUL character).

        Each value is read by `arbook.params` with the bounds of its column; a moment comes back
        in UTC (PostgreSQL takes offsets up to ±15:59 only).
        """
        if len(token) > MAX_TEXT:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            # NaN and Infinity are not JSON, but Python's reader accepts them: refuse them here.
            sort_param, segment, value, pk = json.loads(raw, parse_constant=_no_constant)
            if sort_param != sort.param or segment not in (VALUE, NULL):
                return None
            pk = check_id(pk)
            if segment == NULL:
                return cls(sort_param, NULL, None, pk) if sort.nullable else None
            field = sort.model._meta.get_field(sort.field)
            kind = field.get_internal_type()
            if kind == "DateTimeField":
                value = parse_moment(value)
            elif kind == "DecimalField":
                if not isinstance(value, str):
                    return None
                value = parse_decimal(value, max_digits=field.max_digits, decimal_places=field.decimal_places)
            elif kind in INTEGER_KINDS:
                value = parse_int(value, min_value=-MAX_ID, max_value=MAX_ID)
            elif not isinstance(value, str) or "\x00" in value or len(value) > (field.max_length or 0):
                return None
            return cls(sort_param, VALUE, value, pk)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
            return None  # ParamError and json.JSONDecodeError are ValueErrors

    @classmethod
    def of(cls, row: Model, sort: Sort) -> Cursor:
        value = getattr(row, sort.field)
        if value is None and sort.nullable:
            return cls(sort.param, NULL, None, row.pk)
        return cls(sort.param, VALUE, value, row.pk)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def segments(sort: Sort, *, reverse: bool = False) -> list[str]:
    """The segments of `sort` in traversal order: values, then unknown values (when nullable)."""
    parts = [VALUE, NULL] if sort.nullable else [VALUE]
    return parts[::-1] if reverse else parts


def segment_query(qs: QuerySet, sort: Sort, segment: str, *, reverse: bool = False, after: Cursor | None = None,
                  fence: bool = False) -> QuerySet:
    """One segment in traversal order, strictly after `after` when given.

    `fence`: order by `COALESCE(col, col)` (same order, but no index matches it), so PostgreSQL
    reads the rows the filters select through their own index and sorts the top of them, instead
    of walking the sort column's index and hoping to meet matches early.
    """
    down = sort.descending != reverse  # walking the values downwards?
    f = sort.field
    key = Coalesce(F(f), F(f)) if fence and connection.vendor == "postgresql" else F(f)
    if segment == NULL:
        qs = qs.filter(**{f"{f}__isnull": True})
        if after is not None:
            qs = qs.filter(pk__lt=after.pk) if down else qs.filter(pk__gt=after.pk)
        return qs.order_by("-pk" if down else "pk")
    if sort.nullable:
        qs = qs.filter(**{f"{f}__isnull": False})
    if after is not None:
        v = after.value
        # `f >= v` bounds the index range; the OR only drops the ties already shown.
        if down:
            qs = qs.filter(Q(**{f"{f}__lte": v}) & (Q(**{f"{f}__lt": v}) | Q(pk__lt=after.pk)))
        else:
            qs = qs.filter(Q(**{f"{f}__gte": v}) & (Q(**{f"{f}__gt": v}) | Q(pk__gt=after.pk)))
    return qs.order_by(key.desc() if down else key.asc(), "-pk" if down else "pk")


def ordered(qs: QuerySet, sort: Sort) -> Iterator[QuerySet]:
    """`qs` in `sort` order as one queryset per segment (what an export reads one after the other)."""
    for segment in segments(sort):
        yield segment_query(qs, sort, segment)


def _walk(qs: QuerySet, sort: Sort, *, after: Cursor | None, reverse: bool, limit: int, fence: bool = False,
          ids_first: bool = False) -> list:
    """Up to `limit` rows after `after` (None: from the start of the walk), forwards or backwards.

    `ids_first` (implied by `fence`): choose the page's ids first, reading only the filter and
    sort columns, then read just those rows. Walking the sort column's index, PostgreSQL tests the
    filters on each row it passes; from a covering index (index-only) that costs an index entry,
    from the table a table row: overdue only, newest issued first, passed 86k receivables not yet
    due at 10M invoices, 311 ms from the table, 14 ms index-only."""
    parts = segments(sort, reverse=reverse)
    start = parts.index(after.segment) if after is not None else 0
    rows: list = []
    for i in range(start, len(parts)):
        need = limit - len(rows)
        if need <= 0:
            break
        page = segment_query(qs, sort, parts[i], reverse=reverse, after=after if i == start else None, fence=fence)
        if fence or ids_first:
            # Choose the page's ids first, reading only the filter and sort columns (which a
            # covering index can answer without the table: 42k matches of a month of due dates
            # sat on 27k table pages), then read just those rows.
            page = segment_query(qs.filter(pk__in=page.values("pk")[:need]), sort, parts[i], reverse=reverse,
                                 after=None, fence=fence)
        rows += list(page[:need])
    return rows


@dataclass
class KeysetPage:
    rows: list
    size: int
    sort: Sort
    next_cursor: str | None
    previous_cursor: str | None
    is_last: bool = False

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def keyset_page(qs: QuerySet, *, sort: Sort, size: int, after: Cursor | None = None, before: Cursor | None = None,
                last: bool = False, fence: bool = False, ids_first: bool = False,
                encode: Callable[[Cursor], str] = Cursor.encode) -> KeysetPage:
    """One page of `qs` in `sort` order (ties broken by id): after a cursor, before one, or the last.

    `fence`, `ids_first`: how the rows are found (`segment_query`, `_walk`); the page is the same.
    `encode` writes the page's cursors as URL tokens (`Cursor.encode` unless the list has its own)."""
    if before is not None or last:
        rows = _walk(qs, sort, after=before, reverse=True, limit=size + 1, fence=fence, ids_first=ids_first)
        more_before = len(rows) > size
        if before is not None and not more_before:
            return keyset_page(qs, sort=sort, size=size, fence=fence, ids_first=ids_first,
                               encode=encode)  # the start: a full first page
        rows = rows[:size][::-1]
        return KeysetPage(rows, size, sort,
                          next_cursor=None if last else encode(Cursor.of(rows[-1], sort)) if rows else None,
                          previous_cursor=encode(Cursor.of(rows[0], sort)) if more_before and rows else None,
                          is_last=last)
    rows = _walk(qs, sort, after=after, reverse=False, limit=size + 1, fence=fence, ids_first=ids_first)
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, size, sort,
                      next_cursor=encode(Cursor.of(rows[-1], sort)) if more else None,
                      previous_cursor=encode(Cursor.of(rows[0], sort)) if after is not None and rows else None,
                      is_last=not more)


@dataclass(frozen=True)
class Position:
    """Where a keyset list starts and how long its page is, as its query string says."""

    size: int
    after: Cursor | None = None
    before: Cursor | None = None
    last: bool = False


def read_position(params: Mapping[str, str], *, sort: Sort, sizes: tuple[int, ...], default_size: int,
                  notices: list[str]) -> Position:
    """`size`, `after` / `before` (cursor tokens of `sort`) and `last` from a list's query string.

    A value that does not fit is left out and explained in `notices` (never raised)."""
    size_text = params.get("size") or str(default_size)
    try:
        size = parse_int(size_text, min_value=min(sizes), max_value=max(sizes))
    except ValueError:  # ParamError
        size = None
    if size not in sizes:
        notices.append(f"Page size must be one of {', '.join(map(str, sizes))}; showing {default_size}.")
        size = default_size
    cursors: dict[str, Cursor | None] = {"after": None, "before": None}
    for name in cursors:
        token = params.get(name)
        if token:
            cursors[name] = Cursor.decode(token, sort)
            if cursors[name] is None:
                notices.append("That page link does not fit the current sort order; showing the first page.")
    after, before = cursors["after"], cursors["before"]
    if after and before:
        before = None
    last = params.get("last") in ("1", "true", "on") and not (after or before)
    return Position(size=size, after=after, before=before, last=last)
