"""Headless Chromium (Debian's, driven by Playwright): sign in and see the overview."""
from __future__ import annotations

import pytest

from tests.factories import PASSWORD, MerchantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_and_see_the_overview(live_server, page):
    user = UserFactory(username="accountant")
    MerchantFactory(name="Toko Sejahtera").members.add(user)
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("accountant")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert page.get_by_text("Nothing has been synced yet").is_visible()
    css = page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor")
    assert css == "rgb(18, 26, 43)"  # the stylesheet came from static/
