"""The syncs page: scoped runs, filters, keyset pages, "Sync now" (POST + CSRF, 404 for others), status JSON."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from arbook.models import GatewayCredential, SyncRun
from tests.factories import CredentialFactory, MerchantFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(user, merchant, credential):
    other = CredentialFactory(merchant=MerchantFactory(name="Beta Secret"), label="beta")
    now = timezone.now()
    mine = [SyncRunFactory(credential=credential, started_at=now - dt.timedelta(minutes=i), fetched=i,
                           status=SyncRun.Status.FAILED if i % 10 == 0 else SyncRun.Status.SUCCEEDED,
                           error="Timeout after 3 retries" if i % 10 == 0 else "")
            for i in range(30)]
    theirs = SyncRunFactory(credential=other, error="beta-only-error", status=SyncRun.Status.FAILED)
    return {"credential": credential, "other": other, "mine": mine, "theirs": theirs}


def run_ids(page):
    return [r.pk for r in page.context["page"].rows]


def test_runs_are_scoped_and_keyset_paginated(signed_in, setup):
    first = signed_in.get("/syncs/")
    assert first.status_code == 200
    assert "beta-only-error" not in first.content.decode() and "Beta Secret" not in first.content.decode()
    ids = run_ids(first)
    assert len(ids) == 25 and ids[0] == setup["mine"][0].pk
    cursor = first.context["page"].next_cursor
    second = signed_in.get(f"/syncs/?after={cursor}")
    assert run_ids(second) == [r.pk for r in setup["mine"][25:]]
    assert second.context["page"].next_cursor is None


def test_filters(signed_in, setup):
    failed = signed_in.get("/syncs/?status=failed")
    assert run_ids(failed) == [r.pk for r in setup["mine"] if r.status == "failed"]
    by_cred = signed_in.get(f"/syncs/?credential={setup['credential'].pk}")
    assert len(run_ids(by_cred)) == 25
    foreign = signed_in.get(f"/syncs/?credential={setup['other'].pk}")
    assert foreign.status_code == 200 and setup["theirs"].pk not in run_ids(foreign)
    assert "not one of the available choices" in foreign.content.decode()


def test_bad_parameters_render_a_message(signed_in, setup):
    page = signed_in.get("/syncs/?after=garbage&status=exploded")
    assert page.status_code == 200
    body = page.content.decode()
    assert "page link is malformed" in body and "This filter was not applied" in body


def test_sync_now_enqueues_for_own_credential(signed_in, setup, django_capture_on_commit_callbacks):
    cred = setup["credential"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = signed_in.post(f"/syncs/{cred.pk}/run/")
    assert response.status_code == 302 and response["Location"] == f"/syncs/?credential={cred.pk}"
    assert len(callbacks) == 1  # the task is sent after the commit
    cred.refresh_from_db()
    assert cred.sync_requested_at is not None
    page = signed_in.get(response["Location"])
    assert "queued" in page.content.decode()
    assert 'data-active="1"' in page.content.decode()


def test_sync_now_is_404_for_another_merchant_and_needs_post_and_csrf(signed_in, setup, user):
    other = setup["other"]
    assert signed_in.post(f"/syncs/{other.pk}/run/").status_code == 404
    assert GatewayCredential.objects.get(pk=other.pk).sync_requested_at is None
    assert signed_in.get(f"/syncs/{setup['credential'].pk}/run/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/syncs/{setup['credential'].pk}/run/").status_code == 403


def test_inactive_credential_says_so(signed_in, merchant):
    cred = CredentialFactory(merchant=merchant, is_active=False)
    response = signed_in.post(f"/syncs/{cred.pk}/run/", follow=True)
    assert "inactive" in response.content.decode()


def test_status_json_shows_progress_scoped(signed_in, setup):
    running = SyncRunFactory(credential=setup["credential"], status=SyncRun.Status.RUNNING, finished_at=None,
                             pages=3, fetched=300, created=120, updated=5, unchanged=175)
    data = signed_in.get("/syncs/status.json").json()
    assert data["active"] is True and setup["credential"].pk in data["running"]
    top = data["runs"][0]
    assert top["id"] == running.pk
    assert (top["pages"], top["fetched"], top["created"], top["updated"], top["unchanged"]) == (3, 300, 120, 5, 175)
    assert all(r["credential"] != setup["other"].pk for r in data["runs"])
    assert "beta-only-error" not in str(data)


def test_page_loads_the_poller_from_static(signed_in, setup):
    body = signed_in.get("/syncs/").content.decode()
    assert "/static/arbook/syncs.js" in body and 'data-status-url="/syncs/status.json"' in body


def test_query_count_is_fixed(signed_in, setup, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):
        signed_in.get("/syncs/")


def test_status_json_carries_each_runs_badge_as_the_page_renders_it(signed_in, credential):
    """syncs.js has no map of its own: the label and colour of a run's badge come from the server."""
    from arbook.status import SYNC_RUN

    now = timezone.now()
    runs = {status: SyncRunFactory(credential=credential, status=status, started_at=now - dt.timedelta(minutes=i),
                                   finished_at=None if status == SyncRun.Status.RUNNING else now)
            for i, status in enumerate(SyncRun.Status)}
    data = signed_in.get("/syncs/status.json").json()
    by_id = {r["id"]: r for r in data["runs"]}
    page = signed_in.get("/syncs/").content.decode()
    for status, run in runs.items():
        got = by_id[run.pk]
        assert (got["status"], got["status_label"], got["status_colour"]) == (
            status, SYNC_RUN.label(status), SYNC_RUN.colour(status))
        row = re.search(rf'<tr data-run-id="{run.pk}">(.*?)</tr>', page, re.S).group(1)
        assert (f'<td data-field="status"><span class="badge badge--{got["status_colour"]}">'
                f'{got["status_label"]}</span></td>') in row
    assert {r["status_colour"] for r in by_id.values()} == {"blue", "green", "red", "grey"}


def test_the_poller_takes_the_badge_from_the_json_not_from_a_map_of_its_own():
    from pathlib import Path

    js = (Path(__file__).resolve().parents[2] / "static/arbook/syncs.js").read_text()
    assert "run.status_colour" in js and "run.status_label" in js
    assert not re.search(r"\b(succeeded|failed|running|skipped)\s*:", js)  # no status → colour table
