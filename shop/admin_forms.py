from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from shop import uploads


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
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = _(
            "UTF-8, one key per line (for .csv, the first column), at most %(mb).1f MB."
        ) % {"mb": settings.KEY_IMPORT_MAX_BYTES / (1024 * 1024)}

    def clean_file(self) -> UploadedFile | None:
        """The shared upload check (``shop.uploads``): not empty, at most ``KEY_IMPORT_MAX_BYTES``,
        and UTF-8 text by its content, whatever the name or the browser's Content-Type say."""
        upload = self.cleaned_data.get("file")
        if upload is None:
            return None
        name = upload.name or ""
        if not name.lower().endswith((".txt", ".csv")):
            raise forms.ValidationError(_("Upload a .txt or .csv file."), code="bad_extension")
        try:
            uploads.validate_upload(
                upload, allowed=(uploads.TEXT,), max_bytes=settings.KEY_IMPORT_MAX_BYTES
            )
        except ValidationError as exc:
            if exc.code == "bad_type":
                raise forms.ValidationError(
                    _("The file is not UTF-8 text. Save it as UTF-8 text, one key per line."),
                    code="bad_type",
                ) from None
            raise
        return upload

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not data.get("keys") and not data.get("file") and "file" not in self.errors:
            raise forms.ValidationError(_("Paste keys or choose a file."))
        if data.get("keys") and data.get("file"):
            raise forms.ValidationError(_("Paste keys or choose a file, not both."))
        return data
