"""Every state arbook shows, with its label and badge colour, declared once: the status registry.

A stateful thing is a `TextChoices` (its values and labels, the only list of them) plus, right
below it, its badge colour per member, registered as a `Kind` under a short name:

| kind | choices | used by |
|---|---|---|
| `invoice` | `InvoiceStatus` (values from `gateways.status`) | `Invoice.status`, `InvoiceEvent.status_*` |
| `sync_run` | `SyncRunStatus` | `SyncRun.Status` |
| `espay_batch` | `EspayBatchStatus` | `EspayBatch.Status` |
| `espay_chunk` | `EspayChunkStatus` | `EspayChunk.Status` |
| `espay_line` | `EspayLineStatus` | `EspayLine.Status` |
| `freshness` | `CredentialFreshness` | the overview's data freshness, the syncs page's account marks |
| `notification_verification` | `NotificationVerification` | `Notification.Verification` |
| `notification_outcome` | `NotificationOutcome` | `Notification.Outcome` |
| `promise` | `PromiseState` | `Promise.State` |
| `reminder` | `ReminderState` | `ReminderMessage.State` |

The models use these very classes (`SyncRun.Status is SyncRunStatus`, ...), so a model's choices,
its labels and its badge can never disagree; `register` refuses (at import) a kind whose colours
miss a value or name one that is not a value, or a colour that app.css does not define.

Where a state is shown:
- templates: `{% load badges %}{% badge "sync_run" run.status %}` (`arbook.templatetags.badges`),
  the one renderer of a state badge (`<span class="badge badge--<colour>">label</span>`; the
  invoice states also carry their meaning as the title);
- JavaScript: from the server, never from a map of its own (the syncs page's JSON status endpoint
  gives each run's `status_label` and `status_colour`);
- Python: `KINDS["sync_run"].label(value)` / `.colour(value)`.

A value a kind does not know (an old row, a typo) is shown as itself in the kind's `fallback`
colour (black for an invoice state, which marks "not understood"; grey elsewhere), never an error.

This module sits on the models' floor: it imports Django's `models` (for `TextChoices`) and
`gateways.status`, nothing of arbook.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from django.db import models

from gateways import status as st

#: Badge colours: each is a CSS class suffix, `badge--<colour>`, defined in static/arbook/app.css.
BLUE, TEAL, PURPLE, RED, ORANGE, GREEN, AMBER, GREY, BLACK = (
    "blue", "teal", "purple", "red", "orange", "green", "amber", "grey", "black")
COLOURS = frozenset({BLUE, TEAL, PURPLE, RED, ORANGE, GREEN, AMBER, GREY, BLACK})


@dataclass(frozen=True)
class StatusInfo:
    value: str
    label: str
    colour: str  # a CSS class suffix: badge--<colour>, defined in static/arbook/app.css
    in_aging: str = ""  # invoice states: "yes", "no", or "apart"
    meaning: str = ""  # shown as the badge's title when set (the invoice states)


@dataclass(frozen=True)
class Kind:
    """One stateful thing: its choices and, per value, what a badge shows."""

    name: str
    choices: type[models.TextChoices]
    states: Mapping[str, StatusInfo]  # in the order of `choices`
    fallback: str  # the colour of a value this kind does not know

    def info(self, value) -> StatusInfo:
        """The entry of `value`; an unknown one shows as itself ("?" when empty)."""
        try:
            return self.states[value]
        except (KeyError, TypeError):
            text = str(value) if value not in (None, "") else "?"
            return StatusInfo(text, text, self.fallback)

    def label(self, value) -> str:
        return self.info(value).label

    def colour(self, value) -> str:
        return self.info(value).colour


#: Every kind by name, in the order they are registered.
KINDS: dict[str, Kind] = {}


def register(name: str, choices: type[models.TextChoices], colours: Mapping[str, str], *, fallback: str = GREY,
             in_aging: Mapping[str, str] | None = None, meanings: Mapping[str, str] | None = None) -> Kind:
    """Add a kind: `colours` (and `in_aging` / `meanings` when given) keyed by the members of `choices`."""
    values = list(choices.values)
    for what, table in (("colours", colours), ("in_aging", in_aging), ("meanings", meanings)):
        if table is not None and set(table) != set(values):
            raise ValueError(f"status kind {name!r}: {what} must name exactly the values of {choices.__name__} "
                             f"(missing {sorted(set(values) - set(table))}, extra {sorted(set(table) - set(values))})")
    bad = sorted({c for c in (*colours.values(), fallback) if c not in COLOURS})
    if bad:
        raise ValueError(f"status kind {name!r}: colours {bad} have no badge class in static/arbook/app.css")
    if name in KINDS:
        raise ValueError(f"status kind {name!r} is registered twice")
    states = {
        member.value: StatusInfo(member.value, str(member.label), colours[member.value],
                                 (in_aging or {}).get(member.value, ""), (meanings or {}).get(member.value, ""))
        for member in choices
    }
    kind = Kind(name=name, choices=choices, states=MappingProxyType(states), fallback=fallback)
    KINDS[name] = kind
    return kind


# -- invoices: the normalized payment states (DESIGN.md) ------------------------------------

class InvoiceStatus(models.TextChoices):
    DRAFT = st.DRAFT, "Draft"
    OPEN = st.OPEN, "Open"
    PARTIALLY_PAID = st.PARTIALLY_PAID, "Partially paid"
    PROCESSING = st.PROCESSING, "Processing"
    FAILED = st.FAILED, "Failed"
    CHARGED_BACK = st.CHARGED_BACK, "Charged back"
    PAID = st.PAID, "Paid"
    EXPIRED = st.EXPIRED, "Expired"
    CANCELLED = st.CANCELLED, "Cancelled"
    UNKNOWN = st.UNKNOWN, "Unknown"


_I = InvoiceStatus
INVOICE = register(
    "invoice", InvoiceStatus, fallback=BLACK,
    colours={_I.DRAFT: GREY, _I.OPEN: BLUE, _I.PARTIALLY_PAID: TEAL, _I.PROCESSING: PURPLE, _I.FAILED: RED,
             _I.CHARGED_BACK: ORANGE, _I.PAID: GREEN, _I.EXPIRED: AMBER, _I.CANCELLED: GREY, _I.UNKNOWN: BLACK},
    in_aging={_I.DRAFT: "no", _I.OPEN: "yes", _I.PARTIALLY_PAID: "yes", _I.PROCESSING: "yes", _I.FAILED: "yes",
              _I.CHARGED_BACK: "yes", _I.PAID: "no", _I.EXPIRED: "apart", _I.CANCELLED: "no",
              _I.UNKNOWN: "apart"},
    meanings={
        _I.DRAFT: "not yet a receivable (draft, proforma)",
        _I.OPEN: "issued, unpaid",
        _I.PARTIALLY_PAID: "some paid, some still owed",
        _I.PROCESSING: "a payment is scheduled or in progress",
        _I.FAILED: "a payment attempt failed; still owed",
        _I.CHARGED_BACK: "money was reversed; owed again",
        _I.PAID: "settled in full",
        _I.EXPIRED: "the payment link/VA expired unpaid",
        _I.CANCELLED: "voided",
        _I.UNKNOWN: "a provider value arbook does not know",
    },
)
#: The invoice states by value (label, colour, whether it ages, meaning).
STATUSES: Mapping[str, StatusInfo] = INVOICE.states
assert tuple(STATUSES) == st.ALL
assert tuple(v for v, i in STATUSES.items() if i.in_aging == "yes") == st.RECEIVABLE
assert tuple(v for v, i in STATUSES.items() if i.in_aging == "apart") == st.APART

RECEIVABLE = st.RECEIVABLE
APART = st.APART


# -- sync runs ------------------------------------------------------------------------------

class SyncRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"  # another sync of the credential held its lock


SYNC_RUN = register("sync_run", SyncRunStatus, colours={
    SyncRunStatus.RUNNING: BLUE, SyncRunStatus.SUCCEEDED: GREEN, SyncRunStatus.FAILED: RED,
    SyncRunStatus.SKIPPED: GREY})


# -- Espay batches, their calls (chunks) and lines ------------------------------------------

class EspayBatchStatus(models.TextChoices):
    INVALID = "invalid", "Has problems"  # row problems: cannot be sent; upload a fixed file
    READY = "ready", "Ready to send"  # validated; waits for the user's confirmation
    QUEUED = "queued", "Queued"  # confirmed; the send task is enqueued
    SENDING = "sending", "Sending"
    DONE = "done", "Sent"  # every line listed at Espay
    PARTIAL = "partial", "Partly sent"  # finished; some lines failed or are unknown
    FAILED = "failed", "Failed"  # finished; no line listed
    DISCARDED = "discarded", "Discarded"


_B = EspayBatchStatus
ESPAY_BATCH = register("espay_batch", EspayBatchStatus, colours={
    _B.INVALID: RED, _B.READY: BLUE, _B.QUEUED: PURPLE, _B.SENDING: PURPLE, _B.DONE: GREEN, _B.PARTIAL: AMBER,
    _B.FAILED: RED, _B.DISCARDED: GREY})


class EspayChunkStatus(models.TextChoices):
    PLANNED = "planned", "Planned"  # rq_uuid stored, not called yet
    SENDING = "sending", "Sending"  # a call is (or was, if the worker died) in flight
    UNKNOWN = "unknown", "Outcome unknown"  # no answer; resend with the same rq_uuid
    DONE = "done", "Answered"  # per-line results recorded
    REFUSED = "refused", "Refused"  # request-level refusal: nothing listed
    SKIPPED = "skipped", "Not sent"  # an earlier chunk stopped the round


_C = EspayChunkStatus
ESPAY_CHUNK = register("espay_chunk", EspayChunkStatus, colours={
    _C.PLANNED: GREY, _C.SENDING: PURPLE, _C.UNKNOWN: ORANGE, _C.DONE: GREEN, _C.REFUSED: RED, _C.SKIPPED: GREY})


class EspayLineStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    SENT = "sent", "Sent"
    ALREADY_LISTED = "already_listed", "Sent (confirmed on retry)"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Outcome unknown"
    SUPERSEDED = "superseded", "Sent by another batch"


_L = EspayLineStatus
ESPAY_LINE = register("espay_line", EspayLineStatus, colours={
    _L.PENDING: GREY, _L.SENT: GREEN, _L.ALREADY_LISTED: TEAL, _L.FAILED: RED, _L.UNKNOWN: ORANGE,
    _L.SUPERSEDED: GREY})


# -- credential freshness (derived, not stored: arbook.selectors.overview) -------------------

class CredentialFreshness(models.TextChoices):
    OK = "ok", "fresh"  # a successful sync within twice the sync interval
    STALE = "stale", "stale"  # no successful sync for longer
    NEVER = "never", "never synced"
    NEEDS_ATTENTION = "needs_attention", "needs attention"  # the gateway refused the credential
    INACTIVE = "inactive", "inactive"
    NO_LIST_API = "no_list_api", "no list API"  # invoices come from uploads and notifications


_F = CredentialFreshness
FRESHNESS = register("freshness", CredentialFreshness, colours={
    _F.OK: GREEN, _F.STALE: AMBER, _F.NEVER: GREY, _F.NEEDS_ATTENTION: RED, _F.INACTIVE: GREY, _F.NO_LIST_API: GREY})


# -- payment notifications ------------------------------------------------------------------

class NotificationVerification(models.TextChoices):
    VALID = "valid", "Verified"
    BAD_SIGNATURE = "bad_signature", "Bad signature or token"
    UNKNOWN_TOKEN = "unknown_token", "Unknown hook URL"
    MALFORMED = "malformed", "Malformed body"
    OVERSIZE = "oversize", "Body too large"
    NOT_CONFIGURED = "not_configured", "Credential cannot verify"
    UNSUPPORTED = "unsupported", "Provider sends no notifications"


_V = NotificationVerification
NOTIFICATION_VERIFICATION = register("notification_verification", NotificationVerification, colours={
    _V.VALID: GREEN, _V.BAD_SIGNATURE: RED, _V.UNKNOWN_TOKEN: RED, _V.MALFORMED: RED, _V.OVERSIZE: RED,
    _V.NOT_CONFIGURED: AMBER, _V.UNSUPPORTED: GREY})


class NotificationOutcome(models.TextChoices):
    QUEUED = "queued", "Queued"  # verified and stored; the apply task will run
    APPLIED = "applied", "Applied"  # changed the invoice (an InvoiceEvent points here)
    UNCHANGED = "unchanged", "No change"  # the invoice already was in that state
    DUPLICATE = "duplicate", "Duplicate"  # the same provider event was applied before
    STALE = "stale", "Older than the invoice's state"
    PENDING = "pending", "Waiting for the invoice"  # not synced yet; applied when it appears
    REJECTED = "rejected", "Rejected"  # not verified: never applied
    FAILED = "failed", "Failed"  # the apply raised; see outcome_reason
    #: Verified, but a fact it claims is not covered by its signature and the provider's own
    #: API did not confirm it (or it would break a money rule): stored, not applied.
    NEEDS_REVIEW = "needs_review", "Needs review"


_O = NotificationOutcome
NOTIFICATION_OUTCOME = register("notification_outcome", NotificationOutcome, colours={
    _O.QUEUED: PURPLE, _O.APPLIED: GREEN, _O.UNCHANGED: GREY, _O.DUPLICATE: GREY, _O.STALE: GREY, _O.PENDING: BLUE,
    _O.REJECTED: RED, _O.FAILED: RED, _O.NEEDS_REVIEW: AMBER})


# -- promises to pay (arbook.models.Promise) ------------------------------------------------

class PromiseState(models.TextChoices):
    OPEN = "open", "Open"  # its day is not over and the payments do not cover it yet
    KEPT = "kept", "Kept"  # payments covering it arrived by its day
    PARTLY_KEPT = "partly_kept", "Partly kept"  # its day is over with some of it paid
    BROKEN = "broken", "Broken"  # its day is over with nothing paid
    CANCELLED = "cancelled", "Cancelled"  # withdrawn by staff


_P = PromiseState
PROMISE = register("promise", PromiseState, colours={
    _P.OPEN: BLUE, _P.KEPT: GREEN, _P.PARTLY_KEPT: AMBER, _P.BROKEN: RED, _P.CANCELLED: GREY})


# -- reminders (arbook.models.ReminderMessage) ----------------------------------------------

class ReminderState(models.TextChoices):
    QUEUED = "queued", "Queued"  # written, not handed to SMTP yet (or SMTP refused the connection: retried)
    UNKNOWN = "unknown", "Outcome unknown"  # handed to SMTP, no answer recorded: never resent by itself
    SENT = "sent", "Sent"  # SMTP accepted it
    FAILED = "failed", "Failed"  # refused for good (the address, or too many attempts)


_R = ReminderState
REMINDER = register("reminder", ReminderState, colours={
    _R.QUEUED: BLUE, _R.UNKNOWN: ORANGE, _R.SENT: GREEN, _R.FAILED: RED})
