"""Customers across gateways: the identity rules, and staff's merge and split.

The rules (README "Customers"), per merchant, in this order:
1. the same gateway reference on the same credential (Faspay customer id, FarPay CustomerNumber,
   Espay member code);
2. the same e-mail, normalized (trimmed, lower-cased), on any gateway;
3. the same phone, normalized to E.164 with `phonenumbers` (the merchant's country is the region
   of a number written without a country code), on any gateway;
4. an invoice with none of these is a customer of its own (its key is the invoice itself).
An invoice belongs to the owner of its first key that has one; keys it brings that nobody owns yet
are added to that customer. A key is never moved by a sync, only by `customer_merge` /
`customer_split`, so staff's decisions survive every later sync. Names never merge: similar names
are offered as suggestions (`arbook.selectors.customers.merge_suggestions`).
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import lru_cache
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import phonenumbers
from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from arbook import bulk
from arbook.models import (
    AuditEntry,
    Customer,
    CustomerBalance,
    CustomerIdentity,
    DuplicateSuspect,
    Hold,
    Invoice,
    Note,
    Promise,
)
from arbook.status import RECEIVABLE

Kind = CustomerIdentity.Kind

#: Providers whose `customer_ref` is the gateway's own customer reference. Munio's is the payer's
#: phone (read as a phone), Xendit has none: they identify a payer by e-mail or phone only.
REF_PROVIDERS = frozenset({"faspay", "farpay", "espay"})
PHONE_REF_PROVIDERS = frozenset({"munio"})

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Legal forms and honorifics that do not tell two debtors apart ("PT. Maju" and "Maju, PT").
_NAME_NOISE = frozenset({"pt", "cv", "tbk", "ud", "pd", "persero", "ltd", "inc", "llc", "co", "corp", "aps", "as",
                         "a/s", "gmbh", "bv", "sa", "bapak", "ibu", "bpk", "mr", "mrs", "ms", "dr"})
#: Two open invoices of one customer with the same amount issued this close are a possible double billing.
DUPLICATE_WINDOW_DAYS = 7


class Party(NamedTuple):
    """What one invoice says about who owes it (a named tuple: a sync builds one per invoice)."""

    external_id: str
    name: str = ""
    ref: str = ""
    email: str = ""
    phone: str = ""

    @classmethod
    def of(cls, invoice) -> "Party":
        """From anything with the invoice's customer fields (a RemoteInvoice or an Invoice)."""
        return cls(invoice.external_id, invoice.customer_name or "", invoice.customer_ref or "",
                   invoice.customer_email or "", getattr(invoice, "customer_phone", "") or "")


@lru_cache(maxsize=65_536)
def normalize_email(text: str) -> str:
    """The address lower-cased and trimmed, or "" when it is not an address at all."""
    text = (text or "").strip().lower()
    return text if len(text) <= 254 and _EMAIL.match(text) else ""


@lru_cache(maxsize=65_536)  # a debtor's number repeats on each of its invoices; parsing costs ~100 µs
def normalize_phone(text: str, region: str) -> str:
    """E.164 ("+6281234567890") of a possible number, read in `region` without a country code; else ""."""
    text = (text or "").strip()
    if not text or len(text) > 40:
        return ""
    try:
        number = phonenumbers.parse(text, (region or "ID").upper())
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def name_key(name: str) -> str:
    """The name folded for suggestions: lower case, letters and digits only, legal forms dropped,
    words sorted ("PT. Maju Jaya" and "maju jaya, pt" share "jaya maju")."""
    words = re.findall(r"[^\W_]+(?:/[^\W_]+)?", (name or "").casefold())
    return " ".join(sorted(w for w in words if w not in _NAME_NOISE))[:255]


Key = tuple[str, int | None, str]  # (kind, credential id or None, normalized value)
#: Statements `customers_link` costs a batch that brings new customers (PostgreSQL, no concurrent
#: writer): the probe of every key (1), the customers and identities in one statement (1).
LINK_STATEMENTS = 2

