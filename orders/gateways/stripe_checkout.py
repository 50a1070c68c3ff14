"""Stripe Checkout: the buyer pays on Stripe's hosted Checkout page; Stripe tells us by webhook.

Wire format (this module is the only place that knows it):
  * API calls go through ``orders.http`` (not the ``stripe`` SDK's own client, so tests reach the
    local stub and every call gets our timeouts): form-encoded, ``Authorization: Bearer <secret
    key>``, an ``Idempotency-Key`` on every POST. ``POST /v1/checkout/sessions`` (mode=payment,
    one line item of the order total, ``client_reference_id`` = our payment reference) → the
    session's ``url`` for the buyer; ``GET /v1/checkout/sessions/{id}`` to query; ``POST
    /v1/refunds`` to refund, ``GET /v1/refunds/{id}`` to learn how a pending refund ended.
    Amounts are integers in minor units.
  * Webhook: ``POST`` with a JSON event ``{"id": "evt_…", "type", "data": {"object": <checkout
    session>}}`` and ``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret,
    "<t>.<raw body>")>`` (several ``v1`` while a secret is being rolled). Stripe waits for a 2xx;
    anything else is retried for up to three days. We answer ``{"received": true}``.

Traps handled:
  * ``stripe.WebhookSignature.verify_header`` only checks that the timestamp is not too OLD: it
    accepts one an hour (or a year) in the future, and ``tolerance=0`` switches its replay check
    off entirely. We parse ``t=`` ourselves (exactly one, digits only, so it is the value the
    library verifies), bound it on both sides with ``PAYMENT_CALLBACK_MAX_AGE_SECONDS`` and never
    pass a tolerance of 0. Stripe signs every retry afresh, so a genuine retry is never stale.
  * An empty webhook secret refuses everything (an HMAC with a known key proves nothing).
  * Replays: the event id is the ``VerifiedEvent.event_id``, deduplicated by ``confirm_payment``;
    a repeat gets the same ``{"received": true}``.
  * Only ``checkout.session.completed`` with ``payment_status == "paid"`` and
    ``checkout.session.async_payment_succeeded`` pay; ``…async_payment_failed`` and ``…expired``
    fail. Any other genuine event (a completed session still ``unpaid`` while a bank debit
    settles, refunds, events of sessions not made by Cardvault) is acknowledged and changes
    nothing, or Stripe would retry it for days and eventually disable the endpoint.
  * Amounts: ``amount_total`` must be a JSON integer (never a float) and is converted exactly
    (``scaleb(-2)``); only two-decimal currencies (USD, EUR, CNY) are accepted, so the minor-unit
    exponent is always 2. Stripe's lowercase currency is upper-cased before comparison.
  * Retried POSTs carry an idempotency key derived from the payment reference (sessions) or the
    refund request id (refunds): a retry after a timeout is the same session / refund at Stripe.
  * The trade id bound to the payment is the PaymentIntent id (the session id if there is none).
  * A refund answered ``pending`` (or ``requires_action``) has not returned the money: it can
    still go to ``failed`` or ``canceled`` days later. It is reported as pending, never as
    succeeded; the repair job asks ``GET /v1/refunds/{id}`` until it ends. A refund webhook event
    (``refund.*``, ``charge.refund.*``) only makes Cardvault ask about that refund at once: its
    payload decides nothing, so the outcome never depends on one arriving or being genuine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx
import stripe
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders import http
from orders.exceptions import (
    GatewayUnavailable,
    IgnoredNotification,
    InvalidSignature,
    MalformedNotification,
    PaymentRejected,
    RefundReported,
    StaleNotification,
)
from orders.gateways.base import (
    CallbackReply,
    CallbackRequest,
    ConfigField,
    Gateway,
    PaymentAction,
    RefundResult,
    VerifiedEvent,
)

if TYPE_CHECKING:
    from orders.models import Payment

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"
SIGNATURE_HEADER = "Stripe-Signature"
SESSIONS_PATH = "/v1/checkout/sessions"
REFUNDS_PATH = "/v1/refunds"

# Currencies whose minor unit is 1/100 at Stripe. Zero-decimal (JPY) and three-decimal (KWD)
# currencies would need another exponent; they are refused rather than converted wrongly.
TWO_DECIMAL_CURRENCIES = frozenset({"USD", "EUR", "CNY"})

PAID_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
FAILED_TYPES = frozenset({"checkout.session.async_payment_failed", "checkout.session.expired"})
# A refund in these states was taken but has not returned the money yet: it becomes
# "succeeded", or "failed" / "canceled" (a bank refusing it, the buyer never giving the
# details a requires_action refund asks for).
PENDING_REFUND_STATES = frozenset({"pending", "requires_action"})
FAILED_REFUND_STATES = frozenset({"failed", "canceled"})

# Stripe lets a session live 30 minutes to 24 hours; we ask for the order's own deadline inside
# those bounds, so a buyer cannot pay a long-expired order on a day-old page.
SESSION_MIN_LIFETIME = timedelta(minutes=31)
SESSION_MAX_LIFETIME = timedelta(hours=23, minutes=55)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{3,255}")
_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
_REFUND_ID = re.compile(r"(re|pyr)_[A-Za-z0-9_]{1,124}")
_CODE = re.compile(r"[a-z_]{1,64}")
_CURRENCY = re.compile(r"[a-zA-Z]{3}")
_MAX_PRODUCT_NAME = 250


# --- amounts ------------------------------------------------------------------------------------
def to_minor(amount: Decimal) -> int:
    """Exact conversion to cents; a fraction of a cent is an error, never rounded."""
    minor = amount.scaleb(2)
    if minor != minor.to_integral_value() or minor < 0:
        raise ValueError(f"{amount} is not a whole number of minor units")
    return int(minor)


def from_minor(value: object) -> Decimal:
    # bool is an int in Python, and a float (2000.0) is not what Stripe sends: both rejected.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedNotification("amount is not a whole number of minor units")
    return Decimal(value).scaleb(-2)


def _header(headers: Mapping[str, str], name: str) -> str:
    found = [value for key, value in headers.items() if key.lower() == name.lower()]
    if len(found) > 1:
        raise InvalidSignature(f"conflicting {name} headers")
    return found[0] if found else ""


def signature_timestamp(header: str) -> int:
    """The ``t=`` of a ``Stripe-Signature`` header, parsed strictly: exactly one, ASCII digits
    only (``int()`` would also take " 1", "+1" or "1_0"), so it is the value the library signs
    and checks."""
    items = [item.strip() for item in header.split(",")]
    if not header or any("=" not in item for item in items):
        raise InvalidSignature("missing or malformed signature header")
    timestamps = [item.split("=", 1)[1] for item in items if item.split("=", 1)[0] == "t"]
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise InvalidSignature("missing or malformed signature timestamp")
    return int(timestamps[0])


class StripeCheckoutGateway(Gateway):
    name = "stripe"
    display_name = _("Stripe (cards, wallets)")
    default_currencies = ("USD", "EUR", "CNY")
    option_fields = (
        ConfigField(
            "api_base",
            _("API base URL"),
            required=False,
            help_text=_("Leave empty for https://api.stripe.com."),
        ),
    )
    secret_fields = (
        ConfigField(
            "secret_key",
            _("Secret key"),
            help_text=_("sk_live_… (or a restricted key rk_live_… with Checkout and Refunds)."),
        ),
        ConfigField(
            "webhook_secret",
            _("Webhook signing secret"),
            help_text=_(
                "whsec_… of the webhook endpoint pointing at /pay/callback/stripe/, sending "
                "checkout.session.completed, .async_payment_succeeded, .async_payment_failed "
                "and .expired."
            ),
        ),
    )
    supports_refund = True
    supports_refund_query = True

    # --- configuration ------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return self.option("api_base", DEFAULT_API_BASE).strip().rstrip("/") or DEFAULT_API_BASE

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        # Even if staff list another currency, its minor unit may not be 1/100: refuse it.
        return currency in TWO_DECIMAL_CURRENCIES and super().accepts(
            amount=amount, currency=currency
        )

    # --- the API ------------------------------------------------------------------------------
    def _call(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        idempotency_key: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """One API call; returns (status, JSON object). Retrying is safe: GETs are reads, and
        every POST carries an idempotency key, so Stripe answers a repeat with the first result."""
        secret_key = self.secret("secret_key").strip()
        if not secret_key:
            raise GatewayUnavailable("stripe secret key is not configured")
        headers = {"Authorization": f"Bearer {secret_key}", "Accept": "application/json"}
        if method == "POST":
            if not idempotency_key:
                raise AssertionError("every Stripe POST needs an idempotency key")
            headers["Idempotency-Key"] = idempotency_key
        response = http.request(
            method, self.api_base + path, idempotent=True, data=data, headers=headers
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise GatewayUnavailable(f"unreadable Stripe answer ({response.status_code})")
        return response.status_code, answer

    @staticmethod
    def _error_code(answer: Mapping[str, Any]) -> str:
        # Only the machine code is logged: Stripe's message can echo parameters.
        error = answer.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or error.get("type") or "unknown")[:64]
        return "unknown"

    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        if payment.currency not in TWO_DECIMAL_CURRENCIES:
            raise GatewayUnavailable(f"stripe cannot charge {payment.currency}")
        order = payment.order
        title = order.product.title
        name = title if order.quantity == 1 else f"{title} × {order.quantity}"
        now = timezone.now()
        expires_at = min(
            max(order.expires_at, now + SESSION_MIN_LIFETIME), now + SESSION_MAX_LIFETIME
        )
        reference = payment.reference
        data = {
            "mode": "payment",
            "line_items[0][price_data][currency]": payment.currency.lower(),
            "line_items[0][price_data][unit_amount]": str(to_minor(payment.amount)),
            "line_items[0][price_data][product_data][name]": name[:_MAX_PRODUCT_NAME],
            "line_items[0][quantity]": "1",
            "success_url": return_url,
            "cancel_url": return_url,
            "client_reference_id": reference,
            "metadata[payment_reference]": reference,
            "payment_intent_data[metadata][payment_reference]": reference,
            "expires_at": str(int(expires_at.timestamp())),
        }
        # One payment reference is one session: a retried request returns the same session.
        status, answer = self._call(
            "POST", SESSIONS_PATH, data=data, idempotency_key=f"cardvault-session-{reference}"
        )
        if status != 200:
            logger.warning("stripe refused the session", extra={"code": self._error_code(answer)})
            raise GatewayUnavailable(f"stripe refused the checkout session ({status})")
        session_id = answer.get("id")
        url = answer.get("url")
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise GatewayUnavailable("stripe answered without a session id")
        if answer.get("client_reference_id") != reference:
            raise GatewayUnavailable("stripe answered for another session")
        # The buyer is sent there: only an https URL, never javascript: or a relative path.
        if not isinstance(url, str) or urlsplit(url).scheme != "https" or not urlsplit(url).netloc:
            raise GatewayUnavailable("stripe answered without a checkout URL")
        return PaymentAction(redirect_url=url, data={"session_id": session_id})

    # --- webhooks -----------------------------------------------------------------------------
    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        secret = self.secret("webhook_secret")
        if not secret.strip():
            raise InvalidSignature("stripe webhook secret is not configured")
        max_age = int(settings.PAYMENT_CALLBACK_MAX_AGE_SECONDS)
        if max_age <= 0:
            # The library reads tolerance 0 as "no replay check"; never hand it one.
            raise StaleNotification("no callback age window is configured")
        header = _header(request.headers, SIGNATURE_HEADER)
        timestamp = signature_timestamp(header)
        # Both sides: the library alone would take a timestamp from the future.
        if abs(time.time() - timestamp) > max_age:
            raise StaleNotification("timestamp outside the accepted window")
        try:
            payload = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature("body is not UTF-8") from None
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, max_age)
        except stripe.SignatureVerificationError:
            raise InvalidSignature("signature mismatch") from None
        return self._parse_event(payload)

    def _parse_event(self, payload: str) -> VerifiedEvent:
        try:
            event = json.loads(payload)
        except ValueError:
            raise MalformedNotification("body is not JSON") from None
        if not isinstance(event, dict) or event.get("object") != "event":
            raise MalformedNotification("body is not a Stripe event")
        event_id = event.get("id")
        event_type = event.get("type")
        if not isinstance(event_id, str) or not _STRIPE_ID.fullmatch(event_id):
            raise MalformedNotification("missing or malformed event id")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedNotification("missing event type")
        data = event.get("data")
        if event_type.startswith(("refund.", "charge.refund.")):
            reported = data.get("object") if isinstance(data, dict) else None
            if (
                isinstance(reported, dict)
                and reported.get("object") == "refund"
                and isinstance(reported.get("id"), str)
                and _REFUND_ID.fullmatch(reported["id"])
            ):
                raise RefundReported("refund update", gateway_refund_id=reported["id"])
        if event_type not in PAID_TYPES | FAILED_TYPES:
            # Disputes, other products' events: nothing this endpoint acts on.
            raise IgnoredNotification(f"event type {event_type[:64]!r} is not handled")
        session = data.get("object") if isinstance(data, dict) else None
        if not isinstance(session, dict) or session.get("object") != "checkout.session":
            raise MalformedNotification("event does not carry a checkout session")
        if event_type in FAILED_TYPES:
            kind: Literal["paid", "failed"] = "failed"
        elif session.get("payment_status") == "paid":
            kind = "paid"
        elif event_type == "checkout.session.completed":
            # Completed but not paid yet (a bank debit settling): the async events follow.
            raise IgnoredNotification("session completed, payment still pending")
        else:
            raise MalformedNotification("async success for a session that is not paid")
        return self._event(session, kind=kind, event_id=event_id[:128])

    @staticmethod
    def _reference(session: Mapping[str, Any]) -> str:
        metadata = session.get("metadata")
        from_metadata = metadata.get("payment_reference") if isinstance(metadata, dict) else None
        client_reference = session.get("client_reference_id")
        if client_reference and from_metadata and client_reference != from_metadata:
            raise MalformedNotification("session names two different payments")
        reference = client_reference or from_metadata
        if not reference:
            # A session someone made on the same Stripe account without Cardvault.
            raise IgnoredNotification("session was not made by Cardvault")
        if not isinstance(reference, str) or len(reference) > 40:
            raise MalformedNotification("malformed payment reference")
        return reference

    def _event(
        self, session: Mapping[str, Any], *, kind: Literal["paid", "failed"], event_id: str
    ) -> VerifiedEvent:
        reference = self._reference(session)
        currency = session.get("currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise MalformedNotification("missing or malformed currency")
        session_id = session.get("id")
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise MalformedNotification("missing or malformed session id")
        intent = session.get("payment_intent")
        if isinstance(intent, dict):  # expanded
            intent = intent.get("id")
        if intent is not None and (not isinstance(intent, str) or not _STRIPE_ID.fullmatch(intent)):
            raise MalformedNotification("malformed payment intent id")
        return VerifiedEvent(
            event_id=event_id,
            kind=kind,
            payment_reference=reference,
            # A non-two-decimal currency never matches our payment's: CurrencyMismatch first.
            amount=from_minor(session.get("amount_total")),
            currency=currency.upper(),
            gateway_trade_id=(intent or session_id)[:128],
        )

    def reply_accepted(self) -> CallbackReply:
        return CallbackReply(status=200, body='{"received": true}', content_type="application/json")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        if isinstance(error, IgnoredNotification):
            return self.reply_accepted()
        return CallbackReply(
            status=400, body=json.dumps({"error": error.code}), content_type="application/json"
        )

    # --- query and refund ---------------------------------------------------------------------
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        session_id = (payment.gateway_data or {}).get("session_id")
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return None  # the session was never opened at Stripe: nothing can have been paid
        status, answer = self._call("GET", f"{SESSIONS_PATH}/{session_id}")
        if status != 200:
            logger.warning("stripe query failed", extra={"code": self._error_code(answer)})
            raise GatewayUnavailable(f"stripe query failed ({status})")
        if answer.get("object") != "checkout.session" or answer.get("id") != session_id:
            raise MalformedNotification("query answered for another session")
        try:
            if self._reference(answer) != payment.reference:
                raise MalformedNotification("session belongs to another payment")
        except IgnoredNotification:
            raise MalformedNotification("session carries no payment reference") from None
        state = answer.get("status")
        if state == "complete" and answer.get("payment_status") == "paid":
            return self._event(answer, kind="paid", event_id=f"query:{session_id}:paid")
        if state == "expired":
            return self._event(answer, kind="failed", event_id=f"query:{session_id}:expired")
        return None  # open, or complete while an async payment settles

    @staticmethod
    def refund_idempotency_key(*, payment: Payment, amount: Decimal, reason: str) -> str:
        """Derived from the refund request (``reason`` is the caller's request id): a retry is
        the same refund at Stripe, never a second one."""
        digest = hashlib.sha256(f"{payment.reference}|{to_minor(amount)}|{reason}".encode())
        return "cardvault-refund-" + digest.hexdigest()[:48]

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        intent = payment.gateway_trade_id or ""
        if not intent.startswith("pi_"):
            raise GatewayUnavailable("payment has no Stripe PaymentIntent to refund")
        minor = to_minor(amount)
        data = {
            "payment_intent": intent,
            "amount": str(minor),
            # Stripe's own "reason" is an enum shown to the buyer's bank; ours stays here.
            "metadata[payment_reference]": payment.reference,
        }
        key = self.refund_idempotency_key(payment=payment, amount=amount, reason=reason)
        try:
            status, answer = self._call("POST", REFUNDS_PATH, data=data, idempotency_key=key)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"stripe refund request failed: {type(exc).__name__}") from exc
        if status == 429 or status >= 500:
            raise GatewayUnavailable(f"stripe refund unavailable ({status})")
        if status != 200:
            # Declined (already refunded, amount too large, disputed…): a person looks at it.
            code = self._error_code(answer)
            logger.warning("stripe declined a refund", extra={"code": code})
            failure = f"stripe declined the refund ({status}): {code}"
            return RefundResult(refund_id="", amount=Decimal(0), succeeded=False, failure=failure)
        return self._refund_result(answer, payment=payment, minor=minor)

    def query_refund(self, *, payment: Payment, refund_id: str, amount: Decimal) -> RefundResult:
        if not _REFUND_ID.fullmatch(refund_id):
            raise GatewayUnavailable("not a Stripe refund id")
        try:
            status, answer = self._call("GET", f"{REFUNDS_PATH}/{refund_id}")
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"stripe refund query failed: {type(exc).__name__}") from exc
        if status != 200:
            logger.warning("stripe refund query failed", extra={"code": self._error_code(answer)})
            raise GatewayUnavailable(f"stripe refund query failed ({status})")
        if answer.get("id") != refund_id:
            raise GatewayUnavailable("stripe answered for another refund")
        return self._refund_result(answer, payment=payment, minor=to_minor(amount))

    def _refund_result(
        self, answer: Mapping[str, Any], *, payment: Payment, minor: int
    ) -> RefundResult:
        """A Stripe refund object, checked against what we asked, as a ``RefundResult``."""
        refund_id = answer.get("id")
        if (
            answer.get("object") != "refund"
            or not isinstance(refund_id, str)
            or not _REFUND_ID.fullmatch(refund_id)
        ):
            raise GatewayUnavailable("unexpected Stripe refund answer")
        if answer.get("amount") != minor or answer.get("currency") != payment.currency.lower():
            raise GatewayUnavailable("Stripe refunded another amount than asked")
        intent = answer.get("payment_intent")
        if isinstance(intent, dict):  # expanded
            intent = intent.get("id")
        if intent is not None and intent != payment.gateway_trade_id:
            raise GatewayUnavailable("Stripe answered with a refund of another payment")
        amount = Decimal(minor).scaleb(-2)
        state = answer.get("status")
        if state == "succeeded":
            return RefundResult(refund_id=refund_id, amount=amount, succeeded=True)
        if state not in FAILED_REFUND_STATES:
            # Taken, not finished (or a state we do not know yet): it settles later or still
            # fails. Never booked as money returned, never failed on a guess (a retry would be a
            # second refund).
            if state not in PENDING_REFUND_STATES:
                logger.warning("stripe refund in an unknown state")
            return RefundResult(refund_id=refund_id, amount=amount, succeeded=False, pending=True)
        failure = answer.get("failure_reason")
        detail = failure if isinstance(failure, str) and _CODE.fullmatch(failure) else ""
        logger.warning("stripe refund did not succeed", extra={"status": state})
        return RefundResult(
            refund_id=refund_id,
            amount=Decimal(0),
            succeeded=False,
            failure=f"stripe refund {state}" + (f": {detail}" if detail else ""),
        )
