"""The aging rollup (PostgreSQL): always equal to a recount, and the report it answers equal to the
report scanned from the invoices, after any sequence of writes.

Hypothesis writes invoices the ways the application does (one by one, the sync's bulk upsert,
QuerySet.update, events appended, deletes, a merchant's time zone changed; the rollups' delta rows
folded in between) with days, hours and
amounts chosen to sit on the edges the rollup keys on (local midnight in two zones, null dates and
amounts, credits). After each sequence the rollup must equal a recount and `invoice_aging` read
from it must equal `invoice_aging` scanned, for today and past dates, ungrouped and by merchant
and gateway, per zone. On SQLite there is no rollup: the module does not apply there, and the
suite's own `_aging_rollup_exact` fixture checks every other test on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbook.models import AgingRollup, Invoice, InvoiceEvent
from arbook.selectors.aging import invoice_aging
from arbook.selectors.aging_rollup import RollupScope, rollup_rows
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, UserFactory
from arbook.services.aging_rollup import rollups_compact
from tests.rollup_check import rollup_mismatch

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the rollup is kept by PostgreSQL triggers"),
]

#: The suite's clock: 02:30 in Jakarta, still the day before in Copenhagen.
NOW = dt.datetime(2026, 6, 14, 19, 30, tzinfo=dt.UTC)
SERVER = "Asia/Jakarta"
ZONES = ("Asia/Jakarta", "Europe/Copenhagen", "Asia/Makassar")
STATES = ("open", "partially_paid", "processing", "failed", "charged_back", "expired", "unknown", "paid",
          "draft", "cancelled")


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def world(db):
    """Two merchants (one in the server's zone, one not), three gateway accounts."""
    jak = MerchantFactory(timezone="Asia/Jakarta")
    cph = MerchantFactory(timezone="Europe/Copenhagen")
    creds = [CredentialFactory(merchant=jak, provider="faspay"), CredentialFactory(merchant=jak, provider="xendit"),
             CredentialFactory(merchant=cph, provider="espay")]
    return {"merchants": [jak, cph], "credentials": creds}


def moment(days: int, hours: int) -> dt.datetime:
    """`days` from the clock's day at `hours` UTC: hours 17-23 fall on the next day in Jakarta."""
    return dt.datetime.combine(NOW.date() + dt.timedelta(days=days), dt.time(hours), tzinfo=dt.UTC)


#: Days around the aging buckets and the overview's 30- and 90-day windows; hours around midnight
#: in UTC, Jakarta (17:00 UTC) and Copenhagen (22:00 UTC), and the clock's own 19:30.
day_offsets = st.one_of(st.integers(-400, 60), st.sampled_from([-91, -90, -89, -31, -30, -29, -1, 0, 1]))
maybe_moment = st.one_of(st.none(), st.builds(moment, day_offsets, st.sampled_from([0, 16, 17, 19, 20, 22, 23])))
money = st.one_of(st.none(), st.sampled_from([Decimal("0"), Decimal("-50.25"), Decimal("1000.10")]),
                  st.decimals(min_value=-500, max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
fields = st.fixed_dictionaries({
    "status": st.sampled_from(STATES), "outstanding": money, "due_at": maybe_moment, "issued_at": maybe_moment,
    "currency": st.sampled_from(["IDR", "USD"]),
})
operations = st.lists(st.one_of(
    st.tuples(st.just("create"), st.integers(0, 2), fields, st.builds(moment, st.integers(-400, 0),
                                                                       st.sampled_from([0, 17]))),
    st.tuples(st.just("upsert"), st.integers(0, 2), st.lists(st.tuples(st.integers(0, 6), fields), max_size=6)),
    st.tuples(st.just("update"), st.integers(0, 30), fields),
    st.tuples(st.just("paid"), st.integers(0, 30), maybe_moment, money),
    st.tuples(st.just("amounts"), st.integers(0, 30), money, money, maybe_moment),
    st.tuples(st.just("event"), st.integers(0, 30), st.sampled_from(STATES),
              st.builds(moment, st.integers(-120, 0), st.sampled_from([0, 16, 17, 23]))),
    st.tuples(st.just("shift"), st.sampled_from(["IDR", "USD"]), st.integers(-3, 3)),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("retz"), st.integers(0, 1), st.sampled_from(ZONES)),
    st.tuples(st.just("compact")),
), min_size=1, max_size=14)


def _pick(n: int) -> Invoice | None:
    ids = list(Invoice.objects.order_by("id").values_list("id", flat=True))
    return Invoice.objects.get(pk=ids[n % len(ids)]) if ids else None


def _apply(op: tuple, world: dict) -> None:
    kind, *args = op
    creds = world["credentials"]
    if kind == "create":
        cred, values, seen = creds[args[0]], args[1], args[2]
        InvoiceFactory(credential=cred, first_seen_at=seen, **values)
    elif kind == "upsert":
        # The sync's merge: INSERT … ON CONFLICT (credential, external_id) DO UPDATE, in one statement.
        cred = creds[args[0]]
        rows = {f"UP-{key}": values for key, values in args[1]}
        template = InvoiceFactory.build(credential=cred)
        Invoice.objects.bulk_create(
            [Invoice(**{**{f.attname: getattr(template, f.attname) for f in Invoice._meta.concrete_fields
                           if not f.generated and f.attname != "id"}, "external_id": ext, "number": ext, **values})
             for ext, values in sorted(rows.items())],
            update_conflicts=True, unique_fields=["credential", "external_id"],
            update_fields=["status", "outstanding", "due_at", "issued_at", "currency"])
    elif kind == "update":
        invoice = _pick(args[0])
        if invoice:
            Invoice.objects.filter(pk=invoice.pk).update(**args[1])
    elif kind == "paid":
        invoice = _pick(args[0])
        if invoice:
            Invoice.objects.filter(pk=invoice.pk).update(status="paid", paid_at=args[1], outstanding=args[2])
    elif kind == "amounts":
        # What the overview's windows sum: amount, paid amount, and when it was issued.
        invoice = _pick(args[0])
        if invoice:
            Invoice.objects.filter(pk=invoice.pk).update(amount=args[1], paid_amount=args[2], issued_at=args[3])
    elif kind == "event":
        invoice = _pick(args[0])
        if invoice:
            InvoiceEvent.objects.append([InvoiceEvent(invoice=invoice, seen_at=args[2], source="sync",
                                                      status_before=args[1], status_after=invoice.status,
                                                      outstanding_before=invoice.outstanding,
                                                      outstanding_after=invoice.outstanding)])
    elif kind == "shift":
        # Many rows in one UPDATE statement (the write path's batch updates).
        Invoice.objects.filter(currency=args[0], due_at__isnull=False).update(
            due_at=F("due_at") + dt.timedelta(days=args[1]))
    elif kind == "delete":
        invoice = _pick(args[0])
        if invoice:
            invoice.delete()
    elif kind == "compact":
        rollups_compact()
    elif kind == "retz":
        merchant = world["merchants"][args[0]]
        merchant.timezone = args[1]
        merchant.save(update_fields=["timezone"])


def _dump(report) -> list:
    return [(t.currency, [(line.key, line.label, [(c.amount or 0, c.count) for c in [*line.cells, line.total]])
                          for line in t.lines]) for t in report.tables]


def _compare_reports(world: dict) -> int:
    """Every report the rollups can answer, from them and scanned; returns how many they answered."""
    from arbook.selectors.overview import currency_figures

    answered = 0
    merchants = [(m.pk, m.timezone) for m in world["merchants"]]
    for chosen in (merchants, merchants[1:]):
        queryset = Invoice.objects.filter(merchant_id__in=[pk for pk, _tz in chosen])
        assert currency_figures(queryset=queryset, now=NOW, rollup=RollupScope(merchants=tuple(chosen))) == (
            currency_figures(queryset=queryset, now=NOW))
    for chosen in (merchants, merchants[:1], merchants[1:]):
        queryset = Invoice.objects.filter(merchant_id__in=[pk for pk, _tz in chosen])
        for zone_name in {SERVER, chosen[0][1]}:
            zone = zoneinfo.ZoneInfo(zone_name)
            scope = RollupScope(merchants=tuple(chosen))
            if rollup_rows(scope, zone=zone) is None:
                continue
            answered += 1
            today = dt.datetime.now(zone).date()
            for as_of in (today, today - dt.timedelta(days=1), today - dt.timedelta(days=45)):
                for group, rows, basis in (("", "all", "due"), ("", "receivable", "issued"),
                                           ("merchant", "receivable", "due"), ("provider", "all", "due")):
                    options = dict(queryset=queryset, as_of=as_of, tz=zone, group=group, rows=rows, basis=basis)
                    assert _dump(invoice_aging(**options, rollup=scope)) == _dump(invoice_aging(**options)), (
                        zone_name, len(chosen), as_of, group, rows, basis)
    return answered


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=operations)
def test_the_rollup_equals_a_recount_and_answers_as_the_scan_does(world, ops):
    with transaction.atomic():
        for op in ops:
            _apply(op, world)
        for merchant in world["merchants"]:
            merchant.refresh_from_db()
        assert rollup_mismatch() == {}
        assert _compare_reports(world) >= 2
        transaction.set_rollback(True)


def test_a_report_in_a_zone_the_rollup_does_not_keep_is_scanned(world):
    """Copenhagen's invoices have no Makassar days: that report reads the invoices."""
    scope = RollupScope(merchants=((world["merchants"][1].pk, "Europe/Copenhagen"),))
    assert rollup_rows(scope, zone=zoneinfo.ZoneInfo("Asia/Makassar")) is None
    assert rollup_rows(scope, zone=zoneinfo.ZoneInfo("Europe/Copenhagen")) is not None
    assert rollup_rows(scope, zone=zoneinfo.ZoneInfo(SERVER)) is not None


def test_a_time_zone_change_recounts_the_merchants_days(world):
    cph = world["merchants"][1]
    InvoiceFactory(credential=world["credentials"][2], due_at=moment(-3, 23), status="open")
    assert set(AgingRollup.objects.filter(merchant_id=cph.pk).values_list("zone", flat=True)) == {
        "Europe/Copenhagen", SERVER}
    cph.timezone = "Asia/Makassar"
    cph.save(update_fields=["timezone"])
    assert set(AgingRollup.objects.filter(merchant_id=cph.pk).values_list("zone", flat=True)) == {
        "Asia/Makassar", SERVER}
    assert rollup_mismatch() == {}


def test_the_aging_page_reads_the_rollup_unless_a_filter_needs_the_invoices(client, world):
    """Merchant, account, gateway and currency are the rollup's own keys; a search, a status or a
    hold filter (or a rejected value) are not: those pages scan, and both show the same report."""
    from django.test.utils import CaptureQueriesContext

    user = UserFactory()
    for m in world["merchants"]:
        m.members.add(user)
    client.force_login(user)
    InvoiceFactory(credential=world["credentials"][0], due_at=moment(-40, 3), outstanding=Decimal("70.00"))
    InvoiceFactory(credential=world["credentials"][1], due_at=moment(2, 3), outstanding=Decimal("30.00"),
                   customer_name="Findable Person")
    InvoiceFactory(credential=world["credentials"][2], due_at=moment(-1, 23), outstanding=Decimal("5.00"))
    jak = world["merchants"][0].pk
    cases = [({}, True), ({"merchant": jak}, True), ({"provider": "xendit"}, True),
             ({"currency": "idr", "as_of": "2026-05-01"}, True), ({"credential": world["credentials"][0].pk}, True),
             ({"merchant": jak, "group": "provider"}, True),
             ({"q": "Findable"}, False), ({"status": "open"}, False), ({"held": "hide"}, False),
             ({"merchant": "999999"}, False)]
    for params, from_rollup in cases:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/aging/", params)
        assert response.status_code == 200
        read = any("arbook_agingrollup" in q["sql"] for q in captured.captured_queries)
        assert read is from_rollup, params
    # The same invoices through a filter the rollup cannot apply (every state ticked): the same report.
    every_state = [s for s, _label in Invoice._meta.get_field("status").choices]
    for params in ({"merchant": jak}, {"merchant": jak, "group": "provider", "as_of": "2026-06-01"}, {}):
        rolled = client.get("/aging/", params).context["report"]
        scanned = client.get("/aging/", {**params, "status": every_state}).context["report"]
        assert _dump(rolled) == _dump(scanned) and rolled.tables, params


def test_the_overview_figures_from_the_rollup_equal_the_scan(world):
    from arbook.selectors.overview import currency_figures

    for i, cred in enumerate(world["credentials"]):
        InvoiceFactory(credential=cred, due_at=moment(-5 + 4 * i, 17), outstanding=Decimal("10.50") * (i + 1))
        InvoiceFactory(credential=cred, due_at=moment(3, 16), outstanding=Decimal("-4.00"), status="paid")
        InvoiceFactory(credential=cred, due_at=None, outstanding=None, status="processing")
    merchants = tuple((m.pk, m.timezone) for m in world["merchants"])
    scanned = currency_figures(queryset=Invoice.objects.all(), now=NOW)
    rolled = currency_figures(queryset=Invoice.objects.all(), now=NOW, rollup=RollupScope(merchants=merchants))
    assert scanned == rolled
    assert scanned[0].outstanding == Decimal("63.00") and scanned[0].overdue_count >= 1


def test_the_rebuild_command_checks_and_recounts(world):
    from django.core.management import CommandError, call_command

    InvoiceFactory(credential=world["credentials"][0], due_at=moment(-9, 3))
    call_command("rebuild_aging_rollup", "--check")
    AgingRollup.objects.filter(merchant_id=world["merchants"][0].pk).update(amount=F("amount") + 1)
    with pytest.raises(CommandError, match="differs from a recount at 1 keys"):
        call_command("rebuild_aging_rollup", "--check")
    assert rollup_mismatch() != {}  # the check changed nothing
    call_command("rebuild_aging_rollup", "--merchant", str(world["merchants"][0].pk))
    assert rollup_mismatch() == {}


def test_compacting_folds_every_key_into_one_row_and_changes_no_sum(world):
    from django.db.models import Count

    from arbook.models import DayRollup

    for i in range(3):
        invoice = InvoiceFactory(credential=world["credentials"][0], due_at=moment(-9, 3), issued_at=moment(-20, 3))
        Invoice.objects.filter(pk=invoice.pk).update(outstanding=Decimal("10.00") * i)
    Invoice.objects.filter(pk=invoice.pk).update(status="paid", paid_at=moment(-1, 3), outstanding=0)
    assert AgingRollup.objects.filter(delta=True).count() > 1 and DayRollup.objects.filter(delta=True).exists()
    assert rollups_compact() > 0
    assert not AgingRollup.objects.filter(delta=True).exists() and not DayRollup.objects.filter(delta=True).exists()
    keys = [f.name for f in AgingRollup._meta.fields if f.name not in ("id", "amount", "count", "delta")]
    assert not AgingRollup.objects.values(*keys).annotate(n=Count("id")).filter(n__gt=1).exists()
    assert not AgingRollup.objects.filter(count=0, amount=0).exists()
    assert rollup_mismatch() == {}
    assert rollups_compact() == 0  # nothing left to fold


def test_the_compact_task_is_scheduled_and_folds(world):
    from django.conf import settings

    from arbook.tasks.rollups import COMPACT_TASK, rollups_compact_task

    assert any(e["task"] == COMPACT_TASK for e in settings.CELERY_BEAT_SCHEDULE.values())
    InvoiceFactory(credential=world["credentials"][1], due_at=moment(-2, 3))
    assert rollups_compact_task.apply().get() > 0
    assert not AgingRollup.objects.filter(delta=True).exists()
    assert rollup_mismatch() == {}


@pytest.mark.django_db(transaction=True)
def test_two_writers_on_the_same_keys_never_wait_for_each_other():
    """Two transactions move invoices of the same rollup keys, interleaved statement by statement:
    the triggers only append rows, so neither waits for the other's (a row lock held until its
    commit, in the order its statements ran, is how two syncs would deadlock), and both land."""
    import threading

    from django.db import connections

    merchant = MerchantFactory(timezone="Asia/Jakarta")
    cred = CredentialFactory(merchant=merchant, provider="xendit")
    ids = [InvoiceFactory(credential=cred, status="open", due_at=moment(-5, 3), issued_at=moment(-9, 3),
                          outstanding=Decimal("10.00")).pk for _ in range(4)]
    barrier, errors = threading.Barrier(2, timeout=20), []

    def writer(mine: list[int], status: str) -> None:
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")
                for pk in mine:
                    Invoice.objects.filter(pk=pk).update(status=status, outstanding=Decimal("7.00"))
                    barrier.wait()
                barrier.wait()
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's traceback gone
            errors.append(exc)
            barrier.abort()
        finally:
            connections["default"].close()

    threads = [threading.Thread(target=writer, args=(ids[:2], "expired")),
               threading.Thread(target=writer, args=(ids[2:], "failed"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(Invoice.objects.filter(pk__in=ids).values_list("status", flat=True)) == [
        "expired", "expired", "failed", "failed"]
    assert rollup_mismatch() == {}
    rollups_compact()
    assert rollup_mismatch() == {}
