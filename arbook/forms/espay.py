"""The Espay batch pages' input: the upload form (which credential of the user's merchants, which
file) and the results page's line filter (`?show=`).

The form checks only what needs no reading (a credential the user may use, a file at all, its
size); the content is validated by `arbook.services.espay_batch.espay_batch_create`.
"""
from __future__ import annotations

from django import forms

from arbook.params import clip
from arbook.selectors.espay import LINE_FILTERS, espay_credentials
from arbook.services.espay_files import ALLOWED_EXTENSIONS, MAX_FILE_BYTES


class CredentialChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        comm = (obj.options or {}).get("comm_code") or ""
        label = obj.label or "Espay"
        return f"{obj.merchant.name} — {label}{f' ({comm})' if comm else ''}"


class EspayUploadForm(forms.Form):
    credential = CredentialChoiceField(
        queryset=None, label="Merchant and Espay account", empty_label=None,
        error_messages={"invalid_choice": "Choose one of your merchants' Espay accounts."},
    )
    file = forms.FileField(
        label="Spreadsheet (CSV or XLSX)",
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ALLOWED_EXTENSIONS)}),
        error_messages={"required": "Choose the file to upload.",
                        "empty": "The file is empty."},
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["credential"].queryset = espay_credentials(user=user)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is {MAX_FILE_BYTES // 1024 // 1024} MB "
                "(about 10,000 rows). Split it into smaller files.")
        return upload


def line_filter(show: str | None) -> tuple[str, str]:
    """The line filter `?show=` asks for ("" = all lines) and a note when it names none of them."""
    show = show or ""
    if show in LINE_FILTERS:
        return show, ""
    if not show:
        return "", ""
    return "", f"Unknown line filter “{clip(show)}”: showing all lines (use {', '.join(LINE_FILTERS)})."
