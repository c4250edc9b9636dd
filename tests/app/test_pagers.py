"""Every pager link of every paged page, followed the way a browser follows it.

The href is read from the HTML by an HTML parser (which unescapes an attribute exactly once, as a
browser does), resolved against the page's URL and requested; the page it leads to must be the
next (or previous) one, with the right rows, and keep the filters. This is what caught the Espay
batch page, whose "Next" (`?show=&amp;amp;page=2`) led back to page 1.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from django.http import QueryDict
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from arbook.templatetags.pager import page_query
from tests.espay.helpers import make_batch
from tests.factories import CredentialFactory, InvoiceFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


class _Links(HTMLParser):
    """The links inside the pager (`<nav data-testid="pager">`) and every `href` of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0  # > 0 while inside the pager nav
        self.pager: dict[str, str] = {}
        self.hrefs: list[str] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "nav" and (attrs.get("data-testid") == "pager" or self.depth):
            self.depth += 1
        if tag == "a" and attrs.get("href") is not None:
            self.hrefs.append(attrs["href"])
            if self.depth:
                self._href, self._text = attrs["href"], []

    def handle_endtag(self, tag):
        if tag == "nav" and self.depth:
            self.depth -= 1
        if tag == "a" and self._href is not None:
            self.pager["".join(self._text).strip()] = self._href
            self._href = None

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)


def pager_links(response) -> dict[str, str]:
    """{link text: href as a browser reads it} of the page's pager."""
    assert response.status_code == 200, response.content[:300]
    parser = _Links()
    parser.feed(response.content.decode())
    return parser.pager


def follow(client, response, url: str, label: str):
    """Click the pager link `label` of `response` (which was the answer to `url`)."""
    href = pager_links(response)[label]
    target = urljoin("http://testserver" + url, href)
    parts = urlsplit(target)
    path = parts.path + ("?" + parts.query if parts.query else "")
    return path, client.get(path)


def walk(client, url: str, label: str, *, limit: int = 50):
    """[(url, response)] from `url` clicking `label` until the pager has no such link."""
    out = [(url, client.get(url))]
    while label in pager_links(out[-1][1]):
        assert len(out) < limit, "the pager goes round in circles"
        out.append(follow(client, out[-1][1], out[-1][0], label))
    return out


# -- the helper itself --------------------------------------------------------------------------

def test_page_query_keeps_the_filters_and_replaces_the_position():
    query = QueryDict("show=sent&page=3&status=open&status=failed&_export=csv&_totals=1&q=A%26B+%3Cx%3E")
    assert page_query(query, page=4) == "?show=sent&status=open&status=failed&q=A%26B+%3Cx%3E&page=4"
    assert page_query(query) == "?show=sent&status=open&status=failed&q=A%26B+%3Cx%3E"
    assert page_query(QueryDict("after=abc&before=d&last=1"), last=1) == "?last=1"
    assert page_query(QueryDict("as_of=2025-01-01&row=open&q=x"), as_of=None, row=None) == "?q=x"
    assert page_query(QueryDict(""), _export="csv") == "?_export=csv"


def test_the_tag_escapes_exactly_once():
    request = RequestFactory().get("/espay/batches/1/", {"show": "sent", "q": 'Café & "Søn" <b>', "page": "2"})
    html = Template('{% load pager %}<a href="{% page_query page=3 %}">Next</a>').render(
        Context({"request": request}))
    assert "&amp;amp;" not in html and "&amp;page=3" in html
    parser = _Links()
    parser.feed(html)
    (href,) = parser.hrefs
    assert parse_qs(urlsplit(href).query) == {"show": ["sent"], "q": ['Café & "Søn" <b>'], "page": ["3"]}


# -- the Espay batch lines (the reported bug) and the batch list -------------------------------------

@pytest.fixture
def espay(merchant):
    return CredentialFactory(merchant=merchant, provider="espay", label="espay")


@pytest.mark.parametrize("show", ["", "sent"])
def test_espay_batch_lines_next_and_previous(signed_in, espay, user, show):
    batch = make_batch(espay, user=user, lines=1201)
    url = f"/espay/batches/{batch.pk}/?show={show}"
    forward = walk(signed_in, url, "Next")
    assert [r.context["page"].number for _, r in forward] == [1, 2, 3, 4, 5, 6, 7]
    docs = [row["line"].doc_no for _, r in forward for row in r.context["rows"]]
    assert docs == [f"DOC-{i:05d}" for i in range(1, 1202)]  # every line once, in sheet order
    assert all(parse_qs(urlsplit(u).query, keep_blank_values=True).get("show") == [show] for u, _ in forward[1:])
    backward = walk(signed_in, forward[-1][0], "Previous")
    assert [r.context["page"].number for _, r in backward] == [7, 6, 5, 4, 3, 2, 1]


def test_espay_batch_list_newer_and_older(signed_in, espay, user):
    start = timezone.now() - dt.timedelta(days=1)
    batches = [make_batch(espay, user=user, created_at=start + dt.timedelta(minutes=i)) for i in range(120)]
    newest_first = [b.pk for b in reversed(batches)]
    forward = walk(signed_in, "/espay/batches/", "Older")
    assert [r.context["page"].number for _, r in forward] == [1, 2, 3]
    assert [b.pk for _, r in forward for b in r.context["page"].object_list] == newest_first
    backward = walk(signed_in, forward[-1][0], "Newer")
    assert [r.context["page"].number for _, r in backward] == [3, 2, 1]


