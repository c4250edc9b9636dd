"""Links to another page of the same list: `{% load pager %}`, then `{% page_query ... %}`.

Every pager link of the dashboard (the invoice list's First / Previous / Next / Last, the syncs
page's Newest / Older, the Espay batch list and a batch's lines, the export and totals links of
the invoice list and the aging report) is built here, from the request's own query string:

    {% page_query after=page.next_cursor %}  ->  ?status=open&sort=due_at&after=WyJk...

The parameters that say *where* in the list a page starts (`POSITION_PARAMS`) and the one-off
ones (`ONE_OFF_PARAMS`: an export, the totals fragment) are dropped, the others (the filters, the
sort, the page size, a batch's line filter) are kept as they came, and the given ones are set
(None or "" sets nothing: `{% page_query %}` is the first page). The result is plain text, which
the template's autoescaping writes into the `href` with each `&` as `&amp;` exactly once, so a
browser's HTML parser reads the attribute back as this URL. (A query string built in a template
from a literal "&amp;" and `|add:` was escaped a second time: the Espay batch page's "Next" went
to `?show=&amp;page=2`, i.e. page 1.)
"""
from __future__ import annotations

from django import template
from django.http import QueryDict

register = template.Library()

#: Where a page starts: keyset cursors (`after`, `before`, `last`) and page numbers (`page`).
POSITION_PARAMS = ("after", "before", "last", "page")
#: Never carried over to another page: an export, the totals fragment.
ONE_OFF_PARAMS = ("_export", "_totals")


def page_query(query: QueryDict, **changes) -> str:
    """`?` + `query` without the position and one-off parameters, with `changes` set (in that order)."""
    params = query.copy()
    for key in (*POSITION_PARAMS, *ONE_OFF_PARAMS):
        params.pop(key, None)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + params.urlencode()


@register.simple_tag(name="page_query", takes_context=True)
def page_query_tag(context, **changes) -> str:
    """The template side of `page_query`, on the current request's GET parameters."""
    request = context.get("request")
    return page_query(request.GET if request is not None else QueryDict(), **changes)
