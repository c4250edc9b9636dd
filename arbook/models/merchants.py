"""Merchants (whose receivables are tracked) and their gateway credentials."""
from __future__ import annotations

import secrets as pysecrets
import zoneinfo
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from arbook.crypto import decrypt_json, encrypt_json

PROVIDER_CHOICES = [
    ("faspay", "Faspay Billing"),
    ("xendit", "Xendit"),
    ("munio", "Munio"),
    ("farpay", "FarPay"),
    ("espay", "Espay"),
]


def _timezone_choices():
    return [(z, z) for z in sorted(zoneinfo.available_timezones()) if "/" in z and not z.startswith("Etc/")]


class Merchant(models.Model):
    """A business whose receivables arbook tracks; `members` may see it."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    timezone = models.CharField(max_length=64, default="Asia/Jakarta", choices=_timezone_choices)
    #: ISO 3166 region of the merchant: the default region of a customer phone written without
    #: a country code ("0812…" is an Indonesian mobile for a merchant in ID).
    country = models.CharField(max_length=2, default="ID", db_default="ID",
                               help_text="Two-letter country code; phones without a country code are read in it.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="merchants", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    #: Until when the customers' overdue balances count every invoice that fell due
    #: (`customers_age` moves it on; the worklist says when it last did).
    customers_aged_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: The last day (its own zone) its reminders went out (`arbook.services.reminders`).
    reminders_run_on = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def new_hook_token() -> str:
    return pysecrets.token_urlsafe(32)


class GatewayCredential(models.Model):
    """One connection of a merchant to one provider.

    `secrets` is a dict kept encrypted in `secrets_encrypted` (the column never holds a plain
    value); it is decrypted only when a client is built. `options` holds non-secret settings.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="credentials")
    provider = models.CharField(max_length=16, choices=PROVIDER_CHOICES)
    label = models.CharField(max_length=120, blank=True)
    base_url = models.URLField(
        max_length=500, blank=True,
        help_text="The provider's origin (scheme://host[:port][/prefix]); blank = the documented host.",
    )
    secrets_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(default=dict, blank=True,
                               help_text="Non-secret settings, e.g. Xendit mode/name/connection_name.")
    is_active = models.BooleanField(default=True)
    sync_interval_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1)],
        help_text="How often the scheduler syncs this credential (incremental read).",
    )
    full_sync_interval_hours = models.PositiveIntegerField(
        default=24, validators=[MinValueValidator(1)],
        help_text="How often a full reconciliation runs.",
    )
    #: Unguessable token in this credential's notification URL (/hooks/<provider>/<token>/).
    hook_token = models.CharField(max_length=64, unique=True, default=new_hook_token, editable=False)

    # Last sync state (written by the sync service).
    last_sync_at = models.DateTimeField(null=True, blank=True)
    #: When a sync was last enqueued (the scheduler does not enqueue again while one waits).
    sync_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    needs_attention = models.BooleanField(
        default=False, help_text="Set when the provider refused the credential; cleared when it is changed.")
    sync_state = models.JSONField(default=dict, blank=True, editable=False,
                                  help_text="Resume marker and watermarks of the sync engine.")
    secrets_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: Set while a sync run has written invoices whose customers' balances it has not refreshed yet
    #: (it does so once, at the end of the run); cleared in the same transaction as that refresh.
    #: Readers that rank customers by their stored balances (aging by customer) read the invoices
    #: instead while any credential of the merchant has it set. A run that finds it set (the one
    #: before died) refreshes every customer of the credential.
    customers_pending_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant__name", "provider", "label"]
        indexes = [models.Index(fields=["is_active", "provider"], name="cred_active_provider")]

    def __str__(self) -> str:
        return f"{self.merchant} · {self.get_provider_display()}{' · ' + self.label if self.label else ''}"

    def save(self, *args, **kwargs) -> None:
        """A full save of a stored credential (an admin form) leaves `customers_pending_since` as the
        database has it: a copy loaded before a sync run marked it must not clear it."""
        if self.pk is not None and not self._state.adding and kwargs.get("update_fields") is None \
                and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [f.name for f in self._meta.concrete_fields
                                       if not f.primary_key and f.name != "customers_pending_since"]
        super().save(*args, **kwargs)

    @property
    def secrets(self) -> dict[str, Any]:
        """The decrypted secrets; raises `arbook.crypto.SecretsUnavailable` with a safe message."""
        return decrypt_json(self.secrets_encrypted)

    @secrets.setter
    def secrets(self, value: dict[str, Any]) -> None:
        cleaned = {k: v for k, v in (value or {}).items() if v not in (None, "")}
        self.secrets_encrypted = encrypt_json(cleaned)
        self.secrets_updated_at = timezone.now()
        # A changed credential deserves a fresh try: the auth failure belonged to the old one.
        self.needs_attention = False

    @property
    def secret_keys_set(self) -> list[str]:
        """Which keys are stored (never their values); empty when they cannot be decrypted."""
        try:
            return sorted(self.secrets)
        except Exception:  # SecretsUnavailable: shown as such by the caller
            return []

    def client_kwargs(self) -> dict[str, Any]:
        """The (base_url, secrets, options) a `gateways` client is built from."""
        return {"base_url": self.base_url, "secrets": self.secrets, "options": dict(self.options or {})}
