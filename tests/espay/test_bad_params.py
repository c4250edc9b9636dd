"""The Espay batch pages' parameters at the edges: never a 500 (issue 14)."""
from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import CredentialFactory

from .helpers import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(merchant, user):
    credential = CredentialFactory(merchant=merchant, provider="espay", label="espay")
    return make_batch(credential, user=user, lines=450)


@pytest.mark.parametrize("value", ["0", "-1", "4", "NaN", "inf", "1e3", "9" * 5000, "²", "1\x00", "last!"])
def test_a_line_page_that_does_not_exist_shows_a_page_with_a_message(signed_in, batch, value):
    page = signed_in.get(reverse("espay_batch_detail", args=[batch.pk]), {"page": value})
    assert page.status_code == 200
    assert "page" in page.context["page_note"].lower(), page.context.get("page_note")
    assert page.context["page"].number in (1, 3)


def test_the_last_page_keyword(signed_in, batch):
    page = signed_in.get(reverse("espay_batch_detail", args=[batch.pk]), {"page": "last"})
    assert page.status_code == 200 and page.context["page"].number == 3 and not page.context["page_note"]


@pytest.mark.parametrize("show", ["everything", "\x00", "problems\x00", "x" * 5000])
def test_an_unknown_line_filter_says_so(signed_in, batch, show):
    page = signed_in.get(reverse("espay_batch_detail", args=[batch.pk]), {"show": show})
    assert page.status_code == 200
    assert "Unknown line filter" in page.content.decode()
    assert len(page.context["rows"]) == 200


@pytest.mark.parametrize("value", ["0", "-1", "2", "NaN", "9" * 5000])
def test_a_batch_list_page_that_does_not_exist(signed_in, batch, value):
    page = signed_in.get(reverse("espay_batch_list"), {"page": value})
    assert page.status_code == 200
    assert page.context["page_note"]
