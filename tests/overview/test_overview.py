"""The overview: figures per currency on a crafted population, freshness marks, scoping."""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone

from arbook.models import GatewayCredential
from arbook.selectors.overview import overview_context
from tests.aging.population import build
from tests.factories import CredentialFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pop(user):
    p = build(user)
    SyncRunFactory(credential=p["fas"])
    return p


def test_figures_per_currency(pop, user):
    ctx = overview_context(user=user)
    idr, usd = ctx["figures"]
    assert (idr.currency, usd.currency) == ("IDR", "USD")
    # receivable, credits excluded: I1 100, I2 200, I3 300, I4 50, I5 70, I12 1000, I13 150, I15 60
    assert idr.outstanding == Decimal("1930") and idr.outstanding_count == 8
    assert idr.overdue == Decimal("610")  # I2, I3, I4, I15: due before today
    assert idr.due_soon == Decimal("100")  # I1, due in 5 days
    assert idr.collected == Decimal("400") and idr.collected_count == 1  # I9 paid 2 days ago
    sales = Decimal("400") + Decimal("1500000") + Decimal("700")  # I9, I12, I16 issued in the last 90 days
    assert idr.sales == sales
    assert idr.dso == (Decimal("1930") / sales * 90).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert usd.outstanding == Decimal("10.50") and usd.overdue == Decimal("10.50")


def test_collected_counts_unknown_paid_amounts_apart(pop, user):
    from tests.factories import InvoiceFactory

    InvoiceFactory(credential=pop["fas"], status="paid", amount=None, paid_amount=None, outstanding=Decimal("0"),
                   paid_at=timezone.now() - dt.timedelta(days=1))
    idr = overview_context(user=user)["figures"][0]
    assert idr.collected == Decimal("400")
    assert idr.collected_count == 2 and idr.collected_unknown == 1


def test_page_shows_figures_chart_and_never_other_merchants(signed_in, pop):
    page = signed_in.get("/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Rp 1.930" in body and "Rp 610" in body and "Rp 400" in body and "USD 10.50" in body
    assert "<svg" in body
    assert "9.999" not in body and "Beta Secret" not in body
    assert "outstanding ÷ credit sales of the last 90 days" in body


def test_freshness_marks(signed_in, user, merchant):
    now = timezone.now()
    fresh = CredentialFactory(merchant=merchant, label="fresh", last_success_at=now - dt.timedelta(minutes=5))
    stale = CredentialFactory(merchant=merchant, label="stale", last_success_at=now - dt.timedelta(minutes=31))
    never = CredentialFactory(merchant=merchant, label="never")
    broken = CredentialFactory(merchant=merchant, label="broken")
    # set after creation: assigning secrets clears the flag (a changed credential deserves a retry)
    GatewayCredential.objects.filter(pk=broken.pk).update(
        needs_attention=True, last_error="Faspay refused the user name or password.")
    SyncRunFactory(credential=fresh)
    body = signed_in.get("/").content.decode()
    assert f'data-credential="{fresh.pk}" data-state="ok"' in body
    assert f'data-credential="{stale.pk}" data-state="stale"' in body
    assert f'data-credential="{never.pk}" data-state="never"' in body
    assert f'data-credential="{broken.pk}" data-state="needs_attention"' in body
    assert ">stale<" in body and "never synced" in body and "needs attention" in body
    assert "Faspay refused the user name or password." in body
    assert "hunter2" not in body  # the factory's secret never reaches a page


def test_query_count_is_fixed(signed_in, pop, django_assert_max_num_queries):
    for i in range(5):
        CredentialFactory(merchant=pop["a"], label=f"extra{i}")
    from django.db import connection

    signed_in.get("/")  # once per connection: the zones the aging rollup keeps (`_zone_facts`)
    # session, user, merchants, credentials, runs aggregate, figures, aging chart, notifications to
    # review, the navigation's saved views
    # (+ on PostgreSQL: the savepoint pair and the SET LOCAL of `reporting_query`, twice)
    with django_assert_max_num_queries(9 + (6 if connection.vendor == "postgresql" else 0)):
        assert signed_in.get("/").status_code == 200


def test_freshness_badges_come_from_the_status_registry(signed_in, merchant):
    """Each state of the data freshness table shows its registry badge (label and colour)."""
    import re

    from arbook.status import FRESHNESS, CredentialFreshness

    now = timezone.now()
    creds = {
        CredentialFreshness.OK: CredentialFactory(merchant=merchant, last_success_at=now - dt.timedelta(minutes=5)),
        CredentialFreshness.STALE: CredentialFactory(merchant=merchant, last_success_at=now - dt.timedelta(hours=2)),
        CredentialFreshness.NEVER: CredentialFactory(merchant=merchant),
        CredentialFreshness.NEEDS_ATTENTION: CredentialFactory(merchant=merchant),
        CredentialFreshness.INACTIVE: CredentialFactory(merchant=merchant, is_active=False),
        CredentialFreshness.NO_LIST_API: CredentialFactory(merchant=merchant, provider="espay", secrets={}),
    }
    GatewayCredential.objects.filter(pk=creds[CredentialFreshness.NEEDS_ATTENTION].pk).update(needs_attention=True)
    SyncRunFactory(credential=creds[CredentialFreshness.OK])
    body = signed_in.get("/").content.decode()
    assert set(creds) == set(CredentialFreshness)
    for state, cred in creds.items():
        row = re.search(rf'<tr data-credential="{cred.pk}" data-state="{state.value}">(.*?)</tr>', body, re.S)
        assert row, state
        assert f'<span class="badge badge--{FRESHNESS.colour(state)}">{FRESHNESS.label(state)}</span>' in row.group(1)
    labels = {FRESHNESS.label(s): FRESHNESS.colour(s) for s in CredentialFreshness}
    assert labels == {"fresh": "green", "stale": "amber", "never synced": "grey", "needs attention": "red",
                      "inactive": "grey", "no list API": "grey"}
