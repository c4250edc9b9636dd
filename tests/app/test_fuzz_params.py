"""Random values at every query parameter of every list page: never a 5xx (issue 14).

Hypothesis throws dates at the edges of the calendar, huge, negative, NaN and infinite numbers,
junk text (NUL, control characters, other scripts' digits, bytes that are no UTF-8), tampered
base64 page cursors (NaN, Infinity, moments whose offset overflows the year, ids past 2**63),
unknown choices and repeated parameters at `/invoices/` (the page, `_export=csv`, `_export=xlsx`,
`_totals=1`), `/aging/` (and its exports), `/`, `/syncs/` (and its status JSON), `/worklist/`, `/reminders/`, `/views/` and the Espay
batch list and detail pages, as a signed-in user with data on two merchants in the time zones
furthest apart, and requires an answer below 500 with its whole body read (an export streams, so
its errors would come late).

Deterministic (`derandomize=True`, no example database written), a few hundred examples in
all. It runs on the suite's database (PostgreSQL under `make test`) and, through
`test_the_fuzz_passes_on_sqlite_too`, once more in a subprocess on a throwaway SQLite file (how
settings read `DATABASE_URL`: `arbook/settings/base.py`), because each database refuses other
values: PostgreSQL overflows numeric and takes no NUL, SQLite binds no integer past 2**63 and
converts every moment to UTC in Python.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbook.models import EspayBatch
from arbook.selectors.invoices import SORT_FIELDS, invoice_sort
from arbook.selectors.paginator import Cursor
from arbook.status import InvoiceStatus
from tests.espay.helpers import make_batch
from tests.factories import CredentialFactory, InvoiceEventFactory, InvoiceFactory, MerchantFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# -- the data: two merchants at +14 h and -11 h, invoices, runs, batches ------------------------------

@pytest.fixture
def world(user, merchant):
    merchant.timezone = "Pacific/Kiritimati"
    merchant.save()
    west = MerchantFactory(name="West", timezone="Pacific/Pago_Pago")
    west.members.add(user)
    foreign = MerchantFactory(name="Foreign")
    faspay = CredentialFactory(merchant=merchant, provider="faspay")
    xendit = CredentialFactory(merchant=west, provider="xendit", label="x")
    espay = CredentialFactory(merchant=merchant, provider="espay", label="e")
    other = CredentialFactory(merchant=foreign)
    now = timezone.now()
    day = dt.timedelta(days=1)
    rows = []
    for i, (status, due, amount) in enumerate([
        ("open", now + 5 * day, Decimal("1500000")), ("open", now - 40 * day, Decimal("99.99")),
        ("partially_paid", now - 400 * day, None), ("failed", None, Decimal("0")), ("paid", now - 3 * day, Decimal("5")),
        ("expired", now - 100 * day, Decimal("-25.50")), ("unknown", now, Decimal("123456789012.34")),
        ("charged_back", now - 95 * day, Decimal("-123456789012.34")), ("processing", now + 400 * day, Decimal("1")),
        ("draft", None, None), ("cancelled", now - 10 * day, Decimal("7")),
    ]):
        rows.append(InvoiceFactory(credential=faspay if i % 2 else xendit, status=status, due_at=due, amount=amount,
                                   outstanding=amount, currency="IDR" if i % 3 else "USD",
                                   customer_name=f"Cust {i % 3} & <Søn>", issued_at=None if i == 3 else now - 200 * day,
                                   paid_at=now - 2 * day if status == "paid" else None))
    InvoiceFactory(credential=other, status="open", outstanding=Decimal(1))
    InvoiceEventFactory(invoice=rows[4], seen_at=now - 2 * day, status_before="open", status_after="paid",
                        outstanding_before=Decimal(5), outstanding_after=Decimal(0))
    for i in range(30):
        SyncRunFactory(credential=faspay if i % 2 else xendit, started_at=now - i * dt.timedelta(minutes=7),
                       status="failed" if i % 5 == 0 else "succeeded")
    SyncRunFactory(credential=other)
    done = make_batch(espay, user=user, lines=230)
    ready = make_batch(espay, user=user, lines=3, status="ready")
    invalid = make_batch(espay, user=user, status="invalid")
    EspayBatch.objects.filter(pk=invalid.pk).update(problem_count=1, problems=[
        {"row": 2, "column": "amount", "value": "12,5", "message": "uses a decimal comma"}])
    cursors = {sort: [Cursor.of(row, invoice_sort(sort)).encode() for row in rows]
               for sort in [*SORT_FIELDS, *("-" + s for s in SORT_FIELDS)]}
    return {"merchants": [merchant.pk, west.pk, foreign.pk], "credentials": [faspay.pk, xendit.pk, espay.pk, other.pk],
            "batches": [done.pk, ready.pk, invalid.pk], "cursors": cursors}


# -- values ---------------------------------------------------------------------------------------

EDGE_DATES = ["0001-01-01", "0001-01-02", "9999-12-31", "9999-12-30", "1899-12-31", "1900-01-01", "2999-12-31",
              "3000-01-01", "2024-02-29", "2023-02-29", "2025-13-01", "2025-00-10", "0000-01-01", "20250101",
              "2025-1-1", "+2025-01-01", "-2025-01-01", "10000-01-01", "12/31/9999", "Dec 31 9999", "today"]
EDGE_NUMBERS = ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1e999999", "-1e999999",
                "1e-999999", "1E+308", "0", "-0", "0.001", "1_000", " 1", "1 ", "0x10", "²", "٣", "١٢٣", "1e3", "",
                "9" * 19, "9" * 20, "9" * 5000, str(2 ** 63), str(2 ** 63 - 1), str(-(2 ** 63)), "25", "250", "50.0"]

def weighted(edges, *others, edge_share: int = 5):
    """`edges` drawn edge_share times in 10, the others share the rest: the edges are where pages broke."""
    rest = st.one_of(*others)
    return st.integers(0, 9).flatmap(lambda i: edges if i < edge_share else rest)


junk = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
raw_bytes = st.binary(max_size=24)  # percent-encoded as they are: not always UTF-8
iso = dt.date.isoformat
dates = weighted(st.sampled_from(EDGE_DATES),
                 st.dates(max_value=dt.date(1, 3, 1)).map(iso), st.dates(min_value=dt.date(9999, 10, 1)).map(iso),
                 st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(3100, 1, 1)).map(iso),
                 st.dates().map(iso), st.dates().map(lambda d: f"{d.month:02d}/{d.day:02d}/{d.year:04d}"), junk)
numbers = weighted(st.sampled_from(EDGE_NUMBERS), st.integers(-(10 ** 40), 10 ** 40).map(str),
                   st.decimals(allow_nan=True, allow_infinity=True).map(str), st.floats().map(repr),
                   st.integers(-(2 ** 64), 2 ** 64).map(lambda n: f"{n}e{n % 400}"),
                   st.integers(-(10 ** 6), 10 ** 6).map(lambda n: f"1e{n}"))
offsets = st.integers(-1439, 1439).map(lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}")
moments = st.one_of(
    st.tuples(st.datetimes(), offsets).map(lambda t: t[0].isoformat() + t[1]),
    st.datetimes().map(dt.datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59.999999-23:59",
                     "0001-01-01T00:00:00+23:59", "2025-01-01T00:00:00+00:00"]))
json_values = st.one_of(st.none(), st.booleans(), st.floats(), moments, numbers, junk,
                        st.integers(-(2 ** 70), 2 ** 70), st.just([1, [2]]), st.just({"a": 1}))
sort_params = st.sampled_from([*SORT_FIELDS, *("-" + s for s in SORT_FIELDS), "--amount", "id", "-raw", ""])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tampered(token: str, index: int, value) -> str:
    items = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    items[index] = value
    return _b64(json.dumps(items).encode())  # NaN and Infinity written as such, as a tamperer would


def invoice_cursors(real: list[str]):
    """Real page cursors, and those tampered with: a field replaced, cut short, spliced, made up."""
    replaced = st.tuples(st.sampled_from(real), st.sampled_from([1, 2, 2, 2, 3, 3]), json_values).map(
        lambda t: _tampered(*t))
    made = st.tuples(st.one_of(sort_params, json_values), st.sampled_from(["v", "n", "x", 1]), json_values,
                     json_values).map(lambda t: _b64(json.dumps(list(t)).encode()))
    truncated = st.sampled_from(real).flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[:i]))
    spliced = st.tuples(st.sampled_from(real), st.integers(0, 80), junk).map(lambda t: t[0][:t[1]] + t[2])
    return weighted(replaced, st.sampled_from(real), made, truncated, spliced, raw_bytes.map(_b64), junk,
                    st.lists(json_values, max_size=6).map(lambda v: _b64(json.dumps(v).encode())))


def paged(cursors: dict[str, list[str]]):
    """A sort order and a (tampered) cursor of that order, as a page link carries them."""
    return st.sampled_from(sorted(cursors)).flatmap(lambda sort: st.tuples(
        st.just(sort), st.sampled_from(["after", "before"]), invoice_cursors(cursors[sort]))).map(
        lambda t: [("sort", t[0]), (t[1], t[2])])


#: `<microseconds since 1970>.<id>`: each half in range, out of range or no number at all.
sync_cursors = weighted(
    st.tuples(st.integers(-62135596800000000, 253402300799999999).map(str) | numbers,
              st.integers(-(2 ** 70), 2 ** 70).map(str) | numbers).map(lambda t: f"{t[0]}.{t[1]}"),
    st.sampled_from(["253402300800000000.1", "-62135596800000001.1", "1.2.3", ".", "1.", ".1"]),
    raw_bytes.map(_b64), junk)


def either(valid, *strategies):
    """Mostly plausible values, often junk."""
    return st.one_of(st.sampled_from(list(valid)), junk, *strategies)


@st.composite
def queries(draw, spec: dict):
    """A query string: some of `spec`'s parameters (and an unknown one), each 1-3 times."""
    names = draw(st.lists(st.sampled_from(sorted(spec)), unique=True, max_size=min(len(spec), 6)))
    items = []
    for name in names:
        if name.startswith("*"):  # parameters that only make sense together: a list of (name, value)
            items += draw(spec[name])
            continue
        items += [(name, value) for value in draw(st.lists(spec[name], min_size=1, max_size=3))]
    parts = []
    for name, value in items:
        encoded = quote_from_bytes(value) if isinstance(value, bytes) else quote(str(value), safe="")
        parts.append(f"{quote(name, safe='')}={encoded}")
    if draw(st.booleans()):
        parts.append(f"{quote(draw(junk), safe='')}={quote_from_bytes(draw(raw_bytes))}")
    return "&".join(parts)