# -- the invoice list (keyset pages) and an aging drill-down ----------------------------------------

@pytest.fixture
def invoices(credential):
    base = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    made = [InvoiceFactory(credential=credential, number=f"N{i:03d}", customer_name="Café & Søn <b>",
                           status="failed" if i % 3 else "open", due_at=None if i % 7 == 0 else base + dt.timedelta(days=i // 4),
                           issued_at=base - dt.timedelta(days=i)) for i in range(57)]
    InvoiceFactory(credential=credential, number="OTHER", customer_name="Someone else")
    return made


def _expected(rows, field):
    known = sorted((i for i in rows if getattr(i, field) is not None), key=lambda i: (getattr(i, field), i.pk))
    return [i.pk for i in known] + sorted(i.pk for i in rows if getattr(i, field) is None)


def test_invoice_list_next_previous_first_last(signed_in, invoices):
    url = "/invoices/?customer=Caf%C3%A9+%26+S%C3%B8n+%3Cb%3E&status=open&status=failed&sort=due_at&size=25"
    expected = _expected(invoices, "due_at")
    forward = walk(signed_in, url, "Next ›")
    assert [len(r.context["page"].rows) for _, r in forward] == [25, 25, 7]
    assert [i.pk for _, r in forward for i in r.context["page"].rows] == expected
    for page_url, _ in forward:
        query = parse_qs(urlsplit(page_url).query)
        assert query["customer"] == ["Café & Søn <b>"] and query["status"] == ["open", "failed"]
    backward = walk(signed_in, forward[-1][0], "‹ Previous")
    assert [[i.pk for i in r.context["page"].rows] for _, r in backward] == [
        expected[50:], expected[25:50], expected[:25]]
    last_url, last = follow(signed_in, forward[0][1], forward[0][0], "Last »")
    assert [i.pk for i in last.context["page"].rows] == expected[-25:]
    _, first = follow(signed_in, last, last_url, "« First")
    assert [i.pk for i in first.context["page"].rows] == expected[:25]


def test_an_aging_drilldown_pages_within_its_cell(signed_in, credential):
    today = timezone.localdate()
    late = dt.datetime.combine(today - dt.timedelta(days=10), dt.time(12), tzinfo=timezone.get_current_timezone())
    cell = [InvoiceFactory(credential=credential, status="open", outstanding=Decimal(i + 1), due_at=late)
            for i in range(60)]
    InvoiceFactory(credential=credential, status="open", outstanding=Decimal(1000))  # not yet due: another cell
    report = signed_in.get("/aging/")
    parser = _Links()
    parser.feed(report.content.decode())
    (link,) = {h for h in parser.hrefs if "bucket=1-30" in h and "row=open" in h}
    forward = walk(signed_in, link, "Next ›")
    assert len(forward) == 2 and all(r.context["listing"].drilldown for _, r in forward)
    assert sorted(i.pk for _, r in forward for i in r.context["page"].rows) == sorted(i.pk for i in cell)
    assert not any(r.context["notices"] for _, r in forward)


# -- the syncs page ----------------------------------------------------------------------------------

def test_syncs_older_and_newest(signed_in, credential):
    now = timezone.now()
    runs = [SyncRunFactory(credential=credential, started_at=now - dt.timedelta(minutes=i // 2), status="failed")
            for i in range(60)]  # pairs started at the same microsecond
    SyncRunFactory(credential=credential, status="succeeded")  # filtered out
    url = f"/syncs/?credential={credential.pk}&status=failed"
    forward = walk(signed_in, url, "Older runs →")
    got = [run.pk for _, page in forward for run in page.context["page"].rows]
    assert got == [r.pk for r in sorted(runs, key=lambda r: (r.started_at, r.pk), reverse=True)]
    assert [len(r.context["page"].rows) for _, r in forward] == [25, 25, 10]
    _, newest = follow(signed_in, forward[-1][1], forward[-1][0], "Newest")
    assert [r.pk for r in newest.context["page"].rows] == got[:25]


def test_invoice_sort_and_export_links_keep_the_filters(signed_in, invoices):
    url = "/invoices/?customer=Caf%C3%A9+%26+S%C3%B8n+%3Cb%3E&status=failed&sort=due_at&size=25"
    first = signed_in.get(url)
    parser = _Links()
    parser.feed(first.content.decode())
    after = pager_links(first)["Next ›"]
    second = signed_in.get(urljoin("http://testserver" + url, after).removeprefix("http://testserver"))
    parser = _Links()
    parser.feed(second.content.decode())
    for href in parser.hrefs:
        query = parse_qs(urlsplit(href).query)
        if "_export" in query or query.get("sort", ["due_at"]) != ["due_at"]:
            # an export or a sort link: the filters as they were, no page position
            assert query["customer"] == ["Café & Søn <b>"] and query["status"] == ["failed"], href
            assert not {"after", "before", "last"} & set(query), href
    sort_links = [h for h in parser.hrefs if "sort=-due_at" in h]
    assert sort_links
    resorted = signed_in.get(urljoin("http://testserver" + url, sort_links[0]).removeprefix("http://testserver"))
    assert resorted.status_code == 200 and not resorted.context["notices"]
    assert [i.pk for i in resorted.context["page"].rows][:1] != [i.pk for i in first.context["page"].rows][:1]