_REF, _EMAIL_KEY, _PHONE, _INVOICE = Kind.REF.value, Kind.EMAIL.value, Kind.PHONE.value, Kind.INVOICE.value


def party_keys(party: Party, *, provider: str, credential_id: int, region: str) -> list[tuple[Key, str]]:
    """The party's keys in matching order, each with the form it was shown in."""
    keys = _contact_keys(party.ref, party.email, party.phone, provider, credential_id, region)
    if not keys:
        return [((_INVOICE, credential_id, party.external_id[:255]), party.external_id)]
    return list(keys)


@lru_cache(maxsize=65_536)  # a debtor's invoices repeat its contact data: computed once per run
def _contact_keys(ref: str, email: str, phone: str, provider: str, credential_id: int,
                  region: str) -> tuple[tuple[Key, str], ...]:
    """`party_keys` from the contact data alone (empty when it has none)."""
    keys: list[tuple[Key, str]] = []
    ref = ref.strip()
    if ref and provider in REF_PROVIDERS:
        keys.append(((_REF, credential_id, ref[:255]), ref))
    normal_email = normalize_email(email) if email else ""
    if normal_email:
        keys.append(((_EMAIL_KEY, None, normal_email), email.strip()))
    normal_phone = normalize_phone(phone, region) if phone else ""
    if normal_phone:
        keys.append(((_PHONE, None, normal_phone), phone.strip()))
    if ref and provider in PHONE_REF_PROVIDERS:  # Munio's reference is the payer's phone
        other = normalize_phone(ref, region)
        if other and other != normal_phone:
            keys.append(((_PHONE, None, other), ref))
    return tuple(keys)


def _owners(merchant_id: int, keys: Iterable[Key]) -> dict[Key, int]:
    """Who owns each of these keys now.

    PostgreSQL: one statement for every kind of key, each key a probe of its unique index (a
    scalar subquery per key: the planner cannot trade the probes for a scan of all the
    merchant's identities, which it did for a large `= ANY(...)` once the table had grown past
    its statistics). Elsewhere one query per kind of key."""
    if bulk.is_postgresql():
        wanted = list(set(keys))
        if not wanted:
            return {}
        with connection.cursor() as cursor:
            cursor.execute(*owners_statement(merchant_id, wanted))
            return {wanted[n - 1]: customer_id for n, customer_id in cursor.fetchall() if customer_id is not None}
    return _owners_by_kind(merchant_id, keys)


def owners_statement(merchant_id: int, keys: Sequence[Key]) -> tuple[str, list]:
    """`_owners`' PostgreSQL statement and its parameters: (n, owner or NULL) of the n-th key."""
    arrays = [bulk.array([k[0] for k in keys]), bulk.array([k[1] for k in keys], of="bigint"),
              bulk.array([k[2] for k in keys])]
    return (_OWNERS_SQL.format(*(sql for sql, _param in arrays)),
            [merchant_id, merchant_id, *(param for _sql, param in arrays)])


def _owners_by_kind(merchant_id: int, keys: Iterable[Key]) -> dict[Key, int]:
    """`_owners` as one query per kind of key (any database)."""
    by_kind: dict[tuple[str, int | None], set[str]] = {}
    for kind, credential_id, value in keys:
        by_kind.setdefault((kind, credential_id), set()).add(value)
    owners: dict[Key, int] = {}
    for (kind, credential_id), values in by_kind.items():
        for value, customer_id in bulk.select_in(
                CustomerIdentity, ("value", "customer_id"), key="value", values=sorted(values),
                where={"merchant_id": merchant_id, "kind": kind, "credential_id": credential_id}):
            owners[(kind, credential_id, value)] = customer_id
    return owners