def invoice_spec(world) -> dict:
    merchants = [str(pk) for pk in world["merchants"]] + ["0", "-1", str(2 ** 63)]
    credentials = [str(pk) for pk in world["credentials"]] + ["0", str(2 ** 64)]
    all_cursors = [token for tokens in world["cursors"].values() for token in tokens]
    buckets = st.one_of(st.sampled_from(["current", "all", "1-30", "31-60", "91-", "36501-", "1-36500", "99999-",
                                         "0-", "5-1", "-", "1--2"]),
                        st.tuples(st.integers(0, 10 ** 6), st.none() | st.integers(0, 10 ** 6)).map(
                            lambda t: f"{t[0]}-{'' if t[1] is None else t[1]}"))
    spec = {
        "q": either(["INV", "Cust", "a", "%", "_", "\\"], raw_bytes), "customer": either(["Cust 1 & <Søn>"]),
        "merchant": either(merchants, numbers), "credential": either(credentials, numbers),
        "provider": either(["faspay", "xendit", "espay", "paypal"]),
        "status": either([s.value for s in InvoiceStatus] + ["OPEN", "overdue"]),
        "overdue": either(["1", "0", "true", "false", "on", ""]), "currency": either(["IDR", "usd", "XXX", "RUPIAH"]),
        "outstanding_min": numbers, "outstanding_max": numbers,
        "as_of": dates, "basis": either(["due", "issued", "paid"]), "bucket": buckets,
        "row": either(["open", "receivable", "all", "credit", "expired", "paid", "draft"]),
        "tz": either(["Asia/Jakarta", "Pacific/Kiritimati", "Etc/GMT+12", "UTC", "right/UTC", "posixrules",
                      "Factory", "America", "../../etc/passwd", "/etc/passwd", "zone.tab", "UTC/", "Asia/Jakarta\x00"]),
        "sort": st.one_of(sort_params, junk), "size": either(["25", "50", "100", "250"], numbers),
        "after": invoice_cursors(all_cursors), "before": invoice_cursors(all_cursors), "*paged": paged(world["cursors"]),
        "last": either(["1", "true", "on", "0"]),
    }
    for name in ("due", "issued", "paid"):
        spec[f"{name}_from"] = dates
        spec[f"{name}_to"] = dates
    return spec


