from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class DisputeError(CardvaultError):
    user_message = _("This dispute cannot be changed that way.")


def user_text(exc: CardvaultError) -> str:
    """What to tell a person about a domain error, in the active language."""
    filled = getattr(exc, "filled_message", None)
    return str(filled if filled is not None else exc.user_message)


class DisputeNotAllowed(DisputeError):
    user_message = _("Problems can be reported for delivered orders only.")


class DisputeWindowClosed(DisputeError):
    user_message = _(
        "Problems can be reported within %(days)d days of delivery; this order's window has "
        "closed. Please contact the store directly."
    )

    def __init__(self, message: str = "", *, days: int) -> None:
        super().__init__(message or f"dispute window of {days} days closed")
        self.days = days

    @property
    def filled_message(self) -> str:
        """The user message with the window filled in, in the active language."""
        return str(type(self).user_message) % {"days": self.days}


class DisputeAlreadyOpen(DisputeError):
    user_message = _("A problem report for this order is already open.")


class InvalidDisputeInput(DisputeError):
    user_message = _("Please correct the details below.")

    def __init__(self, message: str = "", *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class DisputeClosed(DisputeError):
    user_message = _("This dispute is resolved; it cannot change any more.")


class AnswerWindowClosed(DisputeError):
    user_message = _(
        "The time to answer this dispute has passed, or staff have taken it over; staff decide now."
    )


class DecisionInProgress(DisputeError):
    user_message = _("Someone else is resolving this dispute right now. Reload the page.")


class ReplacementNotPossible(DisputeError):
    user_message = _(
        "This key cannot be replaced automatically (choose a delivered key of an "
        "automatic-delivery product)."
    )


class ReplacementOutOfStock(DisputeError):
    user_message = _("No replacement key in stock: nothing was changed. Import keys first.")


class IllegalDisputeTransition(DisputeError):
    user_message = _("The dispute cannot change to that state.")
