from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class AffiliateError(CardvaultError):
    """A refusal whose message is shown to the person who asked."""

    def __init__(self, message: object = "") -> None:
        super().__init__(str(message))
        self.user_message = str(message)  # type: ignore[assignment]


class SignUpRefused(AffiliateError):
    pass


class AffiliateWithdrawalNotAllowed(AffiliateError):
    pass


class ResaleUnavailable(CardvaultError):
    user_message = _("This product is not on sale here right now.")


class ResalePriceTooLow(AffiliateError):
    pass
