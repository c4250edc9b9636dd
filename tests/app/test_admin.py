"""Admin: the credential form shows the chosen provider's declared fields only (secrets
write-only, blank keeps, required keys validated by the client; typed options, unknown ones kept),
Test connection checks the values on the form; read-only evidence."""
from __future__ import annotations

import re

import pytest

from arbook.forms.credentials import credential_form
from arbook.models import GatewayCredential
from gateways import PROVIDERS, client_class
from gateways.sandbox import CREDENTIALS, OPTIONS, start
from tests.factories import CredentialFactory, InvoiceFactory, MerchantFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"
XENDIT_OPTIONS = {"option__mode": "appgregator", "option__name": "p", "option__connection_name": "c"}


def form_data(merchant, **overrides):
    data = {
        "merchant": merchant.pk, "provider": "faspay", "label": "main", "base_url": "http://127.0.0.1:9/faspay",
        "is_active": "on", "sync_interval_minutes": "15", "full_sync_interval_hours": "24",
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
                                            secret__callback_token="cb-token-123", **XENDIT_OPTIONS))
    assert response.status_code == 302, response.content.decode()[:3000]
    credential = GatewayCredential.objects.get()
    assert credential.secrets == {"api_key": "appg-key-123", "callback_token": "cb-token-123"}
    assert credential.options == {"mode": "appgregator", "name": "p", "connection_name": "c"}
    admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                       form_data(merchant, provider="xendit", remove_keys=["callback_token"], **XENDIT_OPTIONS))
    credential.refresh_from_db()
    assert credential.secrets == {"api_key": "appg-key-123"}


def field_names(html: str, prefix: str) -> set[str]:
    return {m.removeprefix(prefix) for m in re.findall(rf'name="({prefix}[a-z_]+)"', html)}


def declared_names(provider: str) -> tuple[set[str], set[str]]:
    client = client_class(provider)
    return {f.name for f in client.secret_fields}, {f.name for f in client.option_fields}


def test_a_faspay_form_lists_only_faspay_secrets_and_options(admin_client_):
    credential = CredentialFactory(secrets={"username": "bot-user", "password": SECRET})
    html = admin_client_.get(f"/admin/arbook/gatewaycredential/{credential.pk}/change/").content.decode()
    assert field_names(html, "secret__") == {"username", "password"}
    assert field_names(html, "option__") == declared_names("faspay")[1]
    assert "split_months" in declared_names("faspay")[1] and "signature_key" not in html
    assert 'name="options"' not in html  # no raw JSON textarea
    assert 'type="number"' in html and 'name="option__period_format"' in html  # typed inputs
    assert "needs username + password" in html


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_add_form_shows_the_chosen_providers_fields(admin_client_, provider):
    html = admin_client_.get(f"/admin/arbook/gatewaycredential/add/?provider={provider}").content.decode()
    secrets, options = declared_names(provider)
    assert field_names(html, "secret__") == secrets and field_names(html, "option__") == options
    assert re.search(rf'<option value="{provider}" selected>', html)


def test_an_add_form_asks_for_the_provider_first(admin_client_):
    merchant = MerchantFactory()
    html = admin_client_.get("/admin/arbook/gatewaycredential/add/").content.decode()
    assert "Choose the provider first" in html and not field_names(html, "secret__") | field_names(html, "option__")
    # Without JavaScript, saving with a provider chosen shows its fields and saves nothing.
    response = admin_client_.post("/admin/arbook/gatewaycredential/add/", form_data(merchant, provider="munio"))
    assert response.status_code == 200 and not GatewayCredential.objects.exists()
    html = response.content.decode()
    assert field_names(html, "secret__") == declared_names("munio")[0]
    assert "client_key+access_token or client_key+login+password" in html


def test_switching_the_provider_of_a_credential_shows_the_new_providers_fields(admin_client_):
    credential = CredentialFactory()
    url = f"/admin/arbook/gatewaycredential/{credential.pk}/change/"
    html = admin_client_.get(url + "?provider=xendit").content.decode()
    assert field_names(html, "secret__") == declared_names("xendit")[0]
    assert re.search(r'<option value="xendit" selected>', html)
    html = admin_client_.get(url + "?provider=paypal").content.decode()  # unknown: the stored provider
    assert field_names(html, "secret__") == {"username", "password"}


def test_the_bare_form_never_saves_a_provider_it_holds_no_fields_for():
    form = credential_form(None)(data=form_data(MerchantFactory()))
    assert not form.is_valid() and "Fill in the secrets and options of Faspay Billing." in form.non_field_errors()


