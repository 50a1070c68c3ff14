from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from risk.screening import Screening
from shop.exceptions import CardvaultError


class RiskRefused(CardvaultError):
    """A checkout the risk rules did not let through; no order was created, nothing reserved.
    Carries the screening, which ``place_order`` records after its transaction rolled back."""

    user_message = _("This order cannot be accepted right now.")

    def __init__(self, message: str = "", *, screening: Screening | None = None) -> None:
        super().__init__(message)
        self.screening = screening
        if screening is not None and screening.user_message is not None:
            self.user_message = screening.user_message


class RiskBlocked(RiskRefused):
    user_message = _(
        "We cannot accept this order. If you think this is a mistake, please contact the store."
    )


class CaptchaRequired(RiskRefused):
    user_message = _("Please answer the check below to confirm you are not a robot.")
