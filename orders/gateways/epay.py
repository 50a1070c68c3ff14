"""易支付 (epay, "彩虹易支付" v1 / MD5) protocol: the one most Chinese payment aggregators speak.

Wire format (this module is the only place that knows it):
  * Signature: ``md5("k1=v1&k2=v2…" + key)``, lower-case hex, over every parameter except
    ``sign`` and ``sign_type`` whose value is not empty (PHP's ``trim($v) === ''`` counts as
    empty), sorted by key, values raw (not URL-encoded); ``sign_type=MD5`` travels unsigned.
  * Pay: the buyer is redirected to ``{api_base}submit.php?pid, type, out_trade_no,
    notify_url, return_url, name, money, sign, sign_type`` (no call from us).
  * Notification: the aggregator requests ``notify_url`` with ``pid, trade_no, out_trade_no,
    type, name, money, trade_status=TRADE_SUCCESS`` (+ optional ``param``, ``api_trade_no``,
    ``buyer``), ``sign, sign_type`` — as a GET query (Rainbow epay itself) or a POST form
    (several clones); both are accepted. It waits for a body containing ``success`` and
    retries otherwise (Rainbow: 1 min, 3 min, 20 min, 1 h, 2 h).
  * Query: ``GET {api_base}api.php?act=order&pid=&key=&out_trade_no=`` → JSON ``{"code": 1,
    "trade_no", "out_trade_no", "pid", "money", "status": 1 (paid) | 0 (unpaid) | 2 (refunded)
    | 3 (frozen), …}``, ``code -1`` when the order does not exist. Authenticated by the key in
    the URL (the protocol's choice: use an https ``api_base``); the answer itself is unsigned.
  * Refund (optional, many aggregators switch it off): ``POST {api_base}api.php?act=refund``
    form ``pid, key, trade_no | out_trade_no, money`` → JSON ``code`` 1 (Z-Pay and older
    Rainbow) or 0 (current Rainbow's ``Order::refund``) on success, negative on refusal.

What this was checked against (public code, read for the protocol only): Rainbow epay's
``includes/lib/Payment.php`` (``getSignContent``/``makeSign``) and ``includes/functions.php``
(``creat_callback``: how the notification is built and sent, money as ``(float)``) in
lyons-bin/eappay; Rainbow's ``api.php`` (``act=order`` answer and ``act=refund``), and Z-Pay /
linux.do-credit clients of the same protocol.

Traps handled:
  * No timestamp and no nonce: a captured notification verifies forever. So the trade is bound
    (``trade_no`` → ``gateway_trade_id``, unique per gateway), the event id is
    ``"{trade_no}:{trade_status}"`` (a replay is a duplicate), and with ``confirm_by_query`` (the
    default) a notification only pays once the query API confirms status 1 with the same
    ``trade_no`` and money. A replay of an event already applied skips the query and gets the
    same ``success``; the same ``trade_no`` claimed for another order is refused
    (``trade_bound_to_other_payment``) rather than answered as a duplicate.
  * MD5 over a shared key proves only "someone with our key": ``pid`` must still be ours.
  * Rainbow casts money to ``(float)`` before signing: ``12.00`` arrives as ``12``, ``9.90`` as
    ``9.9``. Amounts are ``Decimal`` exactly as sent and compared numerically (never as text,
    never float).
  * ``sign_type`` other than MD5 (the RSA "v2" notifications) is refused, not downgraded.
  * Errors never carry the request URL (it holds the key): transport failures are re-raised as
    our own exceptions without their cause.
  * The ``name`` sent to ``submit.php`` is stripped of characters some clones escape before
    verifying (``& = < > " ' \\ % +``), which would otherwise break the signature.
  * CNY only: ``money`` is yuan whatever currency we think it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import httpx
from django.utils.translation import gettext_lazy as _

from orders import http
from orders.exceptions import (
    GatewayUnavailable,
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
PAID_STATUS = "TRADE_SUCCESS"
DEFAULT_PAY_TYPES = "alipay,wxpay"
# Amounts as aggregators format them ("12", "12.00", "9.9"); no sign, exponent or NaN.
_AMOUNT = re.compile(r"\d{1,12}(\.\d{1,8})?")
# What PHP's trim() strips: a value made only of these is "empty" and left out of the signature.
_PHP_TRIM = " \t\n\r\0\x0b"
_NAME_FORBIDDEN = re.compile(r"[&=<>\"'\\%+\x00-\x1f\x7f]")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Unconfirmed(PaymentRejected):
    """A correctly signed notification the aggregator's query API did not confirm (unpaid,
    another trade, another amount, or the API could not be asked). Answered ``fail``, so the
    aggregator retries later; the reconcile job queries too."""

    code = "unconfirmed"


class ManualRefundRequired(GatewayUnavailable):
    """The refund API is switched off for this aggregator (``supports_refund_api``): staff pay
    the buyer back by hand. ``supports_refund`` is then False, so the refund service records a
    manual refund and never calls ``refund``; this is raised only if it is called anyway."""

    user_message = _("This payment method cannot refund automatically; refund it by hand.")


class EpayAPIError(GatewayUnavailable):
    """The query or refund API could not be asked, or answered something unreadable."""


# --- signatures ----------------------------------------------------------------------------------
def sign_content(params: dict[str, str]) -> str:
    """``k=v&k=v…`` of the signed parameters, sorted by key, values raw."""
    return "&".join(
        f"{k}={params[k]}"
        for k in sorted(params)
        if k not in ("sign", "sign_type") and params[k].strip(_PHP_TRIM)
    )


def md5_sign(params: dict[str, str], key: str) -> str:
    # MD5 is the protocol's choice, not ours; it is not used for anything else.
    return hashlib.md5((sign_content(params) + key).encode("utf-8")).hexdigest()  # nosec B324  # noqa: S324


def _yuan(amount: Decimal) -> str:
    if amount.quantize(CENT) != amount:
        raise ValueError(f"{amount} is not a whole number of fen")
    return f"{amount:.2f}"


def _decimal(value: object) -> Decimal | None:
    """An amount exactly as sent (JSON string or number parsed as Decimal); None if not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    text = str(value).strip()
    if not _AMOUNT.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


