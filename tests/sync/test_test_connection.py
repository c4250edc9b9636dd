"""Admin "Test connection": one cheap authenticated call, a clear message, never a secret."""
from __future__ import annotations

import pytest
from arbook.services.credentials import credential_test_connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("provider", ["faspay", "xendit", "munio", "farpay", "espay"])
def test_a_good_credential_connects(provider, make_credential):
    ok, message = credential_test_connection(credential=make_credential(provider))
    assert ok, message
    assert message.startswith("Connected")


def test_a_refused_credential_says_so_without_the_secret(make_credential):
    credential = make_credential("farpay")
    credential.secrets = {"api_key": "wrong-farpay-key-123"}
    credential.save()
    ok, message = credential_test_connection(credential=credential)
    assert not ok and "refused the credential" in message and "wrong-farpay-key-123" not in message


def test_an_unreachable_gateway_says_so(make_credential):
    ok, message = credential_test_connection(
        credential=make_credential("xendit", base_url="http://127.0.0.1:9/xendit"))
    assert not ok and "unreachable" in message


def test_the_admin_action_reports_each_credential(client, superuser, make_credential):
    good, bad = make_credential("xendit"), make_credential("faspay")
    bad.secrets = {"username": "bot-arbook", "password": "not-the-password"}
    bad.save()
    client.force_login(superuser)
    response = client.post("/admin/arbook/gatewaycredential/",
                           {"action": "test_connection", "_selected_action": [good.pk, bad.pk]}, follow=True)
    texts = [m.message for m in response.context["messages"]]
    assert any(str(good) in t and "Connected" in t for t in texts), texts
    assert any(str(bad) in t and "refused" in t for t in texts), texts
    assert b"not-the-password" not in response.content
