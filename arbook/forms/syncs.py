"""The sync-run list's filters: which gateway account, which run status."""
from __future__ import annotations

from django import forms

from arbook.models import GatewayCredential, SyncRun


class RunFilterForm(forms.Form):
    credential = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Gateway account")
    status = forms.ChoiceField(required=False, label="Status", choices=[("", "Any status"), *SyncRun.Status.choices])

    def __init__(self, data, *, credentials):
        super().__init__(data)
        self.fields["credential"].choices = [("", "All accounts")] + [(str(c.pk), credential_label(c)) for c in credentials]


def credential_label(c: GatewayCredential) -> str:
    """"Merchant · Gateway · label", how a credential is named on the sync pages."""
    return " · ".join(x for x in (c.merchant.name, c.get_provider_display(), c.label) if x)
