"""Sync runs: one sync of one credential, with its counts and outcome."""
from __future__ import annotations

from django.db import models

from arbook.status import SyncRunStatus

from .merchants import GatewayCredential


class SyncRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Sync now"
        ADMIN = "admin", "Admin action"
        COMMAND = "command", "Command line"
        NOTIFICATION = "notification", "Notification"
        REMINDER = "reminder", "Re-check before a reminder"

    #: Values, labels and badge colours: arbook.status (the status registry).
    Status = SyncRunStatus

    credential = models.ForeignKey(GatewayCredential, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    full = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    #: Stored unsettled invoices that the full read did not return, looked up one by one.
    lookups = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Readable; never contains a secret.")
    #: transient / auth / bad_response / config / internal: what the task and the pages act on.
    error_kind = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["credential", "-started_at"], name="syncrun_cred_started"),
                   models.Index(fields=["status", "-started_at"], name="syncrun_status_started")]

    def __str__(self) -> str:
        return f"{self.credential} @ {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def duration(self):
        return (self.finished_at - self.started_at) if self.finished_at else None


class SyncSeen(models.Model):
    """External ids seen by an unfinished full read, so that when it completes the invoices it
    did not return can be flagged missing. Rows live only while a full pass runs (it may span
    several interrupted runs); they are narrow and never indexed beyond the pass key, so a
    no-change resync writes far less than rewriting every invoice row would."""

    credential_id = models.BigIntegerField()
    pass_id = models.BigIntegerField()
    external_id = models.CharField(max_length=128)

    class Meta:
        indexes = [models.Index(fields=["credential_id", "pass_id"], name="syncseen_pass")]
