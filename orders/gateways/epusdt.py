"""USDT (TRC-20) through a self-hosted epusdt-compatible gateway (epusdt, BEpusdt and forks).

The shop prices in CNY; the gateway converts to USDT at its own rate, hands out a wallet
address and the exact USDT amount to send, watches the chain and notifies us.

Wire format (this module is the only place that knows it):
  * Signature: ``md5("k1=v1&k2=v2…" + api_token)``, lower-case hex, over every parameter except
    ``signature`` whose value is not empty, sorted by name. Values are rendered as the gateway
    sees them after decoding JSON: strings raw, JSON numbers as Go prints a float64
    (``strconv.FormatFloat(f, 'f', -1, 64)``: ``20.00`` → ``20``, ``9.90`` → ``9.9``).
  * Create: ``POST {api_base}/api/v1/order/create-transaction`` JSON ``{order_id, amount (CNY,
    a JSON number), notify_url, redirect_url, signature}`` → ``{"status_code": 200, "message",
    "data": {trade_id, order_id, amount, actual_amount (USDT), token (the wallet address),
    expiration_time, payment_url}}``; errors come as another ``status_code`` (401 signature,
    10002 order exists, 10003 no wallet, …), often with HTTP 400/401.
  * Notification: ``POST notify_url`` JSON ``{trade_id, order_id, amount, actual_amount, token,
    block_transaction_id, signature, status}``; status 1 waiting, 2 paid, 3 expired. The gateway
    retries (up to 5 times) until the body is exactly ``ok``.
  * Query (optional, ``query_path``): epusdt itself has no authenticated query API, only the
    unsigned ``/pay/check-status/{trade_id}`` for its cashier page. Where staff run one, this
    module speaks a gateway-specific contract modelled on the create call: ``POST
    {api_base}{query_path}`` JSON ``{order_id, trade_id, signature}`` → the same envelope with
    ``data`` shaped and signed exactly like a notification (``signature`` required);
    ``status_code`` 10008 means the gateway has no such order.
  * No refunds: an on-chain transfer cannot be pulled back by the gateway.

What this was checked against (public code, read for the protocol only): assimon/epusdt
``wiki/API.md`` (rules, fields, the ``1cd4b52d…`` signature example), ``src/util/sign/sign.go``
(``MapToParams``: numbers via ``FormatFloat(…, -1)``), ``src/middleware/check_sign.go`` (the
server re-signs the *decoded* JSON), ``src/mq/handle/callback_queue.go`` (notification, ``ok``)
and ``src/model/response/order_response.go``; v03413/BEpusdt ``docs/api.md``,
``app/web/epusdt.go`` and ``app/notify/epusdt.go`` (``actual_amount`` as a JSON string,
``expiration_time`` as seconds left); GMWalletApp/epusdt ``wiki/API.md`` (same classic API;
its newer ``/payments/gmpay/v1`` API with ``pid`` and HMAC-SHA256 is a different wire format,
not spoken here).

Traps handled:
  * The gateway signs the numbers it decoded, so ``amount=20.00`` in our JSON is verified as
    ``amount=20``: we send two decimals but sign the Go rendering, or real epusdt answers 401.
    Incoming numbers are parsed as ``Decimal`` (``parse_float=Decimal``; ``json.loads`` would
    make ``12.00`` a float) and verified in the Go rendering, or as sent (a signer that signs
    the text it wrote); both need the token.
  * No timestamp, no nonce: a captured notification verifies forever. The on-chain
    ``block_transaction_id`` is bound as the trade id (unique per gateway: the same transfer
    can never pay a second order), the event id is ``"{trade_id}:{status}"`` (a replay is a
    duplicate), and with ``confirm_by_query`` each new notification is confirmed through the
    query API before anything is paid.
  * ``amount`` is CNY and is compared exactly with the payment by the service; the USDT
    ``actual_amount`` must be at least what we showed minus ``amount_tolerance_usdt`` and the
    address (``token``) the one we showed — otherwise it is an amount mismatch, flagged for staff.
  * Waiting / expired notifications (status 1 / 3) are acknowledged and change nothing.
  * Duplicate JSON keys are refused (which of the two was signed?).
  * ``expiration_time`` is a unix time in epusdt and *seconds left* in BEpusdt; both are read,
    and the pay page shows the earlier of it and the order's own deadline.
  * CNY only: ``amount`` is yuan whatever currency the order is in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders import http
from orders.exceptions import (
    AmountMismatch,
    GatewayUnavailable,
    IgnoredNotification,
    InvalidSignature,
    MalformedNotification,
    PaymentRejected,
    TradeAlreadyBound,
    UnknownPayment,
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

CENT = Decimal("0.01")
DEFAULT_CREATE_PATH = "/api/v1/order/create-transaction"
DEFAULT_TOLERANCE_USDT = "0.01"
STATUS_WAITING, STATUS_PAID, STATUS_EXPIRED = 1, 2, 3
NOT_FOUND = 10008
# Amounts as gateways print them ("20", "20.00", "7.9104"); no sign, exponent or NaN.
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")  # ASCII digits only, unlike \d
_SIGNATURE = re.compile(r"[0-9a-fA-F]{32}")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Unconfirmed(PaymentRejected):
    """A correctly signed notification the gateway's query API did not confirm (not paid,
    another transfer or amount, or the API could not be asked). Answered ``fail``: the gateway
    retries, and the reconcile job queries too."""

    code = "unconfirmed"


class AddressMismatch(AmountMismatch):
    """Genuine, but the transfer went to another address than the one we showed. Handled like
    an amount mismatch (never delivered, flagged for staff), under its own code."""

    code = "address_mismatch"


class EpusdtAPIError(GatewayUnavailable):
    """The create or query API could not be asked, or answered something unusable."""


class OnChainRefundUnsupported(GatewayUnavailable):
    """USDT sent on-chain cannot be refunded by the gateway. ``supports_refund`` is False, so the
    refund service records a manual refund for staff and never calls ``refund``; this is raised
    only if it is called anyway."""

    user_message = _("USDT payments cannot be refunded automatically; refund them by hand.")


# --- signatures ----------------------------------------------------------------------------------
def go_number(value: Decimal | int) -> str:
    """A JSON number as epusdt's Go code renders it for signing (``FormatFloat(f,'f',-1,64)``):
    shortest form, no exponent, no trailing zeros. Exact for the amounts money takes here."""
    if isinstance(value, int):
        return str(value)
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _render(value: object, *, as_sent: bool) -> str:
    """One signed value: "" means left out (empty or null)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise MalformedNotification("boolean field")  # Go's signer refuses them too
    if isinstance(value, int | Decimal):
        return str(value) if as_sent else go_number(value)
    raise MalformedNotification("nested field")


