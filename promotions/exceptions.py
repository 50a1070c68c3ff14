from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from orders.exceptions import InvalidOrderInput


class CouponRejected(InvalidOrderInput):
    """A coupon code that cannot be applied to this checkout. An ``InvalidOrderInput`` whose
    error belongs to the ``coupon_code`` field, so the checkout form shows it under that field.
    ``reason`` is a short machine-readable code (``invalid``, ``not_yet_valid``, ``expired``,
    ``used_up``, ``buyer_limit``, ``not_applicable``, ``minimum``, ``changed``)."""

    user_message = _("This coupon code is not valid.")

    def __init__(self, reason: str, user_message: str | Promise) -> None:
        super().__init__(f"coupon rejected: {reason}", errors={"coupon_code": [str(user_message)]})
        self.reason = reason
        # Already translated in the request's language (formatted with amounts where needed).
        self.user_message = user_message  # type: ignore[assignment]  # str or lazy, both shown
