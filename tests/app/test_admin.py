"""Admin: secrets are write-only, blank keeps, required keys are validated; read-only evidence."""
from __future__ import annotations

import pytest

from arbook.models import GatewayCredential
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"


def form_data(merchant, **overrides):
    data = {
        "merchant": merchant.pk, "provider": "faspay", "label": "main", "base_url": "http://127.0.0.1:9/faspay",
        "options": "{}", "is_active": "on", "sync_interval_minutes": "15", "full_sync_interval_hours": "24",
    }
    data.update(overrides)
    return data


def test_secret_never_appears_in_any_admin_page(admin_client_):
    credential = CredentialFactory(secrets={"username": "bot-user", "password": SECRET})
    invoice = InvoiceFactory(credential=credential)
    SyncRunFactory(credential=credential)
    pages = [
        "/admin/", "/admin/arbook/gatewaycredential/", f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
        "/admin/arbook/gatewaycredential/add/", "/admin/arbook/merchant/",
        f"/admin/arbook/merchant/{credential.merchant.pk}/change/", "/admin/arbook/invoice/",
        f"/admin/arbook/invoice/{invoice.pk}/change/", "/admin/arbook/syncrun/",
        f"/admin/arbook/gatewaycredential/{credential.pk}/history/",
    ]
    for url in pages:
        response = admin_client_.get(url)
        assert response.status_code == 200, url
        assert SECRET.encode() not in response.content, url
    change = admin_client_.get(f"/admin/arbook/gatewaycredential/{credential.pk}/change/").content.decode()
    assert "password, username" in change  # which keys are set is shown
    # A failed POST re-renders the form: the submitted secret is not echoed back either.
    bad = admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                             form_data(credential.merchant, sync_interval_minutes="0", secret__password="new-" + SECRET))
    assert bad.status_code == 200 and ("new-" + SECRET).encode() not in bad.content


def test_blank_secret_keeps_the_stored_value(admin_client_):
    credential = CredentialFactory(secrets={"username": "bot-user", "password": SECRET})
    response = admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                                  form_data(credential.merchant, label="renamed"))
    assert response.status_code == 302, response.content.decode()[:2000]
    credential.refresh_from_db()
    assert credential.label == "renamed"
    assert credential.secrets == {"username": "bot-user", "password": SECRET}


def test_a_new_value_replaces_only_that_key(admin_client_):
    credential = CredentialFactory(secrets={"username": "bot-user", "password": SECRET})
    admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                       form_data(credential.merchant, secret__password="rotated-password"))
    credential.refresh_from_db()
    assert credential.secrets == {"username": "bot-user", "password": "rotated-password"}


def test_required_keys_are_validated_with_a_clear_message(admin_client_):
    merchant = MerchantFactory()
    response = admin_client_.post("/admin/arbook/gatewaycredential/add/",
                                  form_data(merchant, secret__username="only-user"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "password" in body and "faspay" in body.lower()
    assert not GatewayCredential.objects.exists()


def test_key_of_another_provider_is_refused(admin_client_):
    merchant = MerchantFactory()
    response = admin_client_.post("/admin/arbook/gatewaycredential/add/",
                                  form_data(merchant, secret__username="u", secret__password="p" * 8,
                                            secret__signature_key="espay-key"))
    assert response.status_code == 200
    assert "signature_key is not used by Faspay Billing" in response.content.decode()


def test_add_then_remove_a_key(admin_client_):
    merchant = MerchantFactory()
    response = admin_client_.post("/admin/arbook/gatewaycredential/add/",
                                  form_data(merchant, provider="xendit", secret__api_key="appg-key-123",
                                            secret__callback_token="cb-token-123",
                                            options='{"mode": "appgregator", "name": "p", "connection_name": "c"}'))
    assert response.status_code == 302, response.content.decode()[:3000]
    credential = GatewayCredential.objects.get()
    assert credential.secrets == {"api_key": "appg-key-123", "callback_token": "cb-token-123"}
    admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                       form_data(merchant, provider="xendit", remove_keys=["callback_token"],
                                 options='{"mode": "appgregator", "name": "p", "connection_name": "c"}'))
    credential.refresh_from_db()
    assert credential.secrets == {"api_key": "appg-key-123"}


def test_invoices_and_sync_runs_are_read_only(admin_client_):
    invoice = InvoiceFactory()
    run = SyncRunFactory()
    assert admin_client_.get("/admin/arbook/invoice/add/").status_code == 403
    assert admin_client_.get("/admin/arbook/syncrun/add/").status_code == 403
    change = admin_client_.post(f"/admin/arbook/invoice/{invoice.pk}/change/", {"number": "HACKED"})
    assert change.status_code == 403
    invoice.refresh_from_db()
    assert invoice.number != "HACKED"
    assert admin_client_.post(f"/admin/arbook/syncrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403


def test_merchant_members_are_managed_in_admin(admin_client_):
    merchant = MerchantFactory()
    page = admin_client_.get(f"/admin/arbook/merchant/{merchant.pk}/change/")
    assert b'name="members"' in page.content