_IDENTITY_TABLE = CustomerIdentity._meta.db_table
_OWNERS_SQL = (
    "SELECT k.n, CASE WHEN k.cred IS NULL "
    f"  THEN (SELECT i.customer_id FROM {_IDENTITY_TABLE} AS i WHERE i.merchant_id = %s AND i.kind = k.kind"
    "         AND i.credential_id IS NULL AND i.value = k.value)"
    f"  ELSE (SELECT i.customer_id FROM {_IDENTITY_TABLE} AS i WHERE i.credential_id = k.cred AND i.kind = k.kind"
    "         AND i.value = k.value AND i.merchant_id = %s) END"
    " FROM unnest({}, {}, {}) WITH ORDINALITY AS k(kind, cred, value, n)")


#: The columns of a new identity row, in the order `customers_link` builds them.
_IDENTITY_COLUMNS = ("merchant_id", "customer_id", "kind", "credential_id", "provider", "value", "shown",
                     "created_at")


def customers_link(*, merchant_id: int, credential_id: int, provider: str, region: str,
                   parties: Sequence[Party], now: datetime | None = None) -> list[int]:
    """The customer id of each party, creating the customers and identities it needs.

    A batch whose keys are all known costs one probe (PostgreSQL; one per kind of key elsewhere);
    one that brings new customers adds the insert of them and of the identities (a key another
    writer created meanwhile is skipped), and only then, if one was skipped, the owners again
    (that writer's customer wins; ours is dropped). At most LINK_STATEMENTS statements in all
    (PostgreSQL, no concurrent writer).
    """
    if not parties:
        return []
    now = now or timezone.now()
    keyed = [party_keys(p, provider=provider, credential_id=credential_id, region=region) for p in parties]
    owners = _owners(merchant_id, (k for keys in keyed for k, _shown in keys))
    new_customers: list[dict] = []
    claimed: dict[Key, int] = {}  # keys this batch gives to its new customers (index in new_customers)
    new_identities: dict[Key, tuple[int, bool, str]] = {}  # key -> (customer id or new index, is new, shown)
    for party, keys in zip(parties, keyed):
        owner = next((owners[k] for k, _s in keys if k in owners), None)
        is_new = False
        if owner is None:
            owner = next((claimed[k] for k, _s in keys if k in claimed), None)
            is_new = owner is not None
        if owner is None:
            owner, is_new = len(new_customers), True
            new_customers.append({"merchant_id": merchant_id, "name": party.name.strip()[:255],
                                  "name_key": name_key(party.name), "created_at": now})
        for key, shown in keys:
            if key not in owners and key not in new_identities:
                new_identities[key] = (owner, is_new, shown[:255])
                if is_new:
                    claimed[key] = owner
    if new_identities:  # every new customer brings at least one key
        # Inside the caller's transaction where there is one (the write path): no savepoint.
        with transaction.atomic(savepoint=False):
            if bulk.is_postgresql():
                ids, inserted = _create_postgresql(merchant_id, provider, now, new_customers, new_identities)
            else:
                ids = bulk.insert_objects(Customer, new_customers, need_ids=True)
                inserted = bulk.merge(CustomerIdentity, _IDENTITY_COLUMNS, [
                    (merchant_id, ids[owner] if is_new else owner, kind, cred, provider, value, shown, now)
                    for (kind, cred, value), (owner, is_new, shown) in new_identities.items()])
            if inserted == len(new_identities):
                owners.update((key, ids[owner] if is_new else owner)
                              for key, (owner, is_new, _shown) in new_identities.items())
            else:
                owners = _owners(merchant_id, (k for keys in keyed for k, _s in keys))
                kept = set(owners.values())
                lost = [pk for pk in ids if pk not in kept]
                if lost:  # the new customers that lost every key to a concurrent writer
                    Customer.objects.filter(pk__in=lost).delete()
    return [next(owners[k] for k, _s in keys if k in owners) for keys in keyed]


