"""Domain errors of merchant admission and inspection."""

from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class InvalidApplication(CardvaultError):
    """An application that cannot be accepted; ``errors`` maps form fields to messages."""

    user_message = _("Please correct the errors below.")

    def __init__(self, message: str = "", *, errors: dict[str, list[str]], **context: object):
        super().__init__(message, **context)
        self.errors = errors


class ApplicationAlreadyDecided(CardvaultError):
    user_message = _("This application has already been decided.")


class ApplicationDecisionRefused(CardvaultError):
    """A decision that cannot be taken as asked (say, a rejection without a reason)."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message, **context)
        self.user_message = message  # type: ignore[assignment]
