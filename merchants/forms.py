"""Forms of merchant admission: the public application and the staff's decision."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import UsernameField
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from merchants import selectors, services


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (Django's documented recipe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".png,.jpg,.jpeg,.pdf"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class ApplicationForm(forms.Form):
    username = UsernameField(label=_("Username"), max_length=150)
    email = forms.EmailField(label=_("Email"))
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    store_name = forms.CharField(label=_("Store name"), max_length=120)
    slug = forms.SlugField(
        label=_("Store address"),
        max_length=60,
        help_text=_("Letters, digits and hyphens; your store's page will be /s/<address>/."),
    )
    contact = forms.CharField(
        label=_("Contact"),
        max_length=200,
        help_text=_("How buyers and our staff reach you (e-mail, Telegram, QQ…)."),
    )
    goods = forms.CharField(
        label=_("What will you sell?"), max_length=2000, widget=forms.Textarea(attrs={"rows": 4})
    )
    documents = MultipleFileField(
        label=_("Identity or business documents"),
        help_text=_("PNG, JPEG or PDF; up to %(n)d files. Only our staff see them.")
        % {"n": services.MAX_DOCUMENTS},
    )

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise ValidationError(_("This username is taken."))
        return username

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].lower()
        if selectors.store_slug_taken(slug=slug):
            raise ValidationError(_("This store address is taken."))
        return slug

    def clean_documents(self) -> list[UploadedFile]:
        documents: list[UploadedFile] = self.cleaned_data["documents"]
        if len(documents) > services.MAX_DOCUMENTS:
            raise ValidationError(
                _("Attach at most %(n)d documents.") % {"n": services.MAX_DOCUMENTS}
            )
        errors: list[str] = []
        for upload in documents:
            try:
                services.validate_document(upload)
            except ValidationError as exc:
                errors.extend(f"{upload.name}: {message}" for message in exc.messages)
        if errors:
            raise ValidationError(errors)
        return documents

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password1")
        if password and password != cleaned.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        elif password:
            user = get_user_model()(
                username=cleaned.get("username", ""), email=cleaned.get("email", "")
            )
            try:
                password_validation.validate_password(password, user)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=[("approve", _("Approve")), ("reject", _("Reject"))],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason (sent to the applicant; required to reject)"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("decision") == "reject" and not cleaned.get("reason", "").strip():
            self.add_error("reason", _("Give the applicant a reason for the rejection."))
        return cleaned


def application_field_errors(form: forms.Form, errors: dict[str, list[str]]) -> None:
    """Put a service's ``InvalidApplication`` errors on the form's fields."""
    for field, messages in errors.items():
        target = field if field in form.fields else None
        for message in messages:
            form.add_error(target, message)