def _create_postgresql(merchant_id: int, provider: str, now: datetime, new_customers: list[dict],
                       new_identities: dict[Key, tuple[int, bool, str]]) -> tuple[list[int], int]:
    """Insert the new customers (their ids drawn from the sequence in the statement) and the new
    identities (a key another writer holds already is skipped) in one statement. Returns the new
    customers' ids, in order, and how many identities were inserted."""
    fields = [f for f in Customer._meta.concrete_fields if not f.primary_key and not f.generated]
    columns, values, params = [], [], []
    for f in fields:
        columns.append(connection.ops.quote_name(f.column))
        if f.attname in ("name", "name_key"):
            values.append(f"new.{f.attname}")
            continue
        default = now if f.attname == "created_at" else merchant_id if f.attname == "merchant_id" else f.get_default()
        values.append(f"%s::{f.db_type(connection)}")
        params.append(f.get_db_prep_save(default, connection))
    owner_ids, new_indexes, kinds, creds, texts, shown = [], [], [], [], [], []
    for (kind, cred, value), (owner, is_new, shown_as) in new_identities.items():
        owner_ids.append(None if is_new else owner)
        new_indexes.append(owner + 1 if is_new else None)  # WITH ORDINALITY counts from 1
        kinds.append(kind)
        creds.append(cred)
        texts.append(value)
        shown.append(shown_as)
    customer_table, identity_table = Customer._meta.db_table, CustomerIdentity._meta.db_table
    names = [bulk.array([c["name"] for c in new_customers]), bulk.array([c["name_key"] for c in new_customers])]
    keys = [bulk.array(owner_ids, of="bigint"), bulk.array(new_indexes, of="bigint"), bulk.array(kinds),
            bulk.array(creds, of="bigint"), bulk.array(texts), bulk.array(shown)]
    sql = (
        "WITH new AS MATERIALIZED ("
        f"  SELECT c.n, nextval(pg_get_serial_sequence('{customer_table}', 'id')) AS id, c.name, c.name_key"
        f"   FROM unnest({', '.join(a for a, _p in names)}) WITH ORDINALITY AS c(name, name_key, n)"
        "), customers AS ("
        f"  INSERT INTO {customer_table} (id, {', '.join(columns)}) SELECT new.id, {', '.join(values)} FROM new"
        "), identities AS ("
        f"  INSERT INTO {identity_table} ({', '.join(_IDENTITY_COLUMNS)})"
        "   SELECT %s, COALESCE(new.id, k.owner), k.kind, k.cred, %s, k.value, k.shown, %s"
        f"   FROM unnest({', '.join(a for a, _p in keys)})"
        "     AS k(owner, n, kind, cred, value, shown) LEFT JOIN new ON new.n = k.n"
        "   ON CONFLICT DO NOTHING RETURNING 1"
        ") SELECT (SELECT count(*) FROM identities), (SELECT array_agg(id ORDER BY n) FROM new)")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(p for _a, p in names), *params, merchant_id, provider, now, *(p for _a, p in keys)])
        inserted, ids = cursor.fetchone()
    return list(ids or []), inserted


# -- staff's decisions ---------------------------------------------------------------------------

def _relink(customer_ids: Iterable[int]) -> int:
    """Point each invoice of these customers at the owner of its first key (after keys moved)."""
    moved = 0
    invoices = (Invoice.objects.filter(customer_id__in=list(customer_ids))
                .select_related("merchant").only("id", "customer_id", "credential_id", "provider", "external_id",
                                                 "customer_name", "customer_ref", "customer_email",
                                                 "customer_phone", "merchant__country"))
    by_target: dict[int, list[int]] = {}
    rows = list(invoices)
    if not rows:
        return 0
    merchant_id = rows[0].merchant_id
    keyed = [(inv, party_keys(Party.of(inv), provider=inv.provider, credential_id=inv.credential_id,
                              region=inv.merchant.country)) for inv in rows]
    owners = _owners(merchant_id, (k for _i, keys in keyed for k, _s in keys))
    for inv, keys in keyed:
        target = next((owners[k] for k, _s in keys if k in owners), inv.customer_id)
        if target != inv.customer_id:
            by_target.setdefault(target, []).append(inv.pk)
    for target, ids in by_target.items():
        moved += Invoice.objects.filter(pk__in=ids).update(customer_id=target)
    return moved