def sign_content(params: Mapping[str, object], *, as_sent: bool = False) -> str:
    """``k=v&k=v…`` of the signed parameters, sorted by name (Go sorts the joined ``k=v`` pairs:
    the same order unless a name is a prefix of another followed by a byte below ``=``)."""
    pairs = []
    for key in sorted(params):
        if key == "signature":
            continue
        rendered = _render(params[key], as_sent=as_sent)
        if rendered != "":
            pairs.append(f"{key}={rendered}")
    return "&".join(pairs)


def md5_sign(params: Mapping[str, object], token: str, *, as_sent: bool = False) -> str:
    # MD5 is the protocol's choice, not ours; it is not used for anything else.
    content = sign_content(params, as_sent=as_sent) + token
    return hashlib.md5(content.encode("utf-8")).hexdigest()  # nosec B324  # noqa: S324


def signature_valid(params: Mapping[str, Any], token: str) -> bool:
    """Whether ``params["signature"]`` was made with ``token`` (Go rendering, or as sent)."""
    signature = params.get("signature")
    if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
        return False
    given = signature.lower().encode()
    go_form = md5_sign(params, token)
    as_sent = md5_sign(params, token, as_sent=True)
    # Both compared, in constant time, whatever the first answer.
    ok_go = hmac.compare_digest(go_form.encode(), given)
    ok_sent = hmac.compare_digest(as_sent.encode(), given)
    return ok_go or ok_sent


