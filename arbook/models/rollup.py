"""The aging rollup: what the invoices that age owe, summed per day key (PostgreSQL only).

Kept by the database, not by Python: statement-level triggers on `arbook_invoice` (migration
`0023_aging_rollup`) append the grouped difference of every INSERT, UPDATE and DELETE as new rows
in the writing statement's own transaction, so no writer (the sync's merge, a notification, the
admin, a COPY) can leave it behind, and none waits for another (no row is updated in place). A
key may so have several rows: readers sum them, and `arbook.services.aging_rollup.rollups_compact`
(a Celery beat entry) folds them into one. `arbook.selectors.aging_rollup` reads it; the test
`tests/aging/test_rollup.py` proves it equals a recount after any sequence of writes, and the
suite's `_aging_rollup_exact` fixture after every test.

One row per (zone, merchant, credential, provider, currency, status, credit flag, due day, issue
day, existence day, latest-change day) with the sum of `outstanding` and the count. Days are local
dates in `zone`: the merchant's own zone and the server's (`arbook_server_zone()`), so every zone
the aging report counts days in (`arbook.forms.aging.report_zone`) has its rows. A day the invoice
does not have is a sentinel that compares the way the report reads it (every as-of day lies within
`arbook.params`' 1900–2999): no due or issue date is 9999-12-31 (`NO_DAY`: never late, `current`),
no change is 0001-01-01 (`NEVER_CHANGED`: unchanged since any day).
"""
from __future__ import annotations

import datetime as dt

from django.db import models

from .invoices import MONEY

#: A sum of many `outstanding` values: six more digits than one.
ROLLUP_SUM = {"max_digits": MONEY["max_digits"] + 6, "decimal_places": MONEY["decimal_places"]}


NO_DAY = dt.date(9999, 12, 31)
NEVER_CHANGED = dt.date(1, 1, 1)


class AgingRollup(models.Model):
    """The invoices in an aging row as they stand now (`row_for(status, outstanding < 0, False)`
    is not None), summed per key."""

    zone = models.CharField(max_length=64)
    # Plain ids, not foreign keys: the rows are the triggers' to delete (a cascade deleting them
    # before the invoices' own DELETE trigger ran would let it subtract from nothing).
    merchant_id = models.BigIntegerField()
    credential_id = models.BigIntegerField()
    provider = models.CharField(max_length=16)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16)
    #: outstanding < 0 (an unapplied credit, in `CREDIT_STATES`).
    credit = models.BooleanField()
    due_day = models.DateField()  # NO_DAY: no due date
    issued_day = models.DateField()  # NO_DAY: no issue date
    #: The day it exists from: the issue day, else the day first seen.
    exist_day = models.DateField()
    changed_day = models.DateField()  # NEVER_CHANGED: no event or payment yet (`Invoice.changed_at`)
    amount = models.DecimalField(**ROLLUP_SUM)  # sum of outstanding (unknown ones count as nothing)
    count = models.BigIntegerField()
    #: A write's difference, not yet folded into its key's row (`rollups_compact`): a key may have
    #: several rows, and every reader sums them.
    delta = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["zone", "merchant_id", "credential_id", "provider", "currency", "status", "credit",
                                 "due_day", "issued_day", "exist_day", "changed_day"], name="aging_rollup_key"),
            models.Index(fields=["id"], condition=models.Q(delta=True), name="aging_rollup_deltas"),
        ]

    def __str__(self) -> str:
        return f"{self.zone} m{self.merchant_id} {self.currency} {self.status}: {self.amount} × {self.count}"


class DayRollup(models.Model):
    """Per merchant, gateway account, currency and UTC day, the overview's moving windows: what was collected
    (`kind` collected: by paid day, charged-back invoices left out) and what was sold (`sales`: by
    issue day, drafts and cancelled ones left out), kept by the same triggers as `AgingRollup`.
    A window's whole days are read here, its two partial edge days from the invoices."""

    class Kind(models.TextChoices):
        COLLECTED = "collected"
        SALES = "sales"

    merchant_id = models.BigIntegerField()
    #: Per account, like `AgingRollup`: two accounts' syncs never write the same row.
    credential_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=9, choices=Kind.choices)
    day = models.DateField()  # the UTC day of paid_at (collected) or issued_at (sales)
    #: collected: sum of coalesce(paid_amount, amount); sales: of coalesce(amount, outstanding + paid_amount).
    amount = models.DecimalField(**ROLLUP_SUM)
    count = models.BigIntegerField()
    #: How many of `count` had an amount at all (the overview shows the unknown ones apart).
    known = models.BigIntegerField()
    delta = models.BooleanField(default=False)  # as `AgingRollup.delta`

    class Meta:
        indexes = [
            models.Index(fields=["merchant_id", "credential_id", "currency", "kind", "day"], name="day_rollup_key"),
            models.Index(fields=["id"], condition=models.Q(delta=True), name="day_rollup_deltas"),
        ]

    def __str__(self) -> str:
        return f"m{self.merchant_id} {self.currency} {self.kind} {self.day}: {self.amount} × {self.count}"
