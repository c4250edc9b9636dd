"""The aging report's parameters at the edges: never a 500; the page says what it did instead (issue 14)."""
from __future__ import annotations

import pytest
from django.utils import timezone

from tests.aging.population import build

pytestmark = pytest.mark.django_db

DATE_RANGE = "Enter a date between 1900-01-01 and 2999-12-31."


@pytest.fixture
def pop(user):
    return build(user)


@pytest.mark.parametrize("query", ["as_of=0001-01-01", "as_of=0001-01-01&basis=issued", "as_of=1899-12-31",
                                   "as_of=0001-01-01&group=customer", "as_of=9999-12-31",
                                   "as_of=0001-01-01&buckets=36500"])
def test_an_as_of_out_of_range_shows_today_with_a_message(signed_in, pop, query):
    page = signed_in.get("/aging/?" + query)
    assert page.status_code == 200
    assert any(n.startswith("As of: " + DATE_RANGE) for n in page.context["notes"]), page.context["notes"]
    assert page.context["report"].as_of == timezone.localdate()


def test_the_oldest_as_of_with_the_widest_buckets_works(signed_in, pop):
    page = signed_in.get("/aging/?as_of=1900-01-01&buckets=1,36500&basis=issued")
    assert page.status_code == 200 and not page.context["notes"]
    assert page.context["report"].as_of.isoformat() == "1900-01-01"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("query", ["as_of=0001-01-01", "as_of=0001-01-01&basis=issued", "buckets=1,99999",
                                   "top=0", "due_to=9999-12-31", "outstanding_min=NaN"])
def test_an_export_with_a_bad_parameter_is_a_400_with_the_page(signed_in, pop, query, fmt):
    response = signed_in.get(f"/aging/?{query}&_export={fmt}")
    assert response.status_code == 400 and response["Content-Type"].startswith("text/html")
    assert any("Nothing was exported" in n for n in response.context["notes"]), response.context["notes"]


@pytest.mark.parametrize("query", ["due_to=9999-12-31", "issued_from=0001-01-01", "paid_to=9999-12-31",
                                   "outstanding_max=Infinity"])
def test_a_list_filter_out_of_range_is_left_out(signed_in, pop, query):
    page = signed_in.get("/aging/?" + query)
    assert page.status_code == 200
    assert any("This filter was not applied." in n for n in page.context["notes"]), page.context["notes"]


@pytest.mark.parametrize("top", ["0", "501", "NaN", "1e3", "9" * 5000])
def test_groups_shown_out_of_range(signed_in, pop, top):
    page = signed_in.get(f"/aging/?group=customer&top={top}")
    assert page.status_code == 200
    assert any(n.startswith("Groups shown:") for n in page.context["notes"]), page.context["notes"]


@pytest.mark.parametrize("top", ["٣", "1_0", " 7 ", "7"])
def test_groups_shown_is_ascii_digits(signed_in, pop, top):
    page = signed_in.get("/aging/", {"group": "customer", "top": top})
    assert page.status_code == 200
    assert page.context["report"].top == (7 if top.strip() == "7" else 50)