# --- JSON ----------------------------------------------------------------------------------------
def encode_request(fields: Mapping[str, str | Decimal]) -> bytes:
    """A flat JSON object whose ``Decimal`` values are written as numbers with exactly two
    decimals (``20.00``): no float ever holds the amount."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, Decimal):
            if not value.is_finite() or value.quantize(CENT) != value:
                raise ValueError(f"{value} is not a whole number of fen")
            rendered = f"{value:.2f}"
        else:
            rendered = json.dumps(value, ensure_ascii=False)
        parts.append(f"{json.dumps(key)}:{rendered}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def decode_json(body: bytes) -> Any:
    """JSON with every fractional number as ``Decimal`` exactly as written, duplicate keys
    refused. Raises ``ValueError``."""
    return json.loads(
        body.decode("utf-8-sig"), parse_float=Decimal, object_pairs_hook=_no_duplicates
    )


def parse_amount(value: object) -> Decimal | None:
    """An amount exactly as sent (JSON number or string); None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    text = str(value).strip()
    if not _AMOUNT.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}", value.strip()):
        return int(value.strip())
    return None


def _text(value: object, *, limit: int) -> str:
    """A required short string field; "" if missing, not a string or too long."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # some forks send numeric ids
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value if len(value) <= limit else ""


class EpusdtGateway(Gateway):
    name = "epusdt"
    display_name = _("USDT (TRC-20)")
    # The gateway takes the order amount in CNY and converts it to USDT itself: the payment,
    # the notification's ``amount`` and our books all stay in CNY.
    default_currencies = ("CNY",)
    supports_refund = False
    option_fields = (
        ConfigField(
            "api_base",
            _("Gateway URL"),
            help_text=_(
                "The address of your epusdt server, e.g. https://epusdt.example.com (it is "
                "self-hosted, so there is no default). Use https."
            ),
        ),
        ConfigField(
            "create_path",
            _("Create path"),
            required=False,
            help_text=_("Empty: /api/v1/order/create-transaction."),
        ),
        ConfigField(
            "query_path",
            _("Query path"),
            required=False,
            help_text=_(
                "Only if your gateway offers a signed order query (epusdt itself does not); "
                "empty: no query, payments are confirmed by notifications alone."
            ),
        ),
        ConfigField(
            "confirm_by_query",
            _("Confirm notifications by query"),
            required=False,
            help_text=_(
                "true or false (default). Notifications carry no timestamp; with this on, each "
                "is confirmed through the query path before an order is paid."
            ),
        ),
        ConfigField(
            "amount_tolerance_usdt",
            _("USDT tolerance"),
            required=False,
            help_text=_(
                "How much less USDT than shown may arrive and still count as paid; empty: 0.01."
            ),
        ),
        ConfigField(
            "use_gateway_page",
            _("Use the gateway's cashier page"),
            required=False,
            help_text=_("true or false (default: our own pay page with address and QR code)."),
        ),
    )
    secret_fields = (
        ConfigField("api_token", _("API token"), help_text=_("The api_auth_token of epusdt.")),
    )

    # --- configuration -----------------------------------------------------------------------
    def _flag(self, name: str, *, default: bool) -> bool:
        """A true/false option as staff typed it; anything unrecognised means the default."""
        raw = self.config.options.get(name) if self.config is not None else None
        if isinstance(raw, bool):
            return raw
        text = str(raw if raw is not None else "").strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return default

    @property
    def confirm_by_query(self) -> bool:
        return self._flag("confirm_by_query", default=False)

    @property
    def use_gateway_page(self) -> bool:
        return self._flag("use_gateway_page", default=False)

    @property
    def tolerance(self) -> Decimal:
        raw = self.option("amount_tolerance_usdt", DEFAULT_TOLERANCE_USDT).strip()
        value = parse_amount(raw)
        if value is None:
            # A typo must not widen the window: the strictest reading.
            logger.warning("epusdt amount_tolerance_usdt is not a number; using 0")
            return Decimal(0)
        return value

    def _url(self, path: str) -> str:
        base = self.option("api_base").strip().rstrip("/")
        if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
            raise EpusdtAPIError("epusdt api_base is not an http(s) URL")
        path = path.strip()
        return base + (path if path.startswith("/") else "/" + path)

    def _token(self) -> str:
        """The API token; refuses to verify anything without one (an empty token would make
        every signature computable by anyone)."""
        token = self.secret("api_token")
        if not token.strip():
            raise InvalidSignature("epusdt api_token is not configured")
        return token

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        # ``amount`` is yuan: an order in another currency would be charged as CNY.
        return currency == "CNY" and super().accepts(amount=amount, currency=currency)

    # --- the API ---------------------------------------------------------------------------------
    def _call(
        self, path: str, fields: dict[str, str | Decimal], what: str, *, idempotent: bool
    ) -> dict[str, Any]:
        """POST a signed request; the envelope's ``data`` (``{}`` for ``NOT_FOUND``)."""
        try:
            token = self._token()
        except InvalidSignature:
            raise EpusdtAPIError("epusdt api_token is not configured") from None
        body = encode_request({**fields, "signature": md5_sign(fields, token)})
        try:
            # A create is sent once (twice could open two trades); a query may be retried.
            response = http.request(
                "POST",
                self._url(path),
                idempotent=idempotent,
                content=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise EpusdtAPIError(f"{what}: {type(exc).__name__}") from None
        try:
            answer = decode_json(response.content)
        except (UnicodeDecodeError, ValueError):
            raise EpusdtAPIError(f"{what}: HTTP {response.status_code}, not JSON") from None
        if not isinstance(answer, dict):
            raise EpusdtAPIError(f"{what}: unexpected answer")
        code = answer.get("status_code")
        if code == NOT_FOUND:
            return {}
        if code != 200 or response.status_code != 200:
            raise EpusdtAPIError(f"{what}: refused with status_code {str(code)[:8]}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise EpusdtAPIError(f"{what}: answer without data")
        return data

    def _expires_at(self, raw: object, payment: Payment) -> str:
        """When the buyer must have paid: the gateway's expiry (a unix time in epusdt, seconds
        left in BEpusdt) or the order's deadline, whichever comes first."""
        deadline = payment.order.expires_at
        value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        if value is not None and value > 10**12:
            value //= 1000  # milliseconds
        if value is not None and value > 10**9:
            deadline = min(deadline, datetime.fromtimestamp(value, UTC))
        elif value is not None and value > 0:
            deadline = min(deadline, datetime.fromtimestamp(time.time() + value, UTC))
        return timezone.localtime(deadline).isoformat(sep=" ", timespec="minutes")

    # --- paying ---------------------------------------------------------------------------------
    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        # ``mobile`` changes nothing: the buyer sends from a wallet app either way.
        if payment.currency != "CNY":
            raise GatewayUnavailable(f"epusdt cannot charge {payment.currency}")
        fields: dict[str, str | Decimal] = {
            "order_id": payment.reference,
            "amount": payment.amount,
            "notify_url": callback_url,
            "redirect_url": return_url,
        }
        data = self._call(
            self.option("create_path", DEFAULT_CREATE_PATH),
            fields,
            "create-transaction",
            idempotent=False,
        )
        trade_id = _text(data.get("trade_id"), limit=100)
        address = _text(data.get("token"), limit=128)
        pay_amount = parse_amount(data.get("actual_amount"))
        if not trade_id or not address or pay_amount is None or pay_amount <= 0:
            raise EpusdtAPIError("create-transaction: answer lacks trade_id, token or amount")
        if _text(data.get("order_id"), limit=64) != payment.reference:
            raise EpusdtAPIError("create-transaction: answered for another order")
        echoed = parse_amount(data.get("amount"))
        if echoed is not None and echoed != payment.amount:
            raise EpusdtAPIError("create-transaction: answered for another amount")
        payment_url = _text(data.get("payment_url"), limit=500)
        if urlsplit(payment_url).scheme not in ("http", "https"):
            payment_url = ""
        action_data = {
            "address": address,
            "pay_amount": go_number(pay_amount),
            "pay_currency": "USDT",
            "network": "TRC-20",
            "qr": address,
            "expires_at": self._expires_at(data.get("expiration_time"), payment),
            "trade_id": trade_id,
            "payment_url": payment_url,
        }
        if self.use_gateway_page and payment_url:
            redirect_url = payment_url
        else:
            redirect_url = self.hosted_pay_url(return_url=return_url, payment=payment)
        return PaymentAction(redirect_url=redirect_url, data=action_data)

    # --- notifications --------------------------------------------------------------------------
    def _verified_payload(self, body: bytes, token: str) -> dict[str, Any]:
        try:
            payload = decode_json(body)
        except (UnicodeDecodeError, ValueError):
            raise MalformedNotification("body is not JSON") from None
        if not isinstance(payload, dict):
            raise MalformedNotification("body is not a JSON object")
        if not signature_valid(payload, token):
            raise InvalidSignature("signature mismatch")
        return payload

    def _event(self, payload: Mapping[str, Any], *, reference: str) -> VerifiedEvent:
        """The paid event a verified notification (or query answer) states, after checking it
        against what we showed the buyer."""
        trade_id = _text(payload.get("trade_id"), limit=100)
        tx_id = _text(payload.get("block_transaction_id"), limit=128)
        amount = parse_amount(payload.get("amount"))
        received = parse_amount(payload.get("actual_amount"))
        if not trade_id or not tx_id or amount is None or received is None:
            raise MalformedNotification("missing trade_id, block_transaction_id or amounts")
        from orders.models import Payment

        payment = Payment.objects.filter(reference=reference, gateway=self.name).first()
        if payment is None:
            raise UnknownPayment("order_id is not one of our epusdt payments")
        shown = payment.gateway_data or {}
        address = _text(payload.get("token"), limit=128)
        mismatch: AmountMismatch | None = None
        if shown.get("address") and address != shown["address"]:
            mismatch = AddressMismatch(f"payment {payment.pk}: paid to another address")
        expected = parse_amount(shown.get("pay_amount"))
        if mismatch is None and expected is not None and received < expected - self.tolerance:
            mismatch = AmountMismatch(f"payment {payment.pk}: {received} USDT, not {expected}")
        if mismatch is not None:
            # Genuine but wrong money: the service flags the order for staff when it can tell
            # which payment a rejection is about (see the report on handle_callback).
            mismatch.payment_reference = reference  # type: ignore[attr-defined]
            raise mismatch
        return VerifiedEvent(
            event_id=f"{trade_id}:{STATUS_PAID}",
            kind="paid",
            payment_reference=reference,
            amount=amount,
            currency="CNY",
            gateway_trade_id=tx_id,
        )

    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        token = self._token()
        payload = self._verified_payload(request.body, token)
        status = _status(payload.get("status"))
        if status in (STATUS_WAITING, STATUS_EXPIRED):
            # Genuine, nothing to do: acknowledged so the gateway stops retrying.
            raise IgnoredNotification(f"trade status {status}")
        if status != STATUS_PAID:
            raise MalformedNotification("unknown trade status")
        reference = _text(payload.get("order_id"), limit=40)
        if not reference:
            # Never truncated: a cut-off reference could name another payment.
            raise UnknownPayment("order_id is not one of ours")
        event = self._event(payload, reference=reference)
        if not self._already_applied(event) and self.confirm_by_query:
            self._confirm(event, trade_id=_text(payload.get("trade_id"), limit=100))
        return event

    def _already_applied(self, event: VerifiedEvent) -> bool:
        """Whether this exact event was applied to this payment before (the service then
        answers it as a duplicate, so asking the gateway again is pointless). A transfer already
        bound to another payment is refused here, before any query."""
        from orders.models import Payment, PaymentEvent

        bound_elsewhere = (
            Payment.objects.filter(gateway=self.name, gateway_trade_id=event.gateway_trade_id)
            .exclude(reference=event.payment_reference)
            .exists()
        )
        if bound_elsewhere:
            raise TradeAlreadyBound(f"transfer {event.gateway_trade_id!r} pays another order")
        return PaymentEvent.objects.filter(
            gateway=self.name,
            event_id=event.event_id,
            payment__reference=event.payment_reference,
        ).exists()

    def _confirm(self, event: VerifiedEvent, *, trade_id: str) -> None:
        """The query API must say: paid, the same trade, transfer and amount."""
        query_path = self.option("query_path").strip()
        if not query_path:
            # Asked to confirm with nothing to ask: fail closed, staff see "unconfirmed".
            raise Unconfirmed("confirm_by_query is on but no query_path is configured")
        try:
            answer = self._query(event.payment_reference, trade_id=trade_id)
        except EpusdtAPIError as exc:
            raise Unconfirmed(f"query failed: {exc}") from None
        except PaymentRejected as exc:
            raise Unconfirmed(f"query answer refused: {exc.code}") from None
        if answer is None:
            raise Unconfirmed("the gateway does not report this order as paid")
        if (answer.gateway_trade_id, answer.amount, answer.event_id) != (
            event.gateway_trade_id,
            event.amount,
            event.event_id,
        ):
            raise Unconfirmed("the gateway reports another transfer or amount")

    def reply_accepted(self) -> CallbackReply:
        # epusdt compares the body with "ok" exactly.
        return CallbackReply(status=200, body="ok")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        # The gateway only looks for "ok"; the reason is in our notification log.
        return CallbackReply(status=400, body="fail")

    # --- query ---------------------------------------------------------------------------------
    def _query(self, reference: str, *, trade_id: str) -> VerifiedEvent | None:
        """The gateway's signed answer about our order: a paid event, or None while it is not
        paid. Raises ``EpusdtAPIError`` or a ``PaymentRejected``."""
        fields: dict[str, str | Decimal] = {"order_id": reference}
        if trade_id:
            fields["trade_id"] = trade_id
        data = self._call(self.option("query_path"), fields, "query", idempotent=True)
        if not data:
            return None
        if not signature_valid(data, self._token()):
            raise InvalidSignature("query answer signature mismatch")
        if _text(data.get("order_id"), limit=40) != reference:
            raise EpusdtAPIError("query answered for another order")
        status = _status(data.get("status"))
        if status != STATUS_PAID:
            if status not in (STATUS_WAITING, STATUS_EXPIRED):
                logger.warning("epusdt query: unknown status %s", str(status)[:8])
            return None
        return self._event(data, reference=reference)

    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        if not self.option("query_path").strip():
            # No query API: reconciliation relies on the gateway's notifications (it retries).
            return None
        trade_id = str((payment.gateway_data or {}).get("trade_id", ""))
        return self._query(payment.reference, trade_id=trade_id)

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        raise OnChainRefundUnsupported(
            "epusdt cannot refund an on-chain transfer: refund it by hand"
        )
