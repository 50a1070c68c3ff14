from django.utils.translation import gettext_lazy as _


class CardvaultError(Exception):
    """Base of every domain error; edges turn ``user_message`` into a translated message."""

    user_message = _("Something went wrong.")

    def __init__(self, message: str = "", **context: object) -> None:
        super().__init__(message or str(self.user_message))
        self.context = context


class VaultError(CardvaultError):
    """A card key could not be sealed or unsealed. Loud on purpose; never carries plaintext."""

    user_message = _("Stored keys could not be read. Support has been notified.")


class ImportRejected(CardvaultError):
    user_message = _("Nothing was imported.")


class ProductUnavailable(CardvaultError):
    user_message = _("This product is not on sale.")


class ProductReviewRefused(CardvaultError):
    user_message = _("This product's review cannot change that way.")
