from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class OutOfStock(CardvaultError):
    user_message = _("Sorry, there is not enough stock for that quantity.")


class InvalidOrderInput(CardvaultError):
    user_message = _("Please correct the order details.")

    def __init__(self, message: str = "", *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class IllegalTransition(CardvaultError):
    user_message = _("The order cannot change to that state.")


class GatewayUnavailable(CardvaultError):
    user_message = _("That payment method is not available for this order.")


class OrderNotPayable(CardvaultError):
    user_message = _("This order can no longer be paid.")


class PaymentRejected(CardvaultError):
    """A callback that must change nothing. ``code`` is a short machine-readable reason that is
    safe to log and to return to the sender."""

    code = "rejected"
    user_message = _("The payment notification was rejected.")


class IgnoredNotification(PaymentRejected):
    """A genuine notification with nothing for us to do (the trade is not paid yet, a refund
    report). It changes nothing, but gets the gateway's normal acknowledgement so the gateway
    stops retrying; raise it only after the signature was verified."""

    code = "ignored"


class RefundReported(IgnoredNotification):
    """A genuine notification that one of the gateway's refunds changed. It changes nothing by
    itself (the payload is never trusted for a refund's outcome); the refund, if pending, is
    asked about at once instead of at the repair job's next run."""

    def __init__(self, message: str = "", *, gateway_refund_id: str) -> None:
        super().__init__(message)
        self.gateway_refund_id = gateway_refund_id


class InvalidSignature(PaymentRejected):
    code = "invalid_signature"


class StaleNotification(PaymentRejected):
    code = "stale_timestamp"


class MalformedNotification(PaymentRejected):
    code = "malformed"


class UnknownPayment(PaymentRejected):
    code = "unknown_payment"


class AmountMismatch(PaymentRejected):
    code = "amount_mismatch"


class CurrencyMismatch(PaymentRejected):
    code = "currency_mismatch"


class TradeAlreadyBound(PaymentRejected):
    code = "trade_bound_to_other_payment"


class NotDeliverable(CardvaultError):
    user_message = _("This order is not waiting for a manual delivery.")


class RefundNotAllowed(CardvaultError):
    user_message = _("This refund is not possible (nothing left to refund, or no payment).")


class AnonymisationNotAllowed(CardvaultError):
    """The buyer asked to erase an order's personal data too early (or while something is open);
    ``user_message`` says why and, where known, from when it is possible."""

    user_message = _("This order's personal data cannot be erased yet.")

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(message)
        if user_message is not None:
            # A per-instance sentence (it may carry a date) in place of the class's lazy one.
            self.user_message = user_message  # type: ignore[assignment]


class NotHeld(CardvaultError):
    user_message = _("This order is not held for review.")
