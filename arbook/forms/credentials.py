"""The gateway credential form of the admin, built from the provider's own declaration.

`credential_form(provider)` is a form with that provider's secret and option fields only (from
its client's `secret_fields` / `option_fields`, `gateways.fields`). Secrets are write-only: never
shown back, a blank field keeps the stored value, "Remove keys" deletes the ticked ones, and keys
the provider does not declare are dropped on save (nothing can read them). Options are typed
fields; a blank one means the client's default (the key is not stored). Stored options the
declaration does not know are kept as they are, listed, and deleted only when ticked: they may be
read elsewhere or by a newer client, and losing them silently would change a sync. Which
combination of secrets is required stays the client's rule: `clean` builds the client.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.validators import RegexValidator

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.models import GatewayCredential
from gateways.fields import CHOICE, INT, NUMBER, Field

SECRET_PREFIX, OPTION_PREFIX = "secret__", "option__"


def provider_label(provider: str) -> str:
    return dict(GatewayCredential._meta.get_field("provider").choices).get(provider, provider)


def declared(provider: str | None) -> tuple[tuple[Field, ...], tuple[Field, ...]]:
    """(secret fields, option fields) the provider's client declares; none for no provider."""
    if provider not in gateways.PROVIDERS:
        return (), ()
    client = gateways.client_class(provider)
    return client.secret_fields, client.option_fields


def unknown_options(provider: str | None, options: Mapping[str, Any] | None) -> list[str]:
    """Stored option keys the provider does not declare (kept unless ticked for removal)."""
    known = {f.name for f in declared(provider)[1]}
    return sorted(k for k in (options or {}) if k not in known)


def required_text(provider: str) -> str:
    """The client's rule of required secrets, in words (shown, not enforced, here)."""
    alternatives = gateways.client_class(provider).required_secrets
    return " or ".join(" + ".join(names) for names in alternatives)