class EpayGateway(Gateway):
    name = "epay"
    display_name = _("Epay (易支付 aggregator)")
    default_currencies = ("CNY",)
    option_fields = (
        ConfigField(
            "api_base",
            _("API base URL"),
            help_text=_(
                "The aggregator's interface address (接口地址), e.g. https://pay.example.com/ — "
                "submit.php and api.php live under it. Use https: the query API sends the key "
                "in the URL."
            ),
        ),
        ConfigField("pid", _("Merchant ID (PID)"), help_text=_("Your merchant id (商户ID).")),
        ConfigField(
            "pay_types",
            _("Payment types"),
            required=False,
            help_text=_(
                "Comma-separated channel types the aggregator offers; empty: alipay,wxpay."
            ),
        ),
        ConfigField(
            "default_type",
            _("Default payment type"),
            required=False,
            help_text=_("The type orders use; empty: the first of the payment types."),
        ),
        ConfigField(
            "confirm_by_query",
            _("Confirm notifications by query"),
            required=False,
            help_text=_(
                "true (default) or false. Epay notifications carry no timestamp, so a captured "
                "one stays valid forever; with this on, each is confirmed with the query API "
                "before an order is paid."
            ),
        ),
        ConfigField(
            "supports_refund_api",
            _("Refund through the API"),
            required=False,
            help_text=_(
                "true or false (default). Only if your aggregator offers api.php?act=refund; "
                "otherwise refunds are recorded for staff to pay out by hand."
            ),
        ),
    )
    secret_fields = (
        ConfigField("key", _("Merchant key"), help_text=_("The merchant MD5 key (商户密钥).")),
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
    def supports_refund(self) -> bool:  # type: ignore[override]
        # Overrides the base class's ClassVar: whether refunds go through the aggregator's API
        # is per installation, not per protocol.
        return self._flag("supports_refund_api", default=False)

    @property
    def confirm_by_query(self) -> bool:
        return self._flag("confirm_by_query", default=True)

    @property
    def api_base(self) -> str:
        base = self.option("api_base").strip()
        if not base:
            raise GatewayUnavailable("epay api_base is not configured")
        return base if base.endswith("/") else base + "/"

    @property
    def pay_type(self) -> str:
        default = self.option("default_type").strip()
        if default:
            return default
        types = [t.strip() for t in self.option("pay_types", DEFAULT_PAY_TYPES).split(",")]
        return next((t for t in types if t), "alipay")

    def _credentials(self) -> tuple[str, str]:
        """Our pid and key; refuses to verify anything without both (an empty key would make
        every signature computable by anyone)."""
        pid = self.option("pid").strip()
        key = self.secret("key")
        if not pid or not key.strip():
            raise InvalidSignature("epay pid or key is not configured")
        return pid, key

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        # money is yuan: an order in another currency would be charged as CNY.
        return currency == "CNY" and super().accepts(amount=amount, currency=currency)

    # --- paying --------------------------------------------------------------------------------
    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        # ``mobile`` changes nothing: submit.php picks the cashier from the buyer's browser.
        if payment.currency != "CNY":
            raise GatewayUnavailable(f"epay cannot charge {payment.currency}")
        try:
            pid, key = self._credentials()
        except InvalidSignature:
            raise GatewayUnavailable("epay pid or key is not configured") from None
        order = payment.order
        name = _NAME_FORBIDDEN.sub(" ", order.product.title).strip()[:64]
        params = {
            "pid": pid,
            "type": self.pay_type,
            "out_trade_no": payment.reference,
            "notify_url": callback_url,
            "return_url": return_url,
            "name": name or f"Order {order.number}",
            "money": _yuan(payment.amount),
        }
        params["sign"] = md5_sign(params, key)
        params["sign_type"] = "MD5"
        return PaymentAction(redirect_url=f"{self.api_base}submit.php?{urlencode(params)}")

    # --- notifications -------------------------------------------------------------------------
    @staticmethod
    def _notification_params(request: CallbackRequest) -> dict[str, str]:
        """The parameters from the POST form, else a form-encoded POST body, else the query."""
        if request.form:
            return dict(request.form)
        if request.method.upper() == "POST" and request.body:
            try:
                pairs = parse_qsl(
                    request.body.decode("utf-8"),
                    keep_blank_values=True,
                    strict_parsing=True,
                    max_num_fields=100,
                )
            except (UnicodeDecodeError, ValueError):
                raise MalformedNotification("body is not a form") from None
            params = dict(pairs)
            if len(params) != len(pairs):
                raise MalformedNotification("repeated form field")  # which one was signed?
            return params
        return dict(request.query)

    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        pid, key = self._credentials()
        params = self._notification_params(request)
        signature = params.get("sign", "").strip().lower()
        if not signature:
            raise InvalidSignature("notification is not signed")
        if params.get("sign_type", "MD5").strip().upper() != "MD5":
            raise InvalidSignature("only MD5 notifications are accepted")
        expected = md5_sign(params, key)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8")):
            raise InvalidSignature("signature mismatch")

        # Genuine for our key; the merchant id must be ours all the same.
        if params.get("pid", "").strip() != pid:
            raise UnknownPayment("notification is for another merchant")
        status = params.get("trade_status", "")
        if status != PAID_STATUS:
            raise MalformedNotification("unknown trade status")
        trade_no = params.get("trade_no", "").strip()
        reference = params.get("out_trade_no", "").strip()
        amount = _decimal(params.get("money", ""))
        if not trade_no or len(trade_no) > 100:
            raise MalformedNotification("missing or oversized trade_no")
        if amount is None:
            raise MalformedNotification("malformed money")
        if not reference or len(reference) > 40:
            # Never truncated: a cut-off reference could name another payment.
            raise UnknownPayment("out_trade_no is not one of ours")
        event = VerifiedEvent(
            event_id=f"{trade_no}:{status}",
            kind="paid",
            payment_reference=reference,
            amount=amount,
            currency="CNY",
            gateway_trade_id=trade_no,
        )
        if not self._already_applied(event) and self.confirm_by_query:
            self._confirm(event)
        return event

    def _already_applied(self, event: VerifiedEvent) -> bool:
        """Whether this exact event was applied to this payment before. Then the service answers
        it as a duplicate, changing nothing, so asking the aggregator again is pointless — and
        would turn a harmless retry into ``fail`` once the trade is refunded or the API is down.

        The event id is derived from ``trade_no`` alone, and the service dedupes on the id
        alone: a (signed) notification naming another order with an already applied trade would
        be answered as a "duplicate" of it. It is refused here instead, as is a trade already
        bound to another payment (which the service would refuse too, after a useless query)."""
        from orders.models import Payment, PaymentEvent

        applied_to = (
            PaymentEvent.objects.filter(gateway=self.name, event_id=event.event_id)
            .values_list("payment__reference", flat=True)
            .first()
        )
        bound_elsewhere = (
            Payment.objects.filter(gateway=self.name, gateway_trade_id=event.gateway_trade_id)
            .exclude(reference=event.payment_reference)
            .exists()
        )
        if bound_elsewhere or (applied_to is not None and applied_to != event.payment_reference):
            raise TradeAlreadyBound(f"trade {event.gateway_trade_id!r} pays another order")
        return applied_to is not None

    def _confirm(self, event: VerifiedEvent) -> None:
        """The query API must say: paid, the same trade, the same money."""
        try:
            answer = self._query(event.payment_reference)
        except EpayAPIError as exc:
            raise Unconfirmed(f"query failed: {exc}") from None
        if answer is None:
            raise Unconfirmed("the aggregator does not know this order")
        if str(answer.get("status", "")).strip() != "1":
            raise Unconfirmed("the aggregator says the order is not paid")
        if str(answer.get("trade_no", "")).strip() != event.gateway_trade_id:
            raise Unconfirmed("the aggregator reports another trade for this order")
        if _decimal(answer.get("money")) != event.amount:
            raise Unconfirmed("the aggregator reports another amount")

    def reply_accepted(self) -> CallbackReply:
        return CallbackReply(status=200, body="success")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        # The aggregator only looks for "success"; the reason is in our notification log.
        return CallbackReply(status=400, body="fail")

    # --- the APIs ------------------------------------------------------------------------------
    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise EpayAPIError(f"{what}: HTTP {response.status_code}")
        try:
            # Numbers as Decimal: a money of 12.00 sent as a JSON number must not become float.
            body = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError):
            raise EpayAPIError(f"{what}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise EpayAPIError(f"{what}: unexpected answer")
        return body

    def _query(self, reference: str) -> dict[str, Any] | None:
        """The ``act=order`` answer for our order, checked to be about it; None if the
        aggregator has no such order. Raises ``EpayAPIError``."""
        try:
            pid, key = self._credentials()
        except InvalidSignature:
            raise EpayAPIError("epay pid or key is not configured") from None
        params = {"act": "order", "pid": pid, "key": key, "out_trade_no": reference}
        try:
            response = http.request(
                "GET", self.api_base + "api.php", idempotent=True, params=params
            )
        except httpx.HTTPError as exc:
            # The exception carries the URL, and the URL carries the key: drop it.
            raise EpayAPIError(f"query: {type(exc).__name__}") from None
        body = self._json(response, "query")
        code = str(body.get("code", "")).strip()
        if code == "-1":
            return None  # 订单号不存在: the buyer never reached the cashier
        if code != "1":
            # -2 key rejected, -3 unknown pid, -4 missing parameter: a configuration problem.
            raise EpayAPIError(f"query refused with code {code[:8]}")
        if str(body.get("out_trade_no", "")).strip() != reference:
            raise EpayAPIError("query answered for another order")
        answered_pid = str(body.get("pid", "")).strip()
        if answered_pid and answered_pid != pid:
            raise EpayAPIError("query answered for another merchant")
        return body

    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        try:
            answer = self._query(payment.reference)
        except EpayAPIError as exc:
            raise Unconfirmed(str(exc)) from None
        if answer is None:
            return None
        status = str(answer.get("status", "")).strip()
        if status != "1":
            # 0 unpaid; 2 refunded / 3 frozen at the aggregator: nothing for us to deliver.
            if status not in ("", "0"):
                logger.warning("epay query: order in status %s", status[:8])
            return None
        trade_no = str(answer.get("trade_no", "")).strip()
        amount = _decimal(answer.get("money"))
        if not trade_no or len(trade_no) > 100 or amount is None:
            raise Unconfirmed("query answer lacks trade_no or money")
        return VerifiedEvent(
            event_id=f"query:{trade_no}",
            kind="paid",
            payment_reference=payment.reference,
            amount=amount,
            currency="CNY",
            gateway_trade_id=trade_no,
        )

    @staticmethod
    def refund_request_no(*, payment: Payment, reason: str) -> str:
        """Our id for the refund, derived from the caller's request id (``reason``)."""
        digest = hashlib.sha256(f"{payment.reference}|{reason}".encode()).hexdigest()
        return "R" + digest[:31]

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        if not self.supports_refund:
            raise ManualRefundRequired("epay refund API is switched off: refund by hand")
        try:
            pid, key = self._credentials()
        except InvalidSignature:
            raise EpayAPIError("epay pid or key is not configured") from None
        request_no = self.refund_request_no(payment=payment, reason=reason)
        data = {
            "pid": pid,
            "key": key,
            "out_trade_no": payment.reference,
            "money": _yuan(amount),
            # Ignored by aggregators that do not dedupe refunds; those that do (current
            # Rainbow's Order::refund takes one) then refund a retried request once.
            "out_refund_no": request_no,
        }
        if payment.gateway_trade_id:
            data["trade_no"] = payment.gateway_trade_id
        try:
            # Not idempotent: the v1 refund API has no reliable request id, and a repeat could
            # pay out twice. A lost answer leaves the refund failed for a person to check.
            response = http.request(
                "POST", self.api_base + "api.php?act=refund", idempotent=False, data=data
            )
        except httpx.HTTPError as exc:
            raise EpayAPIError(f"refund: {type(exc).__name__}") from None
        body = self._json(response, "refund")
        code = str(body.get("code", "")).strip()
        if code not in ("0", "1"):
            logger.warning("epay refund refused with code %s", code[:8])
            return RefundResult(
                refund_id="",
                amount=Decimal(0),
                succeeded=False,
                failure=f"epay refused the refund: code {code[:8]}",
            )
        refund_id = str(body.get("refund_no") or request_no)[:128]
        return RefundResult(refund_id=refund_id, amount=amount, succeeded=True)
