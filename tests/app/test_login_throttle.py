"""Sign-in throttling (django-axes): a run of wrong passwords locks that username from that
address for a while, the right password included; the lock-out page is the site's, 429."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LIMIT = settings.AXES_FAILURE_LIMIT


def sign_in(client, username, password, *, addr="10.0.0.7", path="/accounts/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=addr)


def test_the_limit_is_small_and_the_cool_off_a_while():
    assert 3 <= LIMIT <= 10
    assert dt.timedelta(minutes=5) <= settings.AXES_COOLOFF_TIME <= dt.timedelta(hours=1)


def test_thirty_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused(client):
    user = UserFactory()
    answers = [sign_in(client, user.username, f"wrong-{i}").status_code for i in range(30)]
    assert answers[: LIMIT - 1] == [200] * (LIMIT - 1)  # the form again, "didn't match"
    assert set(answers[LIMIT - 1:]) == {429}
    locked = sign_in(client, user.username, PASSWORD)
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed sign-ins" in page and 'class="topbar"' in page  # the site's page, not a 500
    assert "15 minutes" in page
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # still not signed in


def test_the_lock_is_per_username_and_address(client):
    alice, bob = UserFactory(), UserFactory()
    for i in range(LIMIT):
        sign_in(client, alice.username, f"wrong-{i}")
    assert sign_in(client, alice.username, PASSWORD).status_code == 429
    # Bob from the same address, and Alice from another one, still get in.
    assert sign_in(client, bob.username, PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    assert sign_in(client, alice.username, PASSWORD, addr="10.0.0.8").status_code == 302


def test_after_the_cool_off_the_right_password_works_and_a_success_resets_the_count(client):
    user = UserFactory()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for i in range(LIMIT):
            sign_in(client, user.username, f"wrong-{i}")
        assert sign_in(client, user.username, PASSWORD).status_code == 429
        clock.shift(settings.AXES_COOLOFF_TIME + dt.timedelta(seconds=1))
        assert sign_in(client, user.username, PASSWORD).status_code == 302
        client.post("/accounts/logout/")
        for i in range(LIMIT - 1):  # the success cleared the earlier failures
            assert sign_in(client, user.username, f"again-{i}").status_code == 200
        assert sign_in(client, user.username, PASSWORD).status_code == 302


def test_the_admin_sign_in_is_throttled_too(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    for i in range(LIMIT):
        sign_in(client, admin.username, f"wrong-{i}", path="/admin/login/")
    response = sign_in(client, admin.username, PASSWORD, path="/admin/login/")
    assert response.status_code == 429 and "Too many failed sign-ins" in response.content.decode()


def test_behind_trusted_proxies_the_forwarded_client_address_counts(client, settings):
    """With ARBOOK_PROXY_COUNT=1 the proxy's own address is not the client's: one client's
    failures do not lock everybody out, and a client cannot choose its address by sending
    its own X-Forwarded-For."""
    settings.ARBOOK_PROXY_COUNT = 1
    user = UserFactory()
    for i in range(LIMIT):
        client.post("/accounts/login/", {"username": user.username, "password": f"wrong-{i}"},
                    REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.5")
    locked = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD},
                         REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert locked.status_code == 429
    other = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD},
                        REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert other.status_code == 302
