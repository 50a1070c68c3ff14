from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class WebhookError(CardvaultError):
    user_message = _("The webhook could not be processed.")


class UnsafeWebhookTarget(WebhookError):
    """The URL is not http(s), or resolves to a private, loopback or otherwise internal address."""

    user_message = _("Webhook URLs must be public http:// or https:// addresses.")


class TargetDoesNotResolve(WebhookError):
    """The host name has no address right now (DNS down, or a typo): retried, not refused."""

    user_message = _("The webhook's host name could not be resolved.")


class DeliveryNotResendable(WebhookError):
    user_message = _("This delivery cannot be sent again.")


class TelegramError(WebhookError):
    """The Bot API refused or could not be reached. Never carries the token or the URL."""

    user_message = _("The Telegram message could not be sent.")
