"""The syncs page's cursor and filters at the edges: never a 500 (issue 14)."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from django.utils import timezone

from arbook.selectors import syncs as sel
from arbook.selectors.paginator import Cursor
from tests.factories import SyncRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(credential):
    now = timezone.now()
    return [SyncRunFactory(credential=credential, started_at=now - dt.timedelta(minutes=i)) for i in range(30)]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "garbage", "nan.1", "inf.1", "-inf.1", "1.nan", "1e5.1", "1.1e5", f"{10 ** 30}.1", f"-{10 ** 30}.1",
    f"1700000000000000.{2 ** 63}", f"1700000000000000.{10 ** 30}", "1700000000000000.-1", "1700000000000000.0",
    "9" * 5000 + ".1", "253402300800000000.1", "-62135596800000001.1", "1700000000000000.1.2", "٣.1", " 1.1",
    "1700000000000000.1\x00", b64('["-started_at","v",NaN,1]'), b64('[1e999,1]'),
])
def test_a_tampered_cursor_shows_the_newest_runs_with_a_message(signed_in, runs, cursor):
    page = signed_in.get("/syncs/", {"after": cursor})
    assert page.status_code == 200
    assert "page link is malformed" in page.content.decode()
    assert [r.pk for r in page.context["page"].rows] == [r.pk for r in runs[:25]]


def test_the_cursor_round_trips_to_the_microsecond(credential):
    moment = dt.datetime(2025, 6, 30, 23, 59, 59, 999_999, tzinfo=dt.timezone.utc)
    run = SyncRunFactory(credential=credential, started_at=moment)
    cursor = sel.decode_cursor(sel.encode_cursor(Cursor.of(run, sel.RUN_ORDER)))
    assert (cursor.value, cursor.pk) == (moment, run.pk)
    oldest = SyncRunFactory(credential=credential, started_at=dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc))
    assert sel.decode_cursor(sel.encode_cursor(Cursor.of(oldest, sel.RUN_ORDER))).value == oldest.started_at


@pytest.mark.parametrize("query", ["credential=1e999", "credential=NaN", f"credential={2 ** 70}", "credential=-1",
                                   "status=%00", "credential=1&credential=2"])
def test_bad_filters_say_so(signed_in, runs, query):
    page = signed_in.get("/syncs/?" + query)
    assert page.status_code == 200