def _check(client, url: str):
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code < 500, (url, response.status_code, body[:500])
    if response.status_code >= 400:
        assert response.status_code in (400, 404), url
    return response


# -- the pages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["", "_export=csv", "_export=xlsx", "_totals=1"])
def test_invoice_list(signed_in, world, mode):
    @settings(FUZZ, max_examples={"": 80, "_totals=1": 30}.get(mode, 30))
    @given(query=queries(invoice_spec(world)))
    def run(query):
        _check(signed_in, "/invoices/?" + "&".join(p for p in (query, mode) if p))

    run()


@pytest.mark.parametrize("mode", ["", "_export=csv", "_export=xlsx"])
def test_aging(signed_in, world, mode):
    spec = invoice_spec(world)
    for name in ("after", "before", "last", "size", "sort", "*paged"):
        spec.pop(name)
    spec.update({
        "buckets": st.one_of(st.sampled_from(["30,60,90", "1,36500", "36501", "0", "60,30", "1,2,3,4,5,6,7,8,9", ",",
                                              "1,,2", "1e3", "²", "30, 60"]),
                             st.lists(numbers, max_size=4).map(",".join),
                             st.lists(st.integers(-10, 10 ** 6), max_size=9).map(lambda v: ",".join(map(str, v)))),
        "group": either(["", "merchant", "provider", "customer", "currency"]),
        "rows": either(["receivable", "all", "open", "credit", "paid"]),
        "top": either(["1", "50", "500", "501", "0"], numbers),
        "_export": either(["csv", "xlsx", "pdf"]),
    })

    @settings(FUZZ, max_examples=50 if not mode else 20)
    @given(query=queries(spec))
    def run(query):
        _check(signed_in, "/aging/?" + "&".join(p for p in (query, mode) if p))

    run()


