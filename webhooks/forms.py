from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from webhooks import targets
from webhooks.exceptions import UnsafeWebhookTarget
from webhooks.models import NotificationSettings, WebhookEndpoint, WebhookEvent


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        label=_("events"),
        choices=WebhookEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(WebhookEvent.values),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "events", "is_active")

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            targets.check_url(url, resolve=False)
        except UnsafeWebhookTarget as exc:
            raise forms.ValidationError(str(exc.user_message)) from None
        return url


class NotificationSettingsForm(forms.ModelForm):
    telegram_bot_token = forms.CharField(
        label=_("Telegram bot token"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("From @BotFather. Stored encrypted; leave empty to keep the current one."),
    )
    clear_telegram_token = forms.BooleanField(
        label=_("Remove the stored bot token"), required=False
    )

    class Meta:
        model = NotificationSettings
        fields = ("language", "email_enabled", "notify_every_order", "telegram_chat_id")

    def telegram_token_change(self) -> str | None:
        """``None`` keeps the stored token, ``""`` removes it, anything else replaces it."""
        data: dict[str, Any] = self.cleaned_data
        if data.get("clear_telegram_token"):
            return ""
        return data.get("telegram_bot_token") or None