def _secret_field(field: Field) -> forms.CharField:
    return forms.CharField(
        label=field.name, required=False, strip=True, help_text=field.help,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def _option_field(field: Field) -> forms.Field:
    """A typed form field; its bounds are the declaration's, so a bad value is a form error."""
    default = "" if field.default is None else str(field.default)
    help_text = field.help + (f" Default: {default}." if default else "")
    common = {"label": field.name, "required": field.required, "help_text": help_text}
    placeholder = {"placeholder": default} if default else {}
    if field.kind == INT:
        return forms.IntegerField(min_value=field.minimum, widget=forms.NumberInput(attrs=placeholder), **common)
    if field.kind == NUMBER:
        return forms.FloatField(min_value=field.minimum, widget=forms.NumberInput(attrs=placeholder), **common)
    if field.kind == CHOICE:
        blank = [] if field.required else [("", f"default ({default})" if default else "—")]
        return forms.ChoiceField(choices=blank + [(c, c) for c in field.choices], **common)
    validators = [RegexValidator(f"^(?:{field.pattern})$", f"Must be {field.requirement}.")] if field.pattern else []
    return forms.CharField(validators=validators, widget=forms.TextInput(attrs=placeholder), **common)


class GatewayCredentialForm(forms.ModelForm):
    """The fields every credential has; `credential_form(provider)` adds the provider's own."""

    provider_name: str | None = None

    remove_keys = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=(),
        help_text="Tick a stored key to delete it.",
    )
    remove_options = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=(), label="Other stored options",
        help_text="Options this provider does not declare are kept as they are; tick one to delete it.",
    )
    base_url = forms.URLField(required=False, assume_scheme="https", max_length=500,
                              help_text=GatewayCredential._meta.get_field("base_url").help_text)

    class Meta:
        model = GatewayCredential
        fields = ["merchant", "provider", "label", "base_url", "is_active",
                  "sync_interval_minutes", "full_sync_interval_hours"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.secret_fields, self.option_fields = declared(self.provider_name)
        self.stored: dict[str, str] = {}
        self.stored_error = ""
        if self.instance.pk and self.instance.secrets_encrypted:
            try:
                self.stored = self.instance.secrets
            except SecretsUnavailable as exc:
                self.stored_error = str(exc)
        self.stored_options = dict(self.instance.options or {}) if self.instance.pk else {}
        if self.provider_name:
            self.initial["provider"] = self.provider_name
            if "base_url" in self.fields:
                default = gateways.client_class(self.provider_name).default_base_url
                self.fields["base_url"].help_text += f" {provider_label(self.provider_name)}: {default}."
        for field in self.secret_fields:
            if (bound := self.fields.get(SECRET_PREFIX + field.name)) is not None:
                state = "set — leave blank to keep" if field.name in self.stored else "not set"
                bound.help_text = f"{field.help} Currently: {state}."
        for field in self.option_fields:
            if field.name in self.stored_options:
                self.initial[OPTION_PREFIX + field.name] = self.stored_options[field.name]
        if "remove_keys" in self.fields:
            self.fields["remove_keys"].choices = [(k, k) for k in sorted(self.stored)]
        if "remove_options" in self.fields:
            self.fields["remove_options"].choices = [
                (k, f"{k} = {json.dumps(self.stored_options[k], default=str)[:80]}")
                for k in unknown_options(self.provider_name, self.stored_options)]

    @property
    def secret_field_names(self) -> list[str]:
        return [SECRET_PREFIX + f.name for f in self.secret_fields]

    def merged_secrets(self) -> dict[str, str]:
        """The stored secrets with the typed ones over them, only the keys the provider declares."""
        merged = dict(self.stored)
        for key in self.cleaned_data.get("remove_keys") or ():
            merged.pop(key, None)
        for field in self.secret_fields:
            if value := self.cleaned_data.get(SECRET_PREFIX + field.name):
                merged[field.name] = value
        allowed = {f.name for f in self.secret_fields}
        return {k: v for k, v in merged.items() if k in allowed}

    def merged_options(self) -> dict[str, Any]:
        """The declared options as typed on the form (blank = not stored: the default), over the
        stored options nobody declares (minus the ticked ones)."""
        removed = set(self.cleaned_data.get("remove_options") or ())
        merged = {k: self.stored_options[k] for k in unknown_options(self.provider_name, self.stored_options)
                  if k not in removed}
        for field in self.option_fields:
            value = self.cleaned_data.get(OPTION_PREFIX + field.name)
            if value not in (None, ""):
                merged[field.name] = value
        return merged

    def clean(self):
        cleaned = super().clean()
        provider = cleaned.get("provider")
        if self.stored_error and not any(cleaned.get(n) for n in self.secret_field_names):
            raise forms.ValidationError(self.stored_error)
        if provider and provider != self.provider_name:  # never save secrets checked for no provider
            raise forms.ValidationError(f"Fill in the secrets and options of {provider_label(provider)}.")
        if provider:
            extra = [k.removeprefix(SECRET_PREFIX) for k, v in self.data.items()
                     if k.startswith(SECRET_PREFIX) and k not in self.fields and v]
            if extra:
                raise forms.ValidationError(
                    f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not used by "
                    f"{provider_label(provider)}; its keys are: {', '.join(f.name for f in self.secret_fields)}."
                )
            if not self.errors:  # a field error already says what is wrong with an option
                try:
                    gateways.get_client(provider, base_url=cleaned.get("base_url") or "",
                                        secrets=self.merged_secrets(), options=self.merged_options())
                except gateways.ConfigurationError as exc:
                    raise forms.ValidationError(str(exc)) from None
        return cleaned

    def unsaved_credential(self) -> GatewayCredential:
        """The credential as the (valid) form describes it, not saved: what Test connection checks."""
        credential = self.instance
        credential.options = self.merged_options()
        credential.secrets = self.merged_secrets()
        return credential

    def save(self, commit=True):
        instance = super().save(commit=False)
        instance.options = self.merged_options()
        merged = self.merged_secrets()
        if merged != self.stored or not instance.secrets_encrypted:
            instance.secrets = merged
        elif self.changed_data:
            instance.needs_attention = False  # a changed credential deserves a fresh try
        if commit:
            instance.save()
            self.save_m2m()
        return instance

    def error_text(self) -> str:
        """Every error of a bound form on one line (for Test connection; no value is echoed)."""
        parts = []
        for name, errors in self.errors.items():
            label = self.fields[name].label or name if name in self.fields else ""
            parts.append(f"{label}: {' '.join(errors)}" if label else " ".join(errors))
        return "; ".join(parts)


@functools.cache
def credential_form(provider: str | None) -> type[GatewayCredentialForm]:
    """The form for one provider (its declared secrets and options); the bare form for none."""
    secret_fields, option_fields = declared(provider)
    if not (secret_fields or option_fields):
        return GatewayCredentialForm
    attrs: dict[str, Any] = {"provider_name": provider}
    attrs.update({SECRET_PREFIX + f.name: _secret_field(f) for f in secret_fields})
    attrs.update({OPTION_PREFIX + f.name: _option_field(f) for f in option_fields})
    return type(f"{provider.title()}CredentialForm", (GatewayCredentialForm,), attrs)
