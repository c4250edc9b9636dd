"""The notification receiver answers the same with or without the trailing slash, for every
provider: no redirect (a redirected POST loses the provider's body), no 500."""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from arbook.models import GatewayCredential, Notification
from gateways.sandbox import CREDENTIALS, OPTIONS
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

PROVIDERS = ("espay", "xendit", "faspay", "farpay", "munio")


def credential(provider: str) -> GatewayCredential:
    return GatewayCredential.objects.create(merchant=MerchantFactory(), provider=provider, label="hooks",
                                            secrets=dict(CREDENTIALS[provider]),
                                            options=dict(OPTIONS.get(provider, {})))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("body", [b'{"id": "x-1", "status": "PAID"}', b"not json"])
def test_with_and_without_the_trailing_slash_the_answer_is_the_same(provider, body):
    client = Client(raise_request_exception=False)
    cred = credential(provider)
    answers = []
    for path in (f"/hooks/{provider}/{cred.hook_token}/", f"/hooks/{provider}/{cred.hook_token}"):
        response = client.post(path, body, content_type="application/json")
        answers.append((response.status_code, response["Content-Type"]))
    assert answers[0] == answers[1], answers
    assert answers[0][0] not in (301, 302, 308, 500), answers
    assert Notification.objects.filter(provider=provider).count() == 2  # both were received and stored


def test_a_verified_xendit_notification_is_accepted_either_way():
    client = Client(raise_request_exception=False)
    cred = credential("xendit")
    body = json.dumps({"id": "inv-1", "external_id": "INV-1", "status": "PAID", "amount": 1000,
                       "paid_amount": 1000, "updated": "2026-11-01T00:00:00.000Z"})
    for path in (f"/hooks/xendit/{cred.hook_token}/", f"/hooks/xendit/{cred.hook_token}"):
        response = client.post(path, body, content_type="application/json",
                               HTTP_X_CALLBACK_TOKEN=CREDENTIALS["xendit"]["callback_token"])
        assert response.status_code == 200, (path, response.content)


def test_the_documented_url_keeps_its_slash():
    assert reverse("hook_receive", kwargs={"provider": "xendit", "token": "abc"}) == "/hooks/xendit/abc/"
