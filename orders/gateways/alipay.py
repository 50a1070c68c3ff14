"""Alipay (支付宝) open platform: desktop page pay, mobile wap pay, async notifications, trade
query and refund, signed with RSA2 (SHA256withRSA, PKCS#1 v1.5) on ``cryptography`` (no SDK).

Wire format (this module is the only place that knows it):
  * Requests carry the common parameters ``app_id, method, format=JSON, charset=utf-8,
    sign_type=RSA2, timestamp`` (Beijing time, ``yyyy-MM-dd HH:mm:ss``), ``version=1.0`` and
    ``biz_content`` (JSON); ``sign`` = base64 RSA2 signature with the app private key over
    ``k=v&k=v…`` of every non-empty parameter except ``sign``, sorted by key, values raw (not
    URL-encoded). Page/wap pay is that parameter set as a redirect to the gateway URL (no call
    from us); query and refund are form POSTs to it.
  * Async notification: a form POST to ``notify_url``. The signature (Alipay's key) covers every
    parameter except ``sign`` and ``sign_type``, sorted the same way. The answer Alipay waits for
    is exactly ``success``; anything else is retried for about 25 hours (4m, 10m, 10m, 1h, 2h,
    6h, 15h).
  * API responses: ``{"<method>_response": {…}, "sign": "…"}``; the signature covers the exact
    text of the ``<method>_response`` value as it appears in the body.

Traps handled:
  * Alipay signs every app's notifications with the same platform key, so a genuine
    notification from another app (say an attacker's own, paid 0.01 with our reference as
    ``out_trade_no``) verifies: ``app_id`` (and ``seller_id`` when configured) must be ours, and
    the service compares the amount exactly with our payment row.
  * Canonicalisation differs between Alipay's SDKs and notification kinds: empty values dropped
    or kept, and ``fund_bill_list`` arriving HTML-escaped (``&quot;``) while signed unescaped.
    Each variant is a deterministic function of what we received, and the fields we act on are
    read from the variant that verified.
  * Response signatures are checked over the raw body text (key order, ``\\/`` escapes and
    non-ASCII text survive), never over re-serialised JSON; ``sign_type`` must be RSA2 (no
    downgrade to SHA-1 ``RSA``).
  * ``notify_time``: Alipay retries for ~25 h, so a notification is stale only when older than
    48 h, or dated in the future beyond the callback window.
  * ``WAIT_BUYER_PAY`` and refund notifications change nothing, but are answered ``success`` so
    Alipay stops retrying (see ``IgnoredNotification``).
  * ``time_expire`` = the order's deadline: Alipay will not take money for an expired order.
  * Keys are accepted as PEM or as the bare base64 body Alipay's console shows (PKCS#8 or
    PKCS#1 private keys, SubjectPublicKeyInfo or PKCS#1 public keys).
  * CNY only: Alipay charges ``total_amount`` in yuan whatever currency we think it is.
  * A refund answered ``code=10000`` is done only with ``fund_change=Y``; otherwise (a repeat,
    or a refund Alipay has not finished) ``alipay.trade.fastpay.refund.query`` decides:
    ``refund_status=REFUND_SUCCESS`` is done, no status is "not received or failed". Until the
    query can tell, the refund stays pending (the repair job asks again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import logging
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
    StaleNotification,
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

DEFAULT_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
# China has had no daylight saving time since 1991: a fixed offset needs no tz database.
BEIJING = dt_timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CENT = Decimal("0.01")
# Alipay retries for ~25 h; a margin on top, never unbounded.
NOTIFY_MAX_AGE = timedelta(hours=48)
SUCCESS_CODE = "10000"
REFUND_QUERY_METHOD = "alipay.trade.fastpay.refund.query"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
# Amounts exactly as Alipay formats them: yuan with at most two decimals (no exponent, no NaN).
_AMOUNT = re.compile(r"\d{1,10}(\.\d{1,2})?")
_REQUEST_NO = re.compile(r"R[0-9a-f]{40}")
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END)[A-Z0-9 ]*-----")
# Alipay refuses these in ``subject``.
_SUBJECT_FORBIDDEN = re.compile(r"[/=&\x00-\x1f\x7f]")
_JSON_WS = re.compile(r"[ \t\n\r]*")


# --- keys and signatures ------------------------------------------------------------------------
def _der_from_text(text: str) -> bytes:
    """PEM or the bare base64 body Alipay's console shows (with or without line breaks)."""
    body = "".join(_PEM_ARMOUR.sub("", text).split())
    if not body:
        raise ValueError("empty key")
    return base64.b64decode(body, validate=True)


