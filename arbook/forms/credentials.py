"""The gateway credential form of the admin: secrets are write-only (never shown back)."""
from __future__ import annotations

from django import forms

import gateways
from arbook.crypto import SecretsUnavailable
from arbook.models import GatewayCredential
from arbook.providers import ALL_SECRET_KEYS, SECRET_HELP, SECRET_KEYS


def _secret_field_name(key: str) -> str:
    return f"secret__{key}"


def _secret_field(key: str) -> forms.CharField:
    used_by = ", ".join(p for p, keys in SECRET_KEYS.items() if key in keys)
    return forms.CharField(
        label=f"Secret: {key}", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=f"{SECRET_HELP.get(key, '')} ({used_by}).",
    )


#: One write-only field per secret key, declared on a base form so the admin knows them up front.
SecretFields = type("SecretFields", (forms.Form,), {_secret_field_name(k): _secret_field(k) for k in ALL_SECRET_KEYS})


class GatewayCredentialForm(SecretFields, forms.ModelForm):
    """Secrets are write-only: the form says which keys are set, never their values.

    A blank field keeps the stored value; "Remove keys" deletes the ticked ones. The provider's
    required keys are checked by the gateway client itself, so the rule lives in one place.
    """

    remove_keys = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=(),
        help_text="Tick a stored key to delete it.",
    )

    base_url = forms.URLField(required=False, assume_scheme="https", max_length=500,
                              help_text=GatewayCredential._meta.get_field("base_url").help_text)

    class Meta:
        model = GatewayCredential
        fields = ["merchant", "provider", "label", "base_url", "options", "is_active",
                  "sync_interval_minutes", "full_sync_interval_hours"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored: dict[str, str] = {}
        self.stored_error = ""
        if self.instance.pk and self.instance.secrets_encrypted:
            try:
                self.stored = self.instance.secrets
            except SecretsUnavailable as exc:
                self.stored_error = str(exc)
        for key in ALL_SECRET_KEYS:
            field = self.fields[_secret_field_name(key)]
            state = "set — leave blank to keep" if key in self.stored else "not set"
            field.help_text = f"{field.help_text} Currently: {state}."
        self.fields["remove_keys"].choices = [(k, k) for k in sorted(self.stored)]

    @property
    def secret_field_names(self) -> list[str]:
        return [_secret_field_name(k) for k in ALL_SECRET_KEYS]

    def merged_secrets(self) -> dict[str, str]:
        merged = dict(self.stored)
        for key in self.cleaned_data.get("remove_keys") or ():
            merged.pop(key, None)
        for key in ALL_SECRET_KEYS:
            value = self.cleaned_data.get(_secret_field_name(key))
            if value:
                merged[key] = value
        provider = self.cleaned_data.get("provider")
        allowed = set(SECRET_KEYS.get(provider, ()))
        return {k: v for k, v in merged.items() if k in allowed}

    def clean(self):
        cleaned = super().clean()
        provider = cleaned.get("provider")
        if self.stored_error and not any(cleaned.get(n) for n in self.secret_field_names):
            raise forms.ValidationError(self.stored_error)
        if provider:
            extra = [k for k in ALL_SECRET_KEYS
                     if cleaned.get(_secret_field_name(k)) and k not in SECRET_KEYS.get(provider, ())]
            if extra:
                raise forms.ValidationError(
                    f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not used by "
                    f"{dict(GatewayCredential._meta.get_field('provider').choices)[provider]}; "
                    f"its keys are: {', '.join(SECRET_KEYS[provider])}."
                )
            try:
                gateways.get_client(provider, base_url=cleaned.get("base_url") or "",
                                    secrets=self.merged_secrets(), options=cleaned.get("options") or {})
            except gateways.ConfigurationError as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned

    def save(self, commit=True):
        instance = super().save(commit=False)
        merged = self.merged_secrets()
        if merged != self.stored or not instance.secrets_encrypted:
            instance.secrets = merged
        elif self.changed_data:
            instance.needs_attention = False  # a changed credential deserves a fresh try
        if commit:
            instance.save()
            self.save_m2m()
        return instance
