"""Browser tests (Playwright driving Debian's Chromium, see tests/conftest.py)."""
from tests.factories import PASSWORD


def sign_in(page, url: str, username: str, password: str = PASSWORD) -> None:
    """Open `url`, sign in on the login page it redirects to, and wait until it is back at `url`."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url)
