"""State badges from the status registry (`arbook.status`): `{% load badges %}`.

- ``{% badge "sync_run" run.status %}`` → ``<span class="badge badge--green">Succeeded</span>``;
  an invoice state also carries its meaning as the title; ``testid="batch-status"`` adds a
  ``data-testid`` attribute (for the browser tests).
- ``{% state_label "invoice" invoice.status %}`` → ``Partially paid`` (plain text).

The kind is one of `arbook.status.KINDS` (``invoice``, ``sync_run``, ``espay_batch``,
``espay_chunk``, ``espay_line``, ``freshness``, ``notification_verification``,
``notification_outcome``); an unknown kind is a template error (a typo must not render a grey
badge silently), an unknown value shows as itself in the kind's fallback colour. `badge_html` is
the same renderer for Python code (tables).
"""
from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from arbook.status import KINDS, Kind

register = template.Library()


def _kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise template.TemplateSyntaxError(
            f"Unknown status kind {name!r}: use one of {', '.join(KINDS)} (arbook.status).") from None


def badge_html(kind: str, value, *, testid: str = "") -> SafeString:
    """The badge of `value` as a state of `kind` (escaped, safe to insert)."""
    info = _kind(kind).info(value)
    title = format_html(' title="{}"', info.meaning) if info.meaning else ""
    test = format_html(' data-testid="{}"', testid) if testid else ""
    return format_html('<span class="badge badge--{}"{}{}>{}</span>', info.colour, title, test, info.label)


@register.simple_tag
def badge(kind: str, value, testid: str = "") -> SafeString:
    """``{% badge "espay_batch" batch.status testid="batch-status" %}``."""
    return badge_html(kind, value, testid=testid)


@register.simple_tag
def state_label(kind: str, value) -> str:
    """``{% state_label "invoice" invoice.status %}``: the label alone (autoescaped)."""
    return _kind(kind).label(value)
