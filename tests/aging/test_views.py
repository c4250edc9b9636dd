"""The aging page: numbers, links that land on lists summing to the cell, scoping, bad input, exports."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from html import unescape

import pytest
from django.utils import timezone

from tests.aging.population import TODAY_DUE, build

pytestmark = pytest.mark.django_db


@pytest.fixture
def pop(user):
    return build(user)


def links(page) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="(/invoices/\?[^"]+)"', page.content.decode())]


def test_page_renders_tables_per_currency(signed_in, pop):
    page = signed_in.get("/aging/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-currency="IDR"' in body and 'data-currency="USD"' in body
    assert "Rp 1.100" in body  # open, not yet due
    assert "USD 10.50" in body
    assert "Beta Secret" not in body and "9.999" not in body  # merchant B never shows
    assert "<svg" in body


@pytest.mark.parametrize("query", ["", "?basis=issued", "?as_of={past}", "?as_of={past}&basis=issued",
                                   "?group=customer", "?group=provider&as_of={past}", "?group=merchant&rows=all",
                                   "?buckets=7,14&provider=faspay"])
def test_every_cell_link_lands_on_a_list_whose_total_equals_the_cell(signed_in, pop, query):
    past = (timezone.localdate() - dt.timedelta(days=5)).isoformat()
    page = signed_in.get("/aging/" + query.format(past=past))
    report = page.context["report"]
    checked = 0
    for table in report.tables:
        for line in table.lines:
            for cell in [*line.cells, line.total]:
                if not cell.url:
                    assert line.kind == "others" or cell.count == 0
                    continue
                listing = signed_in.get(cell.url)
                assert listing.status_code == 200, cell.url
                assert not listing.context["notices"], (cell.url, listing.context["notices"])
                # the list loads its totals from the same URL with _totals=1
                totals = signed_in.get(cell.url + "&_totals=1")
                (total,) = totals.context["totals"]
                assert total.currency == table.currency
                assert (total.outstanding, total.count) == (cell.amount, cell.count), cell.url
                checked += 1
    assert checked >= 8
    assert len(links(page)) >= checked  # the page shows them as links


def test_bad_as_of_and_buckets_render_a_message(signed_in, pop):
    page = signed_in.get("/aging/?as_of=2024-02-31&buckets=60,30")
    assert page.status_code == 200
    body = page.content.decode()
    assert "as-of date must be a date" in body
    assert "increasing" in body
    assert "Rp 1.100" in body  # the defaults were used


def test_future_as_of_is_clamped(signed_in, pop):
    page = signed_in.get("/aging/?as_of=2999-01-01")
    assert page.status_code == 200 and b"in the future" in page.content


def test_csv_export_has_the_numbers_and_only_this_merchant(signed_in, pop):
    response = signed_in.get("/aging/?_export=csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["Currency", "Row", "Not yet due"]
    open_idr = next(r for r in rows if r[0] == "IDR" and r[1] == "Open")
    assert Decimal(open_idr[2]) == TODAY_DUE[("open", "current")]
    assert "9999" not in text


def test_xlsx_export(signed_in, pop):
    from openpyxl import load_workbook

    response = signed_in.get("/aging/?_export=xlsx&group=customer")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    values = [[c.value for c in row] for row in book.active.iter_rows()]
    assert values[0][1] == "Group"
    assert any(r[1] == "Customer Main" for r in values)


def test_query_count_is_fixed(signed_in, pop, django_assert_max_num_queries):
    from django.db import connection

    signed_in.get("/aging/")  # once per connection: the zones the aging rollup keeps (`_zone_facts`)
    # session + user, merchants, credentials, the one aggregate query for every table, the holds
    # (what is on hold: none here, so no second report), the navigation's saved views
    # (+ on PostgreSQL: the savepoint pair and the SET LOCAL of `reporting_query`)
    with django_assert_max_num_queries(7 + (3 if connection.vendor == "postgresql" else 0)):
        signed_in.get("/aging/")