@transaction.atomic
def customer_merge(*, target: Customer, others: Sequence[Customer], user) -> int:
    """Make `others` part of `target`: their keys and invoices move, and they are removed. Returns
    the number of invoices moved. The moved keys record who decided, so a sync never undoes it."""
    ids = [c.pk for c in others if c.pk != target.pk]
    if any(c.merchant_id != target.merchant_id for c in others):
        raise ValueError("customers of different merchants never merge")
    if not ids:
        return 0
    CustomerIdentity.objects.filter(customer_id__in=ids).update(
        customer_id=target.pk, decided_by=user, decided_at=timezone.now())
    moved = Invoice.objects.filter(customer_id__in=ids).update(customer_id=target.pk)
    # What collectors recorded about them is the target's now (deleting them would cascade to it).
    for model in (Note, Hold, Promise, AuditEntry):
        model.objects.filter(customer_id__in=ids).update(customer_id=target.pk)
    Customer.objects.filter(pk__in=ids).delete()
    customers_refresh(customer_ids=[target.pk])
    return moved


@transaction.atomic
def customer_split(*, customer: Customer, identity_ids: Sequence[int], name: str, user) -> Customer:
    """Move these keys of `customer` to a new customer named `name`, with the invoices they decide."""
    identities = CustomerIdentity.objects.filter(customer=customer, pk__in=list(identity_ids))
    if not identities.exists():
        raise ValueError("choose at least one identity of this customer to split off")
    if identities.count() == customer.identities.count():
        raise ValueError("a split must leave the customer at least one identity")
    chosen = name.strip()[:255] or customer.name
    new = Customer.objects.create(merchant_id=customer.merchant_id, name=chosen, name_key=name_key(chosen),
                                  name_locked=bool(name.strip()))
    identities.update(customer=new, decided_by=user, decided_at=timezone.now())
    _relink([customer.pk])
    customers_refresh(customer_ids=[customer.pk, new.pk])
    return new


# -- the summary the customer list reads -------------------------------------------------------------

#: What a customer still owes: a receivable state with something left (or an unknown remainder).
_OWED = Q(status__in=RECEIVABLE) & (Q(outstanding__gt=0) | Q(outstanding__isnull=True, amount__gt=0))