def test_overview(signed_in, world):
    @settings(FUZZ, max_examples=10)
    @given(query=queries({"as_of": dates, "currency": junk, "page": numbers, "tz": junk}))
    def run(query):
        _check(signed_in, "/?" + query)

    run()


@pytest.mark.parametrize("path", ["/syncs/", "/syncs/status.json"])
def test_syncs(signed_in, world, path):
    credentials = [str(pk) for pk in world["credentials"]]
    spec = {"after": sync_cursors, "credential": either(credentials, numbers),
            "status": either(["succeeded", "failed", "running", "skipped", "bogus"])}

    @settings(FUZZ, max_examples=40 if path == "/syncs/" else 15)
    @given(query=queries(spec))
    def run(query):
        _check(signed_in, f"{path}?{query}")

    run()


def test_espay_batches(signed_in, world):
    @settings(FUZZ, max_examples=20)
    @given(query=queries({"page": either(["1", "2", "last"], numbers), "show": junk}))
    def run(query):
        _check(signed_in, "/espay/batches/?" + query)

    run()


def test_espay_batch_detail(signed_in, world):
    spec = {"page": either(["1", "2", "last", "0"], numbers),
            "show": either(["", "problems", "sent", "waiting", "all"]), "_export": junk}

    @settings(FUZZ, max_examples=40)
    @given(batch=st.sampled_from(world["batches"]), query=queries(spec))
    def run(batch, query):
        _check(signed_in, f"/espay/batches/{batch}/?{query}")

    run()


def test_worklist(signed_in, world):
    merchants = [str(pk) for pk in world["merchants"]]
    spec = {"collector": either(["me", "all", "none", "1", "2"], numbers),
            "merchant": either(merchants, numbers), "currency": either(["IDR", "USD", "idr", "XXX"]),
            "page": either(["1", "2", "20", "21"], numbers)}

    @settings(FUZZ, max_examples=30)
    @given(query=queries(spec))
    def run(query):
        _check(signed_in, "/worklist/?" + query)

    run()


def test_reminders_and_saving_a_view(signed_in, world):
    @settings(FUZZ, max_examples=20)
    @given(preview=either(["1", "2"], numbers), url=either(["/invoices/?status=open", "/aging/", "//x", "/admin/"],
                                                             raw_bytes))
    def run(preview, url):
        _check(signed_in, "/reminders/?" + urlencode({"preview": preview}))
        _check(signed_in, "/views/?" + urlencode({"url": url}))

    run()


# -- and the same on SQLite ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_fuzz_passes_on_sqlite_too(tmp_path):
    """This module once more on a throwaway SQLite file, in a subprocess (settings are read once)."""
    if connection.vendor == "sqlite":
        pytest.skip("this run is on SQLite already")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST_")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'arbook.sqlite3'}", ARBOOK_VAR_DIR=str(tmp_path / "var"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).relative_to(ROOT)), "-q", "-x", "-p", "no:cacheprovider",
         "-k", "not sqlite_too"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
