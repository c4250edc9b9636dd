"""Content-Security-Policy (django-csp 4): nothing inline, nothing from elsewhere, no framing;
and the pages we serve (the admin's included) carry nothing the policy would block."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import CredentialFactory, InvoiceFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def directives(header: str) -> dict[str, list[str]]:
    parts = (p.strip().split() for p in header.split(";") if p.strip())
    return {p[0]: p[1:] for p in parts}


def test_every_page_says_what_may_run(signed_in, client):
    for response in (signed_in.get("/"), client.get("/accounts/login/")):
        policy = directives(response["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert policy["form-action"] == ["'self'"]
        assert not any("unsafe" in v or v == "*" for values in policy.values() for v in values)


class Inline(HTMLParser):
    """Collects what a `script-src 'self'; style-src 'self'` policy would refuse."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        if "style" in names:
            self.found.append(f"style= on <{tag}>")
        self.found.extend(f"{name}= on <{tag}>" for name in names if name.startswith("on"))
        if tag == "a" and any((v or "").strip().lower().startswith("javascript:") for n, v in attrs if n == "href"):
            self.found.append("javascript: link")


def inline_parts(html: str) -> list[str]:
    parser = Inline()
    parser.feed(html)
    return parser.found


def test_no_template_has_inline_script_style_or_handlers():
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        text = re.sub(r"{%.*?%}|{{.*?}}", "", text, flags=re.S)
        assert inline_parts(text) == [], template


def test_our_pages_and_the_admin_pages_render_nothing_inline(signed_in, admin_client_, superuser, merchant, user):
    credential = CredentialFactory(merchant=merchant)
    invoice = InvoiceFactory(credential=credential)
    SyncRunFactory(credential=credential)
    merchant.members.add(superuser)
    pages = ["/", "/invoices/", f"/invoices/{invoice.pk}/", "/aging/", "/syncs/", "/espay/batches/",
             "/espay/batches/new/"]
    for url in pages:
        response = signed_in.get(url)
        assert response.status_code == 200, url
        assert inline_parts(response.content.decode()) == [], url
    admin_pages = ["/admin/", "/admin/arbook/gatewaycredential/", f"/admin/arbook/gatewaycredential/{credential.pk}/change/",
                   "/admin/arbook/gatewaycredential/add/", "/admin/arbook/invoice/",
                   f"/admin/arbook/invoice/{invoice.pk}/change/", "/admin/arbook/syncrun/", "/admin/auth/user/",
                   f"/admin/auth/user/{user.pk}/change/", "/admin/axes/accessattempt/", "/admin/password_change/"]
    for url in admin_pages:
        response = admin_client_.get(url)
        assert response.status_code == 200, url
        assert inline_parts(response.content.decode()) == [], url
        assert "Content-Security-Policy" in response


def test_the_policy_uses_django_csp_4s_format():
    assert set(settings.CONTENT_SECURITY_POLICY) == {"DIRECTIVES"}
    assert "csp.middleware.CSPMiddleware" in settings.MIDDLEWARE
