"""Headless Chromium: /syncs/ follows a running sync live, and the badge the poller (syncs.js) draws
is the one the server's status registry gives (label and colour from the JSON), like the page's."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.browser import sign_in
from tests.factories import CredentialFactory, MerchantFactory, SyncRunFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_running_sync_turns_into_its_outcome_without_a_reload(live_server, page):
    from django.utils import timezone

    from arbook.models import SyncRun
    from arbook.status import SYNC_RUN

    user = UserFactory(username="accountant")
    merchant = MerchantFactory(name="Toko Sejahtera")
    merchant.members.add(user)
    credential = CredentialFactory(merchant=merchant, provider="xendit")
    now = timezone.now()
    running = SyncRunFactory(credential=credential, status=SyncRun.Status.RUNNING, finished_at=None,
                             started_at=now - dt.timedelta(seconds=5))

    sign_in(page, f"{live_server.url}/syncs/", "accountant")
    badge = page.locator(f'tr[data-run-id="{running.pk}"] [data-field="status"] .badge')
    assert badge.get_attribute("class") == f"badge badge--{SYNC_RUN.colour('running')}"
    assert badge.inner_text() == SYNC_RUN.label("running")

    # The run fails and a second one starts and succeeds: the poller updates one row and adds the other.
    SyncRun.objects.filter(pk=running.pk).update(status=SyncRun.Status.FAILED, finished_at=timezone.now(),
                                                  error="Timeout after 3 retries")
    later = SyncRunFactory(credential=credential, status=SyncRun.Status.SUCCEEDED, started_at=timezone.now())
    failed_class = f"badge badge--{SYNC_RUN.colour('failed')}"
    page.wait_for_function(
        "([id, cls]) => { const b = document.querySelector(`tr[data-run-id=\"${id}\"] [data-field=status] .badge`);"
        " return b && b.className === cls; }", arg=[running.pk, failed_class], timeout=10_000)
    assert badge.inner_text() == SYNC_RUN.label("failed")
    added = page.locator(f'tr[data-run-id="{later.pk}"] [data-field="status"] .badge')
    added.wait_for(timeout=10_000)
    assert added.get_attribute("class") == f"badge badge--{SYNC_RUN.colour('succeeded')}"
    assert added.inner_text() == SYNC_RUN.label("succeeded")
    assert page.locator("#sync-runs tbody tr").first.get_attribute("data-run-id") == str(later.pk)