@lru_cache(maxsize=16)
def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An RSA private key as PKCS#8 or PKCS#1, PEM or bare base64. Raises ``ValueError``."""
    key = serialization.load_der_private_key(_der_from_text(text), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@lru_cache(maxsize=16)
def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key as SubjectPublicKeyInfo or PKCS#1, PEM or bare base64."""
    key = serialization.load_der_public_key(_der_from_text(text))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def sign_content(params: dict[str, str], *, exclude: frozenset[str]) -> str:
    """``k=v&k=v…`` of the non-empty parameters, sorted by key, values raw."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k])


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    signature = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (CryptoInvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _top_level_members(text: str) -> dict[str, tuple[str, Any]]:
    """The members of a JSON object as ``name → (exact source text of the value, value)``.

    Alipay signs the response object's text as it sent it, so the signed bytes must be cut out
    of the body rather than re-serialised (which would change key order, escapes, spacing)."""
    decoder = json.JSONDecoder()

    def skip(pos: int) -> int:
        match = _JSON_WS.match(text, pos)
        return match.end() if match else pos

    members: dict[str, tuple[str, Any]] = {}
    pos = skip(0)
    if text[pos : pos + 1] != "{":
        raise ValueError("not a JSON object")
    pos = skip(pos + 1)
    if text[pos : pos + 1] == "}":
        return members
    while True:
        name, pos = decoder.raw_decode(text, pos)
        pos = skip(pos)
        if not isinstance(name, str) or text[pos : pos + 1] != ":":
            raise ValueError("malformed member")
        start = skip(pos + 1)
        value, end = decoder.raw_decode(text, start)
        if name in members:
            raise ValueError("duplicate member")  # which one was signed would be ambiguous
        members[name] = (text[start:end], value)
        pos = skip(end)
        separator = text[pos : pos + 1]
        pos = skip(pos + 1)
        if separator == "}":
            break
        if separator != ",":
            raise ValueError("malformed object")
    if pos != len(text):
        raise ValueError("trailing data")
    return members


def _beijing_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def _yuan(amount: Decimal) -> str:
    if amount.quantize(CENT) != amount:
        raise ValueError(f"{amount} is not a whole number of fen")
    return f"{amount:.2f}"


class AlipayGateway(Gateway):
    name = "alipay"
    display_name = _("Alipay")
    default_currencies = ("CNY",)
    supports_refund = True
    supports_refund_query = True
    option_fields = (
        ConfigField("app_id", _("App ID"), help_text=_("The APPID of your Alipay open app.")),
        ConfigField(
            "alipay_public_key",
            _("Alipay public key"),
            help_text=_(
                "The Alipay public key (支付宝公钥) shown for your app, PEM or the bare base64 "
                "text; not your app's own public key."
            ),
            multiline=True,
        ),
        ConfigField(
            "gateway_url",
            _("Gateway URL"),
            required=False,
            help_text=_(
                "Empty: https://openapi.alipay.com/gateway.do. The sandbox is "
                "https://openapi-sandbox.dl.alipaydev.com/gateway.do."
            ),
        ),
        ConfigField(
            "seller_id",
            _("Seller ID (PID)"),
            required=False,
            help_text=_("Your 2088… merchant id; if set, notifications for other sellers fail."),
        ),
    )
    secret_fields = (
        ConfigField(
            "app_private_key",
            _("App private key"),
            help_text=_("The app private key (应用私钥), PEM or bare base64, PKCS#8 or PKCS#1."),
            multiline=True,
        ),
    )

    # --- configuration -----------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return self.option("gateway_url", DEFAULT_GATEWAY_URL)

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        # Alipay charges total_amount in yuan: a USD order would be charged as CNY.
        return currency == "CNY" and super().accepts(amount=amount, currency=currency)

    def _private_key(self) -> rsa.RSAPrivateKey:
        text = self.secret("app_private_key")
        if not text.strip():
            raise GatewayUnavailable("alipay app private key is not configured")
        try:
            return load_private_key(text)
        except ValueError:
            raise GatewayUnavailable("alipay app private key cannot be read") from None

    def _verifier(self) -> tuple[str, rsa.RSAPublicKey]:
        """Our app id and Alipay's public key; refuses to verify anything when the gateway is
        not fully configured (an empty credential must never make a notification "valid")."""
        app_id = self.option("app_id").strip()
        public_text = self.option("alipay_public_key")
        if not app_id or not public_text.strip() or not self.secret("app_private_key").strip():
            raise InvalidSignature("alipay is not fully configured")
        try:
            return app_id, load_public_key(public_text)
        except ValueError:
            raise InvalidSignature("alipay public key cannot be read") from None

    # --- requests ------------------------------------------------------------------------------
    def _signed_params(self, method: str, biz: dict[str, str], **extra: str) -> dict[str, str]:
        params = {
            "app_id": self.option("app_id").strip(),
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": _beijing_time(timezone.now()),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **extra,
        }
        params = {k: v for k, v in params.items() if v}
        params["sign"] = rsa2_sign(
            self._private_key(), sign_content(params, exclude=frozenset({"sign"}))
        )
        return params

    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        if payment.currency != "CNY":
            raise GatewayUnavailable(f"alipay cannot charge {payment.currency}")
        order = payment.order
        subject = _SUBJECT_FORBIDDEN.sub(" ", order.product.title).strip()[:128]
        biz = {
            "out_trade_no": payment.reference,
            "total_amount": _yuan(payment.amount),
            "subject": subject or f"Order {order.number}",
            "product_code": "QUICK_WAP_WAY" if mobile else "FAST_INSTANT_TRADE_PAY",
            # Alipay closes the trade at our deadline instead of taking money for an expired
            # order (late payments are still honoured by the service if they happen).
            "time_expire": _beijing_time(order.expires_at),
        }
        if mobile:
            # Where the wap cashier's "back" button leads.
            biz["quit_url"] = return_url
        params = self._signed_params(
            "alipay.trade.wap.pay" if mobile else "alipay.trade.page.pay",
            biz,
            notify_url=callback_url,
            return_url=return_url,
        )
        separator = "&" if "?" in self.gateway_url else "?"
        return PaymentAction(redirect_url=self.gateway_url + separator + urlencode(params))

    def _call(self, method: str, biz: dict[str, str]) -> dict[str, Any]:
        """POST one API call and return its verified ``<method>_response`` object.

        Safe to retry: queries are reads, refunds are deduplicated by ``out_request_no``. Raises
        ``InvalidSignature`` when the answer is not signed by Alipay, ``MalformedNotification``
        when it cannot be read, ``httpx.HTTPError`` on transport or HTTP errors."""
        _app_id, public_key = self._verifier()
        response = http.request(
            "POST", self.gateway_url, idempotent=True, data=self._signed_params(method, biz)
        )
        response.raise_for_status()
        try:
            members = _top_level_members(response.content.decode("utf-8"))
        except ValueError:  # includes JSON and UTF-8 decode errors
            raise MalformedNotification(f"{method}: unreadable response") from None
        key = method.replace(".", "_") + "_response"
        if key not in members:
            key = "error_response"  # what Alipay answers when it rejects the request itself
        raw, body = members.get(key, ("", None))
        sign_member = members.get("sign", ("", ""))[1]
        if not isinstance(body, dict) or not isinstance(sign_member, str):
            raise MalformedNotification(f"{method}: unexpected response shape")
        # Alipay's own SDK retries without JSON's optional "\/" escape: some responses are
        # signed over the unescaped text.
        candidates = [raw] if "\\/" not in raw else [raw, raw.replace("\\/", "/")]
        if not sign_member or not any(rsa2_verify(public_key, c, sign_member) for c in candidates):
            logger.warning(
                "alipay response signature invalid",
                extra={"method": method, "code": str(body.get("code", ""))[:10]},
            )
            raise InvalidSignature(f"{method}: response signature invalid")
        return body

    # --- notifications -------------------------------------------------------------------------
    @staticmethod
    def _notification_params(request: CallbackRequest) -> dict[str, str]:
        """The form fields, parsed from the raw body (duplicates refused: which one Alipay
        signed would be ambiguous), or from the parsed form if there is no body."""
        if not request.body:
            return dict(request.form)
        try:
            pairs = parse_qsl(
                # UTF-8, not ASCII: some senders put raw UTF-8 (e.g. a Chinese subject) in the
                # form instead of percent-encoding it, and a refusal would leave a paid order.
                request.body.decode("utf-8"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=200,
            )
        except (UnicodeDecodeError, ValueError):
            raise MalformedNotification("body is not a form") from None
        params = dict(pairs)
        if len(params) != len(pairs):
            raise MalformedNotification("repeated form field")
        return params

    @staticmethod
    def _verified_params(
        params: dict[str, str], signature: str, key: rsa.RSAPublicKey
    ) -> dict[str, str]:
        """The variant of ``params`` that Alipay's signature covers; ``InvalidSignature`` if none.

        Variants: empty values dropped (the documented rule), kept (the Java SDK's v1 check),
        and HTML-unescaped (``fund_bill_list`` arrives as ``&quot;`` but is signed unescaped).
        Each is derived from the received fields only, and the caller reads the fields from the
        variant that verified, so no unsigned value is ever acted on."""
        unsigned = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
        unescaped = {k: html.unescape(v) for k, v in unsigned.items()}
        tried: set[str] = set()
        for variant, content in (
            (unsigned, sign_content(unsigned, exclude=frozenset())),
            (unsigned, "&".join(f"{k}={unsigned[k]}" for k in sorted(unsigned))),
            (unescaped, sign_content(unescaped, exclude=frozenset())),
        ):
            if content in tried:
                continue
            tried.add(content)
            if rsa2_verify(key, content, signature):
                return variant
        raise InvalidSignature("notification signature invalid")

    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        app_id, public_key = self._verifier()
        params = self._notification_params(request)
        signature = params.get("sign", "")
        if not signature:
            raise InvalidSignature("notification is not signed")
        if params.get("sign_type", "RSA2") != "RSA2":
            raise InvalidSignature("only RSA2 notifications are accepted")
        fields = self._verified_params(params, signature, public_key)

        # Genuine, but possibly for another Alipay app or seller (same platform key).
        if fields.get("app_id") != app_id:
            raise UnknownPayment("notification is for another app")
        seller_id = self.option("seller_id").strip()
        if seller_id and fields.get("seller_id") != seller_id:
            raise UnknownPayment("notification is for another seller")
        self._check_notify_time(fields.get("notify_time", ""))

        status = fields.get("trade_status", "")
        if fields.get("gmt_refund") or fields.get("out_biz_no"):
            # A refund notification (trade status stays TRADE_SUCCESS, or TRADE_CLOSED after a
            # full refund): the refund service tracks refunds, nothing to confirm here.
            raise IgnoredNotification(f"refund notification ({status})")
        kind: Literal["paid", "failed"]
        if status in PAID_STATUSES:
            kind = "paid"
        elif status == "TRADE_CLOSED":
            kind = "failed"
        elif status == "WAIT_BUYER_PAY":
            raise IgnoredNotification("trade created, not paid yet")
        else:
            raise MalformedNotification("unknown trade status")
        return self._event(fields, kind=kind, event_id=fields.get("notify_id", ""))

    @staticmethod
    def _check_notify_time(value: str) -> None:
        try:
            sent = datetime.strptime(value, TIME_FORMAT).replace(tzinfo=BEIJING)
        except ValueError:
            raise MalformedNotification("missing or malformed notify_time") from None
        now = timezone.now()
        if sent > now + timedelta(seconds=settings.PAYMENT_CALLBACK_MAX_AGE_SECONDS):
            raise StaleNotification("notify_time is in the future")
        if sent < now - NOTIFY_MAX_AGE:
            raise StaleNotification("notify_time is too old")

    @staticmethod
    def _event(
        fields: dict[str, Any], *, kind: Literal["paid", "failed"], event_id: str
    ) -> VerifiedEvent:
        reference = str(fields.get("out_trade_no") or "")
        trade_no = str(fields.get("trade_no") or "")
        amount = str(fields.get("total_amount") or "")
        if not event_id or len(event_id) > 128 or not trade_no or len(trade_no) > 128:
            raise MalformedNotification("missing notify_id or trade_no")
        if not _AMOUNT.fullmatch(amount):
            raise MalformedNotification("malformed total_amount")
        if not reference or len(reference) > 40:
            # Never truncated: a cut-off reference could name another payment.
            raise UnknownPayment("out_trade_no is not one of ours")
        return VerifiedEvent(
            event_id=event_id,
            kind=kind,
            payment_reference=reference,
            amount=Decimal(amount),
            currency="CNY",
            gateway_trade_id=trade_no,
        )

    def reply_accepted(self) -> CallbackReply:
        return CallbackReply(status=200, body="success")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        if isinstance(error, IgnoredNotification):
            return self.reply_accepted()
        # Alipay only looks for "success"; the reason is in our notification log.
        return CallbackReply(status=400, body="fail")

    # --- the APIs ------------------------------------------------------------------------------
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        body = self._call("alipay.trade.query", {"out_trade_no": payment.reference})
        code, sub_code = str(body.get("code", "")), str(body.get("sub_code", ""))
        if code != SUCCESS_CODE:
            if sub_code == "ACQ.TRADE_NOT_EXIST":
                return None  # the buyer has not opened (or not logged in to) the cashier yet
            logger.warning("alipay trade query failed", extra={"code": code, "sub": sub_code})
            raise MalformedNotification(f"trade query failed: {code} {sub_code}")
        if body.get("out_trade_no") != payment.reference:
            raise MalformedNotification("query answered for another trade")
        status = str(body.get("trade_status", ""))
        if status == "WAIT_BUYER_PAY":
            return None
        kind: Literal["paid", "failed"]
        if status in PAID_STATUSES:
            kind = "paid"
        elif status == "TRADE_CLOSED":
            kind = "failed"
        else:
            raise MalformedNotification("unknown trade status")
        trade_no = str(body.get("trade_no", ""))
        return self._event(body, kind=kind, event_id=f"query:{trade_no}:{status}")

    @staticmethod
    def refund_request_no(*, payment: Payment, amount: Decimal, reason: str) -> str:
        """A deterministic ``out_request_no``: a retry of the same refund is the same request
        at Alipay, which then answers success without paying out twice."""
        digest = hashlib.sha256(f"{payment.reference}|{_yuan(amount)}|{reason}".encode())
        return "R" + digest.hexdigest()[:40]

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        request_no = self.refund_request_no(payment=payment, amount=amount, reason=reason)
        biz = {
            "out_trade_no": payment.reference,
            "refund_amount": _yuan(amount),
            "out_request_no": request_no,
            "refund_reason": reason[:256],
        }
        if payment.gateway_trade_id:
            biz["trade_no"] = payment.gateway_trade_id
        body = self._call("alipay.trade.refund", biz)
        code = str(body.get("code", ""))
        if code != SUCCESS_CODE:
            sub_code = str(body.get("sub_code", ""))[:64]
            logger.warning("alipay refund refused", extra={"code": code, "sub": sub_code})
            # No refund was made: the same out_request_no stays safe to send again (Alipay asks
            # exactly that after a SYSTEM_ERROR), so no refund id is reported.
            return RefundResult(
                refund_id="",
                amount=Decimal(0),
                succeeded=False,
                failure=f"alipay refused the refund: {code[:16]} {sub_code}",
            )
        if body.get("fund_change") == "Y":
            return RefundResult(refund_id=request_no, amount=amount, succeeded=True)
        # "N" (or none): the call went through but this answer moved no money. It is a repeat of
        # a refund already made, or one Alipay has not finished: only the refund query tells
        # (Alipay's rule), never assumed done.
        # Asked at once, a repeat is confirmed now; a refund Alipay is still working on may not
        # show yet (Alipay: query ten seconds or more after refunding), so anything short of
        # REFUND_SUCCESS is pending here, and only the repair job's later query can fail it.
        try:
            confirmed = self.query_refund(payment=payment, refund_id=request_no, amount=amount)
        except Exception as exc:
            logger.warning("alipay refund query failed", extra={"error": type(exc).__name__})
        else:
            if confirmed.succeeded:
                return confirmed
        return RefundResult(refund_id=request_no, amount=amount, succeeded=False, pending=True)

    def query_refund(self, *, payment: Payment, refund_id: str, amount: Decimal) -> RefundResult:
        # ``refund_id`` is our out_request_no (what ``refund`` reports).
        if not _REQUEST_NO.fullmatch(refund_id):
            raise GatewayUnavailable("not a Cardvault refund request number")
        biz = {"out_trade_no": payment.reference, "out_request_no": refund_id}
        body = self._call(REFUND_QUERY_METHOD, biz)  # transport errors: the caller asks again
        code = str(body.get("code", ""))
        if code != SUCCESS_CODE:
            sub_code = str(body.get("sub_code", ""))[:64]
            logger.warning("alipay refund query failed", extra={"code": code, "sub": sub_code})
            raise GatewayUnavailable(f"alipay refund query failed: {code[:16]} {sub_code}")
        if body.get("out_request_no") not in (None, refund_id) or body.get("out_trade_no") not in (
            None,
            payment.reference,
        ):
            raise MalformedNotification("refund query answered for another refund")
        if body.get("refund_amount") not in (None, "", _yuan(amount)):
            raise MalformedNotification("refund query answered for another amount")
        if body.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult(refund_id=refund_id, amount=amount, succeeded=True)
        # No refund_status: Alipay has no successful refund under this number ("not received or
        # failed"). Reported without a refund id: a retry sends the same out_request_no again,
        # which is Alipay's way to retry a refund and never refunds twice.
        return RefundResult(
            refund_id="",
            amount=Decimal(0),
            succeeded=False,
            failure="alipay has no successful refund under this request number",
        )
