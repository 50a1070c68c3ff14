"""Endpoint secrets and bot tokens are sealed with the card-key keyring: key rotation re-seals
them, so the old key can be dropped."""

import base64

import pytest
from django.core.management import call_command

from webhooks import services
from webhooks.models import NotificationSettings, WebhookEndpoint

OLD = "k1:" + base64.b64encode(b"\x01" * 32).decode()
NEW = "k2:" + base64.b64encode(b"\x07" * 32).decode()


@pytest.mark.django_db
def test_rotation_reseals_webhook_secrets_and_bot_tokens(merchant, settings, capsys):
    settings.CARD_KEYRING = OLD
    endpoint = services.create_endpoint(
        merchant=merchant, url="https://hooks.example.com/x", events=["order.paid"]
    )
    secret = endpoint.get_secret()
    services.save_notification_settings(
        merchant=merchant,
        language="en",
        email_enabled=True,
        notify_every_order=False,
        telegram_chat_id="1",
        telegram_token="777:tok",
    )

    settings.CARD_KEYRING = f"{NEW},{OLD}"
    call_command("rotate_card_keys")
    settings.CARD_KEYRING = NEW  # the old key is gone

    endpoint = WebhookEndpoint.objects.get()
    prefs = NotificationSettings.objects.get()
    assert (endpoint.secret_key_id, prefs.telegram_token_key_id) == ("k2", "k2")
    assert endpoint.get_secret() == secret
    assert prefs.get_telegram_token() == "777:tok"
    assert services.reseal_secrets(current="k2") == 0