@pytest.mark.parametrize("value, error", [
    ("abc", "Enter a whole number."),
    ("0", "Ensure this value is greater than or equal to 1."),
])
def test_a_bad_typed_option_is_a_form_error(admin_client_, value, error):
    credential = CredentialFactory(options={"split_months": 6})
    response = admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                                  form_data(credential.merchant, option__split_months=value))
    assert response.status_code == 200 and error in response.content.decode()
    credential.refresh_from_db()
    assert credential.options == {"split_months": 6}


def test_a_bad_choice_is_a_form_error(admin_client_):
    credential = CredentialFactory()
    response = admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                                  form_data(credential.merchant, option__period_format="unix"))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()


def test_options_are_stored_typed_and_blank_means_the_default(admin_client_):
    credential = CredentialFactory(options={"split_months": 3, "customer_id": 7})
    html = admin_client_.get(f"/admin/arbook/gatewaycredential/{credential.pk}/change/").content.decode()
    assert re.search(r'name="option__split_months" value="3"', html)
    response = admin_client_.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                                  form_data(credential.merchant, option__split_months="6",
                                            option__period_format="date", option__customer_id=""))
    assert response.status_code == 302, response.content.decode()[:3000]
    credential.refresh_from_db()
    assert credential.options == {"split_months": 6, "period_format": "date"}


def test_unknown_stored_options_are_kept_until_ticked(admin_client_):
    credential = CredentialFactory(options={"legacy_flag": "keep-me", "split_months": 3})
    url = f"/admin/arbook/gatewaycredential/{credential.pk}/change/"
    html = admin_client_.get(url).content.decode()
    assert "legacy_flag = &quot;keep-me&quot;" in html and 'name="remove_options"' in html
    assert admin_client_.post(url, form_data(credential.merchant, option__split_months="3")).status_code == 302
    credential.refresh_from_db()
    assert credential.options == {"legacy_flag": "keep-me", "split_months": 3}
    admin_client_.post(url, form_data(credential.merchant, option__split_months="3", remove_options=["legacy_flag"]))
    credential.refresh_from_db()
    assert credential.options == {"split_months": 3}


@pytest.fixture(scope="module")
def sandbox():
    server = start(size=20)
    yield server
    server.stop()


def sandbox_credential(sandbox, provider: str) -> GatewayCredential:
    return CredentialFactory(provider=provider, base_url=sandbox.base_url(provider), secrets=dict(CREDENTIALS[provider]),
                             options=dict(OPTIONS.get(provider, {})))


def ask_test_connection(client, url: str, data: dict) -> dict:
    response = client.post(url, {**data, "_test_connection": "1"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def test_test_connection_checks_the_values_on_the_form_and_saves_nothing(admin_client_, sandbox):
    credential = sandbox_credential(sandbox, "faspay")
    url = f"/admin/arbook/gatewaycredential/{credential.pk}/change/"
    data = form_data(credential.merchant, base_url=credential.base_url)
    html = admin_client_.get(url).content.decode()
    assert "data-test-connection" in html and "arbook/credential-form.js" in html
    good = ask_test_connection(admin_client_, url, data)  # blank secrets: the stored ones
    assert good["ok"] and good["message"].startswith("Connected"), good
    bad = ask_test_connection(admin_client_, url, {**data, "secret__password": "wrong-password-123", "label": "x"})
    assert not bad["ok"] and "refused the credential" in bad["message"], bad
    assert "wrong-password-123" not in bad["message"] and CREDENTIALS["faspay"]["password"] not in bad["message"]
    credential.refresh_from_db()
    assert credential.label == "main" and credential.secrets == CREDENTIALS["faspay"]
    invalid = ask_test_connection(admin_client_, url, {**data, "option__split_months": "many"})
    assert not invalid["ok"] and invalid["message"] == "Not tested: split_months: Enter a whole number."


@pytest.mark.parametrize("provider", PROVIDERS)
def test_test_connection_on_an_add_form(admin_client_, sandbox, provider):
    merchant = MerchantFactory()
    secrets = {f"secret__{k}": v for k, v in CREDENTIALS[provider].items() if k in declared_names(provider)[0]}
    options = {f"option__{k}": v for k, v in OPTIONS.get(provider, {}).items()}
    data = form_data(merchant, provider=provider, base_url=sandbox.base_url(provider), **secrets, **options)
    result = ask_test_connection(admin_client_, f"/admin/arbook/gatewaycredential/add/?provider={provider}", data)
    assert result["ok"] and result["message"].startswith("Connected"), result
    assert not GatewayCredential.objects.exists()
    assert not any(value in result["message"] for value in CREDENTIALS[provider].values())


def test_test_connection_needs_the_permission(client, user, sandbox):
    credential = sandbox_credential(sandbox, "faspay")
    user.is_staff = True
    user.save()
    client.force_login(user)
    response = client.post(f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                           {**form_data(credential.merchant), "_test_connection": "1"})
    assert response.status_code == 403


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
