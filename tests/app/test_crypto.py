"""Credential secrets are encrypted at rest; rotation keeps old rows readable; bad keys fail clearly."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from arbook.crypto import SecretsUnavailable
from arbook.models import GatewayCredential
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"


def raw_column(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets_encrypted FROM arbook_gatewaycredential WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_column_never_holds_the_plain_value():
    credential = CredentialFactory(secrets={"username": "bot-user", "password": SECRET})
    stored = raw_column(credential.pk)
    assert SECRET not in stored and "bot-user" not in stored and "password" not in stored
    assert GatewayCredential.objects.get(pk=credential.pk).secrets == {"username": "bot-user", "password": SECRET}


def test_create_in_code_as_design_says(merchant):
    credential = GatewayCredential.objects.create(merchant=merchant, provider="faspay", base_url="http://x.test",
                                                  secrets={"username": "u", "password": SECRET})
    assert SECRET not in raw_column(credential.pk)
    assert GatewayCredential.objects.get(pk=credential.pk).secrets["password"] == SECRET


def test_rotation_keeps_old_rows_readable_and_rewrites_them(settings, capsys):
    old_key = settings.ARBOOK_ENCRYPTION_KEYS[0]
    credential = CredentialFactory(secrets={"username": "u", "password": SECRET})
    before = raw_column(credential.pk)
    new_key = Fernet.generate_key().decode()
    settings.ARBOOK_ENCRYPTION_KEYS = [new_key, old_key]
    assert GatewayCredential.objects.get(pk=credential.pk).secrets["password"] == SECRET

    from django.core.management import call_command

    call_command("rotate_credential_keys")
    assert raw_column(credential.pk) != before
    settings.ARBOOK_ENCRYPTION_KEYS = [new_key]  # the old key is gone: still readable
    assert GatewayCredential.objects.get(pk=credential.pk).secrets["password"] == SECRET


def test_missing_key_is_a_clear_error(settings):
    credential = CredentialFactory()
    settings.ARBOOK_ENCRYPTION_KEYS = []
    with pytest.raises(SecretsUnavailable, match="ARBOOK_ENCRYPTION_KEYS"):
        GatewayCredential.objects.get(pk=credential.pk).secrets


def test_wrong_key_is_a_clear_error_without_internals(settings):
    credential = CredentialFactory()
    settings.ARBOOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretsUnavailable) as info:
        GatewayCredential.objects.get(pk=credential.pk).secrets
    assert "cannot be decrypted" in str(info.value) and SECRET not in str(info.value)


def test_malformed_key_is_a_clear_error(settings):
    credential = CredentialFactory()
    settings.ARBOOK_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(SecretsUnavailable, match="not a Fernet key"):
        GatewayCredential.objects.get(pk=credential.pk).secrets


def test_admin_shows_a_message_not_a_crash_when_the_key_is_wrong(settings, admin_client_):
    credential = CredentialFactory()
    settings.ARBOOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    page = admin_client_.get(f"/admin/arbook/gatewaycredential/{credential.pk}/change/")
    assert page.status_code == 200
    assert b"unreadable with the configured ARBOOK_ENCRYPTION_KEYS" in page.content
    listing = admin_client_.get("/admin/arbook/gatewaycredential/")
    assert listing.status_code == 200
