from django import forms
from django.utils.translation import gettext_lazy as _

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class ImportKeysForm(forms.Form):
    keys = forms.CharField(
        label=_("Paste keys"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_("One key per line. Blank lines are skipped, surrounding spaces trimmed."),
    )
    file = forms.FileField(
        label=_("…or upload a .txt or .csv file"),
        required=False,
        help_text=_("UTF-8, one key per line (for .csv, the first column), at most 20 MB."),
    )

    def clean_file(self) -> object:
        upload = self.cleaned_data.get("file")
        if upload is None:
            return None
        name = upload.name or ""
        if not name.lower().endswith((".txt", ".csv")):
            raise forms.ValidationError(_("Upload a .txt or .csv file."))
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 20 MB."))
        return upload

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not data.get("keys") and not data.get("file"):
            raise forms.ValidationError(_("Paste keys or choose a file."))
        if data.get("keys") and data.get("file"):
            raise forms.ValidationError(_("Paste keys or choose a file, not both."))
        return data