def customers_refresh(*, customer_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Recompute these customers' summary, balances per currency (and what of them is overdue at
    `now`) and possible double billings from their invoices, in set-based statements whatever
    their number.

    PostgreSQL: one statement reads the customers' invoices once (on the customer index of the
    invoices) and updates the summaries, upserts the balances and the double-billing pairs (a
    self-join, `_DUPLICATES_SQL`) and deletes those that no longer hold; rows that are already
    right are left as they are. Elsewhere (SQLite): the ORM and `_duplicates`, same results."""
    ids = sorted({i for i in customer_ids if i is not None})
    if not ids:
        return 0
    now = now or timezone.now()
    if bulk.is_postgresql():
        _refresh_postgresql(ids, now)
    else:
        _refresh_orm(ids, now)
    return len(ids)


def _refresh_orm(ids: list[int], now: dt.datetime) -> None:
    """`customers_refresh` through the ORM (SQLite, the embedded default: small data)."""
    invoices = Invoice.objects.filter(customer_id__in=ids)
    with transaction.atomic():
        _summaries_orm(ids, invoices)
        CustomerBalance.objects.filter(customer_id__in=ids).delete()
        balances_sql, balances_params = (
            invoices.filter(_OWED).order_by().values("customer_id", "merchant_id", "currency")
            .annotate(total=Sum(Coalesce("outstanding", "amount")), n=Count("id"))
            .values_list("customer_id", "merchant_id", "currency", "total", "n").query.sql_with_params())
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {CustomerBalance._meta.db_table} (customer_id, merchant_id, currency, "
                           f"outstanding, open_count) {balances_sql}", balances_params)
        _overdue_orm(invoices.filter(_OWED, due_at__lt=now))
        DuplicateSuspect.objects.filter(customer_id__in=ids).delete()
        DuplicateSuspect.objects.bulk_create(_duplicates(invoices.filter(_OWED, amount__isnull=False)))


#: Possible double billings among the rows of `candidates` (id, customer_id, currency, amount, issued_at,
#: bucket): both directions of every pair of one customer, currency and amount issued at most the
#: window apart, as `_duplicates` finds them. `bucket` is the issue time in whole windows, so a pair
#: lies in one bucket or two adjacent ones: the join hashes on it and never compares all of a
#: customer's invoices of one amount with each other.
_DUPLICATES_SQL = (
    "SELECT a.customer_id, a.id AS invoice_id, b.id AS other_id"
    " FROM candidates AS a CROSS JOIN (VALUES (-1), (0), (1)) AS step(d)"
    " JOIN candidates AS b ON b.customer_id = a.customer_id AND b.currency = a.currency AND b.amount = a.amount"
    "  AND b.bucket = a.bucket + step.d"
    " WHERE b.id <> a.id AND b.issued_at BETWEEN a.issued_at - make_interval(secs => %(window)s)"
    "  AND a.issued_at + make_interval(secs => %(window)s)")


def _candidates_sql() -> str:
    return ("SELECT id, customer_id, currency, amount, issued_at,"
            " floor(extract(epoch FROM issued_at) / %(window)s)::bigint AS bucket"
            " FROM inv WHERE owed AND amount IS NOT NULL AND issued_at IS NOT NULL")


def duplicate_pairs_sql(ids: list[int]) -> list[tuple[int, int, int]]:
    """(customer, invoice, other) of the possible double billings of these customers, computed by
    the SQL that `customers_refresh` runs on PostgreSQL (for comparing it with `_duplicates`)."""
    owed_sql, owed_params = _where_sql(Invoice.objects.filter(_OWED))
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH inv AS MATERIALIZED (SELECT id, customer_id, currency, amount, issued_at, ({_named(owed_sql)}) AS owed"
            f" FROM {Invoice._meta.db_table} WHERE customer_id = ANY(%(ids)s)), candidates AS MATERIALIZED ({_candidates_sql()}) "
            f"{_DUPLICATES_SQL}", {**_params(owed_params), "ids": ids, "window": _window_seconds()})
        return cursor.fetchall()


def _window_seconds() -> float:
    return float(DUPLICATE_WINDOW_DAYS * 86_400)


def _named(sql: str) -> str:
    """`%s` placeholders as `%(owed_<n>)s`, to mix with named parameters."""
    parts = sql.split("%s")
    return "".join(part + (f"%(owed_{i})s" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def _params(values: list) -> dict:
    return {f"owed_{i}": v for i, v in enumerate(values)}


def _refresh_postgresql(ids: list[int], now: dt.datetime) -> None:
    """The whole refresh in one statement: the invoices are read once (`inv`); the summary is
    written where it changed; the balances and pairs are upserted (unchanged ones untouched) and
    the stale ones deleted. Each data-modifying part touches rows no other part touches, so the
    order PostgreSQL runs them in does not matter."""
    owed_sql, owed_params = _where_sql(Invoice.objects.filter(_OWED))
    customer, balance, suspect = (Customer._meta.db_table, CustomerBalance._meta.db_table,
                                  DuplicateSuspect._meta.db_table)
    sql = (
        "WITH inv AS MATERIALIZED ("
        "  SELECT id, customer_id, merchant_id, currency, amount, outstanding, due_at, paid_at, provider, issued_at,"
        f"  ({_named(owed_sql)}) AS owed FROM {Invoice._meta.db_table} WHERE customer_id = ANY(%(ids)s)"
        "), summary AS ("
        "  SELECT ids.id, COALESCE(s.n, 0) AS n, COALESCE(s.n_open, 0) AS n_open, s.oldest, s.last_paid,"
        "   COALESCE(s.providers, '') AS providers FROM unnest(%(ids)s::bigint[]) AS ids(id) LEFT JOIN ("
        "    SELECT customer_id, count(*) AS n, count(*) FILTER (WHERE owed) AS n_open,"
        "     min(due_at) FILTER (WHERE owed) AS oldest, max(paid_at) AS last_paid,"
        "     string_agg(DISTINCT provider, ',' ORDER BY provider) AS providers FROM inv GROUP BY customer_id"
        "   ) AS s ON s.customer_id = ids.id"
        "), summary_set AS ("
        f"  UPDATE {customer} AS c SET invoice_count = s.n, open_count = s.n_open, oldest_open_due = s.oldest,"
        "   last_paid_at = s.last_paid, providers = s.providers FROM summary AS s WHERE c.id = s.id"
        "   AND (c.invoice_count, c.open_count, c.oldest_open_due, c.last_paid_at, c.providers)"
        "    IS DISTINCT FROM (s.n, s.n_open, s.oldest, s.last_paid, s.providers)"
        "), balances AS ("
        "  SELECT customer_id, merchant_id, currency, sum(COALESCE(outstanding, amount)) AS total, count(*) AS n,"
        "   COALESCE(sum(COALESCE(outstanding, amount)) FILTER (WHERE due_at < %(now)s), 0) AS overdue,"
        "   COALESCE(round(sum(COALESCE(outstanding, amount) * extract(epoch FROM due_at) / 86400)"
        "    FILTER (WHERE due_at < %(now)s), 4), 0) AS weight"
        "   FROM inv WHERE owed GROUP BY customer_id, merchant_id, currency"
        "), balances_set AS ("
        f"  INSERT INTO {balance} AS b (customer_id, merchant_id, currency, outstanding, open_count, overdue,"
        "   overdue_weight) SELECT customer_id, merchant_id, currency, total, n, overdue, weight FROM balances"
        "   ON CONFLICT (customer_id, currency) DO UPDATE SET merchant_id = EXCLUDED.merchant_id,"
        "    outstanding = EXCLUDED.outstanding, open_count = EXCLUDED.open_count, overdue = EXCLUDED.overdue,"
        "    overdue_weight = EXCLUDED.overdue_weight"
        "   WHERE (b.merchant_id, b.outstanding, b.open_count, b.overdue, b.overdue_weight)"
        "    IS DISTINCT FROM (EXCLUDED.merchant_id, EXCLUDED.outstanding, EXCLUDED.open_count, EXCLUDED.overdue,"
        "     EXCLUDED.overdue_weight)"
        "), balances_gone AS ("
        f"  DELETE FROM {balance} AS b WHERE b.customer_id = ANY(%(ids)s) AND NOT EXISTS ("
        "   SELECT 1 FROM balances AS n WHERE n.customer_id = b.customer_id AND n.currency = b.currency)"
        f"), candidates AS MATERIALIZED ({_candidates_sql()}"
        f"), pairs AS ({_DUPLICATES_SQL}"
        "), pairs_set AS ("
        f"  INSERT INTO {suspect} AS d (customer_id, invoice_id, other_id) SELECT customer_id, invoice_id, other_id"
        "   FROM pairs ON CONFLICT (invoice_id, other_id) DO UPDATE SET customer_id = EXCLUDED.customer_id"
        "   WHERE d.customer_id <> EXCLUDED.customer_id"
        "), pairs_gone AS ("
        f"  DELETE FROM {suspect} AS d WHERE d.customer_id = ANY(%(ids)s) AND NOT EXISTS ("
        "   SELECT 1 FROM pairs AS p WHERE p.invoice_id = d.invoice_id AND p.other_id = d.other_id)"
        ") SELECT 1")
    with connection.cursor() as cursor:
        cursor.execute(sql, {**_params(owed_params), "ids": ids, "window": _window_seconds(), "now": now})


def _overdue_orm(overdue) -> None:
    """The balances' overdue part and its weight (`CustomerBalance.overdue_weight`), in Python:
    SQLite has no exact decimal arithmetic to compute the weight with."""
    sums: dict[tuple[int, str], list] = {}
    for customer_id, currency, owed, due_at in overdue.values_list(
            "customer_id", "currency", Coalesce("outstanding", "amount"), "due_at"):
        entry = sums.setdefault((customer_id, currency), [Decimal(0), Decimal(0)])
        entry[0] += owed
        entry[1] += owed * epoch_days(due_at)
    for (customer_id, currency), (total, weight) in sums.items():
        CustomerBalance.objects.filter(customer_id=customer_id, currency=currency).update(
            overdue=total, overdue_weight=weight.quantize(Decimal("0.0001")))


def epoch_days(instant: dt.datetime) -> Decimal:
    """An instant in days since 1970-01-01 UTC, as the balances' weight counts it (PostgreSQL's
    `extract(epoch ...) / 86400`)."""
    return Decimal(int(instant.timestamp() * 1_000_000)) / Decimal(86_400_000_000)


def _where_sql(queryset) -> tuple[str, list]:
    """The WHERE clause of a one-table queryset, unqualified, as SQL and parameters."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = queryset.query.where.as_sql(compiler, connection)
    return sql.replace(f'"{Invoice._meta.db_table}".', ""), list(params)


