from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class UnbalancedJournal(CardvaultError):
    """A programming error: a journal whose entries do not sum to zero is never written."""

    user_message = _("The books would not balance; nothing was changed.")


class WithdrawalNotAllowed(CardvaultError):
    def __init__(self, message: object = "") -> None:
        super().__init__(str(message))
        self.user_message = str(message)  # type: ignore[assignment]
