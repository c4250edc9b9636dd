"""The sync-run list's query string: which gateway account, which run status, which page.

A value that is malformed is left out and `notices()` says so (never a 500)."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from arbook.models import GatewayCredential, SyncRun
from arbook.selectors.syncs import decode_cursor

CURSOR_MESSAGE = "That page link is malformed; showing the newest runs."


class RunCursorField(forms.Field):
    """A page cursor of the syncs list (`decode_cursor`), taken as it came (no stripping)."""

    def clean(self, value):
        if not value:
            return None
        cursor = decode_cursor(value)
        if cursor is None:
            raise ValidationError(CURSOR_MESSAGE, code="cursor")
        return cursor


class RunFilterForm(forms.Form):
    credential = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Gateway account")
    status = forms.ChoiceField(required=False, label="Status", choices=[("", "Any status"), *SyncRun.Status.choices])
    after = RunCursorField(required=False, label="Page")

    def __init__(self, data, *, credentials):
        super().__init__(data)
        self.fields["credential"].choices = [("", "All accounts")] + [(str(c.pk), credential_label(c)) for c in credentials]

    def notices(self) -> list[str]:
        """One line per value left out: the filters by label, a bad page link as it is."""
        return [" ".join(errors) if name == "after" else
                f"{self.fields[name].label}: {' '.join(errors)} This filter was not applied."
                for name, errors in self.errors.items()]

    def selection(self) -> dict:
        """`credential_id`, `status` and `after` (the cursor), each None when absent or left out."""
        data = self.cleaned_data if self.is_valid() else getattr(self, "cleaned_data", {})
        return {"credential_id": data.get("credential"), "status": data.get("status") or None,
                "after": data.get("after")}


def credential_label(c: GatewayCredential) -> str:
    """"Merchant · Gateway · label", how a credential is named on the sync pages."""
    return " · ".join(x for x in (c.merchant.name, c.get_provider_display(), c.label) if x)