def _summaries_orm(ids: list[int], invoices) -> None:
    """The same summary through the ORM (SQLite, the embedded default: small data)."""
    of = Invoice.objects.filter(customer_id=OuterRef("pk")).order_by().values("customer_id")
    Customer.objects.filter(pk__in=ids).update(
        invoice_count=Coalesce(Subquery(of.annotate(n=Count("id")).values("n")), 0),
        open_count=Coalesce(Subquery(of.filter(_OWED).annotate(n=Count("id")).values("n")), 0),
        oldest_open_due=Subquery(of.filter(_OWED).annotate(m=Min("due_at")).values("m")),
        last_paid_at=Subquery(of.annotate(m=Max("paid_at")).values("m")))
    providers: dict[int, set[str]] = {}
    for customer_id, provider in invoices.order_by().values_list("customer_id", "provider").distinct():
        providers.setdefault(customer_id, set()).add(provider)
    by_value: dict[str, list[int]] = {}
    for customer_id in ids:
        by_value.setdefault(",".join(sorted(providers.get(customer_id, ()))), []).append(customer_id)
    for value, group in by_value.items():
        Customer.objects.filter(pk__in=group).exclude(providers=value).update(providers=value)


def _duplicates(open_invoices) -> list[DuplicateSuspect]:
    """Pairs (both ways) of open invoices with the same customer, currency and amount issued within
    DUPLICATE_WINDOW_DAYS of each other, on any gateways."""
    groups: dict[tuple, list[tuple]] = {}
    for pk, customer_id, currency, amount, issued in (open_invoices.order_by("issued_at", "id")
                                                     .values_list("id", "customer_id", "currency", "amount",
                                                                  "issued_at")):
        if issued is not None:
            groups.setdefault((customer_id, currency, amount), []).append((pk, issued))
    window = timezone.timedelta(days=DUPLICATE_WINDOW_DAYS)
    out = []
    for (customer_id, _c, _a), rows in groups.items():
        for i, (pk, issued) in enumerate(rows):
            for other, other_issued in rows[i + 1:]:
                if other_issued - issued > window:
                    break
                out += [DuplicateSuspect(customer_id=customer_id, invoice_id=pk, other_id=other),
                        DuplicateSuspect(customer_id=customer_id, invoice_id=other, other_id=pk)]
    return out
