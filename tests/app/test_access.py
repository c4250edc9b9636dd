"""Sign-in on every page, merchant scoping, /healthz."""
from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from arbook.models import Invoice, Merchant
from arbook.scoping import get_scoped_or_404, scope, visible_merchants
from tests.factories import InvoiceFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db

PUBLIC = {"/accounts/login/", "/healthz"}


def all_urls(resolver=None, prefix=""):
    """Every URL the project routes, with placeholders filled by plausible values."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if pattern.startswith("admin/"):
                continue  # admin has its own sign-in (tested in test_admin)
            yield from all_urls(entry, pattern)
        elif isinstance(entry, URLPattern):
            url = "/" + re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "abc" if m.group(1) in ("str", "slug") else "1",
                               pattern.lstrip("^").rstrip("$"))
            yield url


def test_every_page_but_login_and_healthz_requires_sign_in(client):
    urls = sorted(set(all_urls()))
    assert "/" in urls
    for url in urls:
        if url in PUBLIC or url.startswith("/hooks/") or url.startswith("/static/"):
            continue
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_login_and_logout(client):
    user = UserFactory()
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    response = client.post("/accounts/login/", {"username": user.username, "password": "correct-horse-battery-staple"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_wrong_password_says_so(client):
    user = UserFactory()
    response = client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    assert response.status_code == 200 and b"didn't match" in response.content


def test_overview_says_nothing_was_synced_yet(signed_in, credential):
    page = signed_in.get("/")
    assert page.status_code == 200
    assert b"Nothing has been synced yet" in page.content
    assert credential.merchant.name.encode() in page.content


def test_overview_without_merchants_says_what_to_do(client):
    client.force_login(UserFactory())
    assert b"not a member of any merchant" in client.get("/").content


def test_scoping_members_see_their_merchants_superusers_all():
    a, b = MerchantFactory(), MerchantFactory()
    alice, bob, root = UserFactory(), UserFactory(), UserFactory(is_superuser=True)
    a.members.add(alice)
    b.members.add(bob)
    assert list(visible_merchants(alice)) == [a]
    assert set(visible_merchants(root)) == {a, b}
    inv_a, inv_b = InvoiceFactory(credential__merchant=a), InvoiceFactory(credential__merchant=b)
    assert list(scope(Invoice.objects.all(), alice)) == [inv_a]
    assert list(scope(Invoice.objects.all(), bob)) == [inv_b]
    assert get_scoped_or_404(Invoice.objects.all(), alice, pk=inv_a.pk) == inv_a
    from django.http import Http404

    with pytest.raises(Http404):
        get_scoped_or_404(Invoice.objects.all(), alice, pk=inv_b.pk)


def test_scoping_inactive_and_anonymous_see_nothing():
    from django.contrib.auth.models import AnonymousUser

    m = MerchantFactory()
    ghost = UserFactory(is_active=False)
    m.members.add(ghost)
    assert not visible_merchants(ghost).exists()
    assert not visible_merchants(AnonymousUser()).exists()
    assert not scope(Merchant.objects.all(), AnonymousUser(), merchant_field="pk").exists()


def test_healthz_checks_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_reports_a_dead_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("unreachable")
