"""Headless Chromium on the admin's credential form: choosing a provider shows its fields
(credential-form.js), and Test connection reports on the values typed, without saving them."""
from __future__ import annotations

import pytest

from arbook.models import GatewayCredential
from gateways.sandbox import CREDENTIALS, start
from tests.browser.test_csp import watch_violations
from tests.factories import PASSWORD, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def faspay_sandbox():
    server = start(providers=("faspay",), size=20)
    yield server
    server.stop()


def sign_in_as_admin(live_server, page):
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")


def test_choose_a_provider_then_test_and_save(live_server, page, faspay_sandbox):
    MerchantFactory(name="Toko Sejahtera")
    violations = watch_violations(page)
    sign_in_as_admin(live_server, page)
    page.goto(f"{live_server.url}/admin/arbook/gatewaycredential/add/")
    assert page.locator("[name^='secret__']").count() == 0
    page.locator("#id_merchant").select_option(label="Toko Sejahtera")
    page.locator("#id_label").fill("main")
    page.locator("#id_base_url").fill(faspay_sandbox.base_url("faspay"))

    page.locator("#id_provider").select_option("xendit")
    page.wait_for_url("**provider=xendit**")
    assert page.locator("#id_secret__api_key").is_visible() and page.locator("#id_option__mode").is_visible()
    assert page.locator("#id_secret__username").count() == 0
    assert page.locator("#id_label").input_value() == "main"  # what was typed came along

    page.locator("#id_provider").select_option("faspay")
    page.wait_for_url("**provider=faspay**")
    assert page.locator("[name^='secret__']").count() == 2 and page.locator("#id_secret__api_key").count() == 0
    page.locator("#id_secret__username").fill(CREDENTIALS["faspay"]["username"])
    page.locator("#id_secret__password").fill("not-the-password")
    button = page.get_by_role("button", name="Test connection")
    button.click()
    result = page.locator("#test-connection-result[data-state='error']")
    result.wait_for()
    assert "refused the credential" in result.inner_text() and "not-the-password" not in page.content()

    page.locator("#id_secret__password").fill(CREDENTIALS["faspay"]["password"])
    button.click()
    page.locator("#test-connection-result[data-state='ok']").wait_for()
    assert page.locator("#test-connection-result").inner_text().startswith("Connected")
    assert not GatewayCredential.objects.exists()  # testing saves nothing

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(f"{live_server.url}/admin/arbook/gatewaycredential/")
    credential = GatewayCredential.objects.get()
    assert credential.provider == "faspay" and credential.secrets == CREDENTIALS["faspay"]
    assert violations == []
