from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from security import recovery_codes


class OTPTokenForm(forms.Form):
    token = forms.RegexField(
        label=_("Code from your authenticator app"),
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": _("Enter the 6-digit code.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )

    def clean_token(self) -> str:
        return str(self.cleaned_data["token"]).strip()


class OTPVerifyForm(forms.Form):
    """The code after the password: a 6-digit code from the authenticator app, or one of the
    user's recovery codes (``XXXX-XXXX-XXXX``)."""

    token = forms.CharField(
        label=_("Code from your authenticator app, or a recovery code"),
        max_length=40,
        strip=True,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autocapitalize": "characters",
                "autofocus": True,
            }
        ),
    )

    def clean_token(self) -> str:
        token = "".join(str(self.cleaned_data["token"]).split())
        if not (token.isdigit() and len(token) == 6) and not recovery_codes.looks_like_code(token):
            raise ValidationError(
                _("Enter the 6-digit code from your app, or a recovery code."), code="invalid"
            )
        return token

    @property
    def is_recovery_code(self) -> bool:
        token: Any = self.cleaned_data.get("token", "")
        return recovery_codes.looks_like_code(str(token))


class RegenerateRecoveryCodesForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
