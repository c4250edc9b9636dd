"""The status registry (arbook.status) and its one badge renderer (`{% badge %}`, templatetags.badges).

Every stored or derived state has a registry entry (label + colour) for each of its values, the
models use the registry's very choices, every colour has a CSS class, and the tag renders each
entry as the pages did before the registry (same classes, texts and attributes)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import models
from django.template import Context, Template, TemplateSyntaxError
from django.utils.html import escape

from arbook.models import EspayBatch, EspayChunk, EspayLine, Invoice, InvoiceEvent, Notification, Promise, ReminderMessage, SyncRun
from arbook.status import (
    COLOURS,
    KINDS,
    STATUSES,
    CredentialFreshness,
    InvoiceStatus,
    StatusInfo,
    register,
)
from arbook.templatetags.badges import badge_html
from gateways import status as st

ROOT = Path(__file__).resolve().parents[2]

#: Every TextChoices that is a state, and the registry kind that shows it.
STATEFUL = {
    "invoice": InvoiceStatus,
    "sync_run": SyncRun.Status,
    "espay_batch": EspayBatch.Status,
    "espay_chunk": EspayChunk.Status,
    "espay_line": EspayLine.Status,
    "freshness": CredentialFreshness,
    "notification_verification": Notification.Verification,
    "notification_outcome": Notification.Outcome,
    "promise": Promise.State,
    "reminder": ReminderMessage.State,
}
#: Model fields with choices that are not states (nothing shows them as a badge).
NOT_STATES = {("merchant", "timezone"), ("gatewaycredential", "provider"), ("invoice", "provider"),
              ("syncrun", "trigger"), ("invoiceevent", "source"), ("customeridentity", "kind"),
              ("auditentry", "action"), ("reminderdrop", "reason"), ("dayrollup", "kind")}


def render(text: str, **context) -> str:
    return Template("{% load badges %}" + text).render(Context(context))


def test_every_value_of_every_state_has_a_label_and_a_colour():
    assert set(KINDS) == set(STATEFUL)
    for name, choices in STATEFUL.items():
        kind = KINDS[name]
        assert kind.choices is choices, name  # the models use the registry's classes: one list of values
        assert list(kind.states) == list(choices.values), name
        for member in choices:
            info = kind.states[member.value]
            assert info.value == member.value and info.label == member.label and info.label, (name, member)
            assert info.colour in COLOURS, (name, member)
        assert kind.fallback in COLOURS


def test_every_choice_field_of_every_model_is_a_registered_state_or_declared_not_one():
    registered = {tuple(kind.choices.choices): name for name, kind in KINDS.items()}
    seen = set()
    for model in apps.get_app_config("arbook").get_models():
        for field in model._meta.get_fields():
            if not getattr(field, "choices", None):
                continue
            key = (model._meta.model_name, field.name)
            if key in NOT_STATES:
                continue
            name = registered.get(tuple(field.choices))
            assert name, f"{model.__name__}.{field.name} has a state with no entry in arbook.status"
            seen.add(name)
    # Each stored state is on a model (the freshness is derived, never stored).
    assert seen == set(STATEFUL) - {"freshness"}
    assert Invoice._meta.get_field("status").choices == InvoiceStatus.choices
    assert InvoiceEvent._meta.get_field("status_after").choices == InvoiceStatus.choices


def test_invoice_states_keep_their_table():
    assert tuple(STATUSES) == st.ALL
    assert tuple(v for v, i in STATUSES.items() if i.in_aging == "yes") == st.RECEIVABLE
    assert tuple(v for v, i in STATUSES.items() if i.in_aging == "apart") == st.APART
    assert all(i.meaning for i in STATUSES.values())
    assert STATUSES["failed"] == StatusInfo("failed", "Failed", "red", "yes", "a payment attempt failed; still owed")


def test_every_colour_has_a_badge_class_in_the_stylesheet():
    css = (ROOT / "static/arbook/app.css").read_text()
    defined = set(re.findall(r"\.badge--([a-z]+)\s*\{", css))
    used = {info.colour for kind in KINDS.values() for info in kind.states.values()} | {
        kind.fallback for kind in KINDS.values()}
    assert used <= defined <= COLOURS


def test_register_refuses_a_kind_with_a_missing_extra_or_unstyled_colour():
    class Light(models.TextChoices):
        ON = "on", "On"
        OFF = "off", "Off"

    before = dict(KINDS)
    with pytest.raises(ValueError, match="missing \\['off'\\]"):
        register("light", Light, {Light.ON: "green"})
    with pytest.raises(ValueError, match="extra \\['dim'\\]"):
        register("light", Light, {Light.ON: "green", Light.OFF: "grey", "dim": "grey"})
    with pytest.raises(ValueError, match="no badge class"):
        register("light", Light, {Light.ON: "green", Light.OFF: "pink"})
    with pytest.raises(ValueError, match="twice"):
        register("sync_run", Light, {Light.ON: "green", Light.OFF: "grey"})
    assert KINDS == before


def test_the_badge_tag_renders_every_entry():
    for name, kind in KINDS.items():
        for value, info in kind.states.items():
            title = f' title="{escape(info.meaning)}"' if info.meaning else ""
            expected = f'<span class="badge badge--{info.colour}"{title}>{escape(info.label)}</span>'
            assert render("{% badge kind value %}", kind=name, value=value) == expected, (name, value)
            assert badge_html(name, value) == expected
            assert render("{% state_label kind value %}", kind=name, value=value) == escape(info.label)


def test_the_badge_tag_renders_as_the_pages_did():
    # The exact markup the templates and the money filter produced before the registry.
    assert render('{% badge "invoice" "failed" %}') == \
        '<span class="badge badge--red" title="a payment attempt failed; still owed">Failed</span>'
    assert render('{% badge "sync_run" "succeeded" %}') == '<span class="badge badge--green">Succeeded</span>'
    assert render('{% badge "sync_run" "running" %}') == '<span class="badge badge--blue">Running</span>'
    assert render('{% badge "sync_run" "skipped" %}') == '<span class="badge badge--grey">Skipped</span>'
    assert render('{% badge "espay_batch" s testid="batch-status" %}', s=EspayBatch.Status.PARTIAL) == \
        '<span class="badge badge--amber" data-testid="batch-status">Partly sent</span>'
    assert render('{% badge "espay_line" "already_listed" %}') == \
        '<span class="badge badge--teal">Sent (confirmed on retry)</span>'
    assert render('{% badge "freshness" "ok" %}') == '<span class="badge badge--green">fresh</span>'
    assert render('{% badge "freshness" "no_list_api" %}') == '<span class="badge badge--grey">no list API</span>'
    assert render('{% badge "freshness" "needs_attention" %}') == \
        '<span class="badge badge--red">needs attention</span>'


def test_an_unknown_value_shows_as_itself_escaped_and_an_unknown_kind_is_an_error():
    assert render('{% badge "invoice" "refunded" %}') == '<span class="badge badge--black">refunded</span>'
    assert render('{% badge "invoice" "" %}') == '<span class="badge badge--black">?</span>'
    assert render('{% badge "sync_run" v %}', v="<b>odd</b>") == \
        '<span class="badge badge--grey">&lt;b&gt;odd&lt;/b&gt;</span>'
    assert render('{% badge "espay_line" None %}') == '<span class="badge badge--grey">?</span>'
    assert render('{% state_label "sync_run" v %}', v="<i>") == "&lt;i&gt;"
    with pytest.raises(TemplateSyntaxError, match="Unknown status kind 'sync'"):
        render('{% badge "sync" "running" %}')
