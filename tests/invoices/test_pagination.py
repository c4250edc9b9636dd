"""Keyset pagination (no OFFSET, no COUNT per page) and a query count that ignores the page size."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from arbook.models import Invoice
from arbook.selectors.invoices import invoice_sort
from arbook.selectors.paginator import Cursor, Sort
from arbook.selectors.paginator import keyset_page as keyset_page_
from tests.factories import InvoiceFactory

from .conftest import rows

pytestmark = pytest.mark.django_db
BASE = datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def tied(credential):
    """57 invoices whose sort keys tie in blocks of 4 and are sometimes unknown (NULL)."""
    out = []
    for i in range(57):
        out.append(InvoiceFactory(
            credential=credential, number=f"N{i % 9}",  # many equal numbers
            issued_at=BASE + timedelta(days=i // 4),
            due_at=None if i % 7 == 0 else BASE + timedelta(days=i // 4),
            amount=None if i % 5 == 0 else Decimal(1000 * (i // 4)),
        ))
    return out


def _expected(invoices, sort: Sort) -> list[int]:
    """The documented order: values (ties by id) in the sort direction, then unknown values by id."""
    known = [i for i in invoices if getattr(i, sort.field) is not None]
    unknown = [i for i in invoices if getattr(i, sort.field) is None]
    known.sort(key=lambda i: (getattr(i, sort.field), i.pk), reverse=sort.descending)
    unknown.sort(key=lambda i: i.pk, reverse=sort.descending)
    return [i.pk for i in known + unknown]


SORTS = ["-issued_at", "issued_at", "due_at", "-due_at", "amount", "-amount", "number", "-number"]


@pytest.mark.parametrize("fence,ids_first", [(False, False), (True, False), (False, True)],
                         ids=["index-order", "fenced", "ids-first"])
@pytest.mark.parametrize("sort_param", SORTS)
def test_walking_forward_and_back_visits_every_row_once(tied, sort_param, fence, ids_first):
    sort = invoice_sort(sort_param)
    qs = Invoice.objects.all()
    # The same walk, sort "fenced" or not, the page's ids chosen first or not.
    keyset_page = functools.partial(keyset_page_, fence=fence, ids_first=ids_first)

    expected = _expected(tied, sort)
    seen, pages, page = [], [], keyset_page(qs, sort=sort, size=10)
    while True:
        pages.append(page)
        seen += [r.pk for r in page.rows]
        if not page.has_next:
            break
        page = keyset_page(qs, sort=sort, size=10, after=Cursor.decode(page.next_cursor, sort))
    assert seen == expected  # no duplicates, no gaps, across ties and unknown values
    assert len(pages) == 6 and page.is_last
    # Backwards from the last page with "previous" links: each page ends right before the one after it.
    back = keyset_page(qs, sort=sort, size=10, last=True)
    assert [r.pk for r in back.rows] == expected[-10:] and not back.has_next
    start = len(expected) - 10
    visited = set(r.pk for r in back.rows)
    while back.has_previous:
        back = keyset_page(qs, sort=sort, size=10, before=Cursor.decode(back.previous_cursor, sort))
        got = [r.pk for r in back.rows]
        if start >= 10:
            assert got == expected[start - 10:start]
        else:  # reaching the start shows a full first page rather than a short one
            assert got == expected[:10] and not back.has_previous
        start -= 10
        visited |= set(got)
    assert visited == set(expected)


def test_pages_through_the_view_by_next_links(signed_in, tied):
    response = signed_in.get("/invoices/", {"sort": "due_at", "size": 25})
    seen = [r.pk for r in rows(response)]
    while response.context["page"].has_next:
        response = signed_in.get("/invoices/", {"sort": "due_at", "size": 25,
                                                "after": response.context["page"].next_cursor})
        seen += [r.pk for r in rows(response)]
    assert seen == _expected(tied, invoice_sort("due_at"))
    assert b'rel="next"' not in response.content and b'rel="prev"' in response.content


def test_last_link_reaches_the_end(signed_in, tied):
    response = signed_in.get("/invoices/", {"sort": "issued_at", "size": 25, "last": "1"})
    assert [r.pk for r in rows(response)] == _expected(tied, invoice_sort("issued_at"))[-25:]
    assert response.context["page"].is_last


@pytest.fixture
def many(credential):
    now = timezone.now()
    invoices = [Invoice(merchant=credential.merchant, credential=credential, provider="faspay", external_id=f"E{i}",
                        number=f"N{i}", customer_name=f"C{i % 13}", currency="IDR" if i % 3 else "DKK",
                        amount=None if i % 4 == 0 else Decimal(i), outstanding=Decimal(i), status="open",
                        issued_at=now - timedelta(hours=i), due_at=now - timedelta(days=i % 40),
                        first_seen_at=now, last_synced_at=now) for i in range(600)]
    Invoice.objects.bulk_create(invoices)


# session + user, merchants (choices and zones), credentials (choices), the page's rows, the
# navigation's saved views; the totals come in a request of their own (`_totals=1`): session +
# user, merchants, credentials, totals.
LIST_QUERIES = 6


@pytest.mark.parametrize("size", [25, 250])
def test_query_count_does_not_depend_on_the_page_size(signed_in, many, django_assert_num_queries, size):
    with django_assert_num_queries(LIST_QUERIES):
        response = signed_in.get("/invoices/", {"size": size})
    assert len(rows(response)) == size
    after = response.context["page"].next_cursor
    with django_assert_num_queries(LIST_QUERIES):
        response = signed_in.get("/invoices/", {"size": size, "after": after, "status": ["open", "failed"]})
    assert len(rows(response)) == size
    with django_assert_num_queries(LIST_QUERIES):
        response = signed_in.get("/invoices/", {"size": size, "last": "1", "sort": "-number"})
    assert len(rows(response)) == size


@pytest.mark.parametrize("size", [25, 250])
def test_a_page_that_reaches_unknown_values_costs_one_more_query(signed_in, many, django_assert_num_queries, size):
    """Sorted by amount, the invoices without one come last: read by a second, id-ordered query."""
    with django_assert_num_queries(LIST_QUERIES + 1):
        response = signed_in.get("/invoices/", {"size": size, "sort": "amount", "customer": "C1", "currency": "DKK"})
    page = rows(response)
    assert page[-1].amount is None and page[0].amount is not None


@pytest.mark.parametrize("params", [{}, {"status": "open", "q": "C1"}])
def test_totals_cost_one_query_in_their_own_request(signed_in, many, django_assert_num_queries, params):
    page = signed_in.get("/invoices/", params)
    assert b'data-src="?' in page.content and b"_totals=1" in page.content
    with django_assert_num_queries(5):
        fragment = signed_in.get("/invoices/", {**params, "_totals": "1"})
    assert fragment.status_code == 200 and b"<html" not in fragment.content


def test_totals_count_unknown_amounts_apart(signed_in, many):
    response = signed_in.get("/invoices/", {"_totals": "1"})
    by_currency = {t.currency: t for t in response.context["totals"]}
    assert sum(t.count for t in by_currency.values()) == 600
    idr = by_currency["IDR"]
    expected_unknown = sum(1 for i in range(600) if i % 3 and i % 4 == 0)
    assert idr.amount_unknown == expected_unknown
    assert idr.amount == sum(Decimal(i) for i in range(600) if i % 3 and i % 4)
    assert f"{expected_unknown} without an amount".encode() in response.content
