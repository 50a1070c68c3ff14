"""WeChat Pay API v3 (微信支付 APIv3), Native pay (the buyer scans a QR code), written directly on
``cryptography`` (no SDK).

Wire format (this module is the only place that knows it):
  * Every request carries ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
    signature="…",timestamp="…",serial_no="…"``; ``signature`` = base64 RSA-SHA256 (PKCS#1
    v1.5) with the merchant API private key over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\n
    BODY\\n``; ``serial_no`` is the merchant API certificate's serial.
  * Answers (2xx) and notifications are signed by WeChat Pay: headers ``Wechatpay-Timestamp``,
    ``Wechatpay-Nonce``, ``Wechatpay-Signature``, ``Wechatpay-Serial``; the signature covers
    ``TIMESTAMP\\nNONCE\\nBODY\\n`` and is made with the platform certificate (or the platform
    public key, serial ``PUB_KEY_ID_…``) named by the serial.
  * Native order: ``POST /v3/pay/transactions/native`` → ``{"code_url": "weixin://…"}``, shown as
    a QR code on our own pay page. Query: ``GET /v3/pay/transactions/out-trade-no/{ref}?mchid=``.
    Refund: ``POST /v3/refund/domestic/refunds``; a refund answered ``PROCESSING`` is pending
    (it can still end ``ABNORMAL``) until ``GET /v3/refund/domestic/refunds/{out_refund_no}``
    says ``SUCCESS``. Amounts are integers in fen.
  * Notification: JSON ``{"id", "event_type", "resource": {"algorithm": "AEAD_AES_256_GCM",
    "ciphertext" (base64, GCM tag appended), "associated_data", "nonce"}}``; the resource
    decrypts with the APIv3 key to the transaction (the same shape the query answers). WeChat
    waits for HTTP 200/204 (no body needed); anything else is retried (15s … 3h, ~24h in all),
    with a body ``{"code": "FAIL", "message": "…"}``.

Traps handled (and why not the ``wechatpayv3`` library: it checks no timestamp window,
downloads a certificate for any unknown serial, answers a malformed serial with a 500 and logs
decrypted payment details at debug level):
  * Only the platform certificates / public key staff configured are trusted; an unknown serial
    is rejected and nothing is downloaded (an attacker could otherwise make us fetch keys).
  * Headers may arrive in any case; they are looked up case-insensitively, and malformed ones
    (bad serial, timestamp, nonce, base64) are a 400, never an exception.
  * The timestamp is bounded on both sides (``PAYMENT_CALLBACK_MAX_AGE_SECONDS``); WeChat signs
    every retry afresh, so a genuine retry is never stale.
  * WeChat sends probe notifications signed ``WECHATPAY/SIGNTEST/…`` to see whether merchants
    check signatures: they fail verification like any forgery.
  * The decrypted transaction must name our ``mchid`` and ``appid``; amounts are ``amount.total``
    (the order amount, not ``payer_total`` after coupons) in fen, converted exactly, with its
    currency; the decrypted plaintext is never logged or stored.
  * Response signatures are checked over the raw body bytes, never re-serialised JSON.
  * Refund numbers are derived from (reference, amount, request id): a retry is the same
    refund at WeChat, never a second one.
  * CNY only (WeChat Native charges fen of yuan whatever currency we think it is).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
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

DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
NATIVE_PATH = "/v3/pay/transactions/native"
QUERY_PATH = "/v3/pay/transactions/out-trade-no/"
REFUND_PATH = "/v3/refund/domestic/refunds"
_REFUND_NO = re.compile(r"R[0-9a-f]{40}")
FAILED_REFUND_STATES = frozenset({"CLOSED", "ABNORMAL"})
AEAD_ALGORITHM = "AEAD_AES_256_GCM"
BEIJING = dt_timezone(timedelta(hours=8), "Asia/Shanghai")

HEADER_TIMESTAMP = "wechatpay-timestamp"
HEADER_NONCE = "wechatpay-nonce"
HEADER_SIGNATURE = "wechatpay-signature"
HEADER_SERIAL = "wechatpay-serial"
HEADER_SIGNATURE_TYPE = "wechatpay-signature-type"

# Certificate serials are hex (any case, leading zeros vary between tools); platform public
# keys have an id "PUB_KEY_ID_" + digits. Anything else is malformed, answered with a 400.
_CERT_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")
_PUBLIC_KEY_ID = re.compile(r"PUB_KEY_ID_[0-9A-Za-z_]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Printable ASCII without spaces: a newline would shift the signed message's fields.
_NONCE = re.compile(r"[\x21-\x7e]{1,64}")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_MAX_DESCRIPTION_BYTES = 127
_MAX_CODE_URL = 512

PAID_STATES = frozenset({"SUCCESS"})
OPEN_STATES = frozenset({"NOTPAY", "USERPAYING"})
FAILED_STATES = frozenset({"CLOSED", "PAYERROR", "REVOKED"})


class ForeignNotification(InvalidSignature):
    """Genuine and decryptable, but for another merchant id or app id than ours."""

    code = "wrong_merchant"


# --- keys ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlatformKey:
    """A WeChat Pay signing key we trust, with its certificate's validity if it came in one."""

    key: rsa.RSAPublicKey
    not_before: datetime | None = None
    not_after: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        if self.not_before is not None and moment < self.not_before:
            return False
        return self.not_after is None or moment <= self.not_after


def normalise_serial(serial: str) -> str:
    """The lookup form of a serial: public key ids as given, certificate serials as uppercase
    hex without leading zeros (WeChat's tools differ on zero-padding)."""
    if serial.startswith("PUB_KEY_ID_"):
        return serial
    return serial.upper().lstrip("0") or "0"


def certificate_serial(certificate: x509.Certificate) -> str:
    """The serial WeChat puts in ``Wechatpay-Serial``: uppercase hex of the certificate serial."""
    return format(certificate.serial_number, "X")


@lru_cache(maxsize=16)
def load_platform_keys(pem_text: str, public_key_id: str) -> Mapping[str, PlatformKey]:
    """Serial → key, from one or more PEM platform certificates and at most one PEM platform
    public key (named by ``public_key_id``). Raises ``ValueError`` on anything unreadable: a
    half-read configuration would silently drop a key staff believe is trusted."""
    keys: dict[str, PlatformKey] = {}
    blocks = list(_PEM_BLOCK.finditer(pem_text))
    leftover = _PEM_BLOCK.sub("", pem_text).strip()
    if not blocks or leftover:
        raise ValueError("platform certificates must be PEM blocks only")
    for block in blocks:
        kind = block.group(1)
        pem = block.group(0).encode("ascii")
        if kind == "CERTIFICATE":
            certificate = x509.load_pem_x509_certificate(pem)
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise ValueError("platform certificate is not RSA")
            keys[normalise_serial(certificate_serial(certificate))] = PlatformKey(
                key=key,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
            )
        elif kind == "PUBLIC KEY":
            if not _PUBLIC_KEY_ID.fullmatch(public_key_id) or public_key_id in keys:
                raise ValueError("a platform public key needs its own PUB_KEY_ID_… id")
            public_key = serialization.load_pem_public_key(pem)
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise ValueError("platform public key is not RSA")
            keys[public_key_id] = PlatformKey(key=public_key)
        else:
            raise ValueError(f"unexpected PEM block {kind}")
    return MappingProxyType(keys)


@lru_cache(maxsize=16)
def load_private_key(pem_text: str) -> rsa.RSAPrivateKey:
    """The merchant API private key (``apiclient_key.pem``, PKCS#8 or PKCS#1 PEM)."""
    key = serialization.load_pem_private_key(pem_text.strip().encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (CryptoInvalidSignature, binascii.Error, ValueError):
        return False
    return True


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lower-case name. Two spellings of one header with different values are
    ambiguous (which one was signed?), so they are refused."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in result and result[key] != value:
            raise InvalidSignature(f"conflicting {key} headers")
        result[key] = value
    return result


def to_fen(amount: Decimal) -> int:
    fen = amount * 100
    if fen != fen.to_integral_value() or fen < 0:
        raise ValueError(f"{amount} is not a whole number of fen")
    return int(fen)


def from_fen(value: object) -> Decimal:
    """An integer number of fen as yuan, exactly (``1000`` → ``Decimal("10.00")``)."""
    # bool is an int in Python; JSON true is not an amount.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedNotification("amount is not a whole number of fen")
    return Decimal(value).scaleb(-2)


def _truncate_utf8(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, cut on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


class WeChatPayGateway(Gateway):
    name = "wechatpay"
    display_name = _("WeChat Pay")
    default_currencies = ("CNY",)
    supports_refund = True
    supports_refund_query = True
    option_fields = (
        ConfigField("mchid", _("Merchant ID (mchid)"), help_text=_("Your WeChat Pay 商户号.")),
        ConfigField(
            "appid",
            _("App ID (appid)"),
            help_text=_("The AppID bound to the merchant (official account, mini program, app)."),
        ),
        ConfigField(
            "merchant_serial_no",
            _("Merchant certificate serial number"),
            help_text=_("The serial number of your merchant API certificate (商户API证书序列号)."),
        ),
        ConfigField(
            "platform_certificates",
            _("WeChat Pay platform certificates or public key"),
            help_text=_(
                "One or more WeChat Pay platform certificates (PEM), and/or the WeChat Pay "
                "public key (PEM) with its ID below. Only these are trusted; nothing is "
                "downloaded."
            ),
            multiline=True,
        ),
        ConfigField(
            "platform_public_key_id",
            _("WeChat Pay public key ID"),
            required=False,
            help_text=_("PUB_KEY_ID_…, when a WeChat Pay public key is pasted above."),
        ),
        ConfigField(
            "api_base",
            _("API base URL"),
            required=False,
            help_text=_("Empty: https://api.mch.weixin.qq.com."),
        ),
    )
    secret_fields = (
        ConfigField(
            "merchant_private_key",
            _("Merchant API private key"),
            help_text=_("apiclient_key.pem, PEM."),
            multiline=True,
        ),
        ConfigField("apiv3_key", _("APIv3 key"), help_text=_("The 32-character APIv3 key.")),
    )

    # --- configuration -----------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return self.option("api_base", DEFAULT_API_BASE).strip().rstrip("/")

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        # WeChat Native charges CNY: a USD order would be charged as yuan.
        return currency == "CNY" and super().accepts(amount=amount, currency=currency)

    def _platform_keys(self) -> Mapping[str, PlatformKey]:
        """The trusted WeChat Pay keys. Refuses (``InvalidSignature``) unless the gateway is
        fully configured: an empty credential must never make anything "valid"."""
        if not (
            self.option("mchid").strip()
            and self.option("appid").strip()
            and self.secret("merchant_private_key").strip()
            and len(self.secret("apiv3_key").strip().encode("utf-8")) == 32
        ):
            raise InvalidSignature("wechatpay is not fully configured")
        try:
            return load_platform_keys(
                self.option("platform_certificates").strip(),
                self.option("platform_public_key_id").strip(),
            )
        except ValueError:
            raise InvalidSignature("wechatpay platform certificates cannot be read") from None

    def _private_key(self) -> rsa.RSAPrivateKey:
        text = self.secret("merchant_private_key")
        if not text.strip() or not self.option("merchant_serial_no").strip():
            raise GatewayUnavailable("wechatpay merchant key is not configured")
        try:
            return load_private_key(text)
        except (ValueError, TypeError):
            raise GatewayUnavailable("wechatpay merchant private key cannot be read") from None

    # --- signatures ------------------------------------------------------------------------------
    def authorization(
        self, *, method: str, path: str, body: bytes, timestamp: int, nonce: str
    ) -> str:
        """The ``Authorization`` header for one request; ``path`` includes the query string."""
        message = f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = rsa_sign(self._private_key(), message)
        return (
            f'{AUTH_SCHEMA} mchid="{self.option("mchid").strip()}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",'
            f'serial_no="{self.option("merchant_serial_no").strip()}"'
        )

    @staticmethod
    def verify_signed(
        headers: Mapping[str, str], body: bytes, keys: Mapping[str, PlatformKey]
    ) -> None:
        """Check WeChat Pay's signature headers (lower-case names) over ``body``, then the
        timestamp window. Raises ``InvalidSignature`` or ``StaleNotification``."""
        timestamp = headers.get(HEADER_TIMESTAMP, "").strip()
        nonce = headers.get(HEADER_NONCE, "").strip()
        signature = headers.get(HEADER_SIGNATURE, "").strip()
        serial = headers.get(HEADER_SERIAL, "").strip()
        if not (timestamp and nonce and signature and serial):
            raise InvalidSignature("missing WeChat Pay signature headers")
        if not _TIMESTAMP.fullmatch(timestamp) or not _NONCE.fullmatch(nonce):
            raise InvalidSignature("malformed timestamp or nonce header")
        if not (_CERT_SERIAL.fullmatch(serial) or _PUBLIC_KEY_ID.fullmatch(serial)):
            raise InvalidSignature("malformed serial header")
        signature_type = headers.get(HEADER_SIGNATURE_TYPE, AUTH_SCHEMA).strip()
        if signature_type != AUTH_SCHEMA:
            raise InvalidSignature("unsupported signature type")
        # Only keys staff configured; an unknown serial is never fetched from anywhere.
        platform_key = keys.get(normalise_serial(serial))
        if platform_key is None:
            raise InvalidSignature("unknown platform certificate serial")
        if not platform_key.valid_at(datetime.now(UTC)):
            raise InvalidSignature("platform certificate is not valid now")
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        if not rsa_verify(platform_key.key, message, signature):
            raise InvalidSignature("signature mismatch")
        # Both sides bounded: a timestamp from the future is as suspicious as an old one.
        if abs(time.time() - int(timestamp)) > settings.PAYMENT_CALLBACK_MAX_AGE_SECONDS:
            raise StaleNotification("timestamp outside the accepted window")

    # --- API calls -------------------------------------------------------------------------------
    def _call(
        self, method: Literal["GET", "POST"], path: str, payload: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send one signed request; return the status and the JSON answer.

        A 2xx answer is returned only if WeChat Pay signed it. A 4xx answer is returned
        unverified (its code is only ever used to decide *not* to act). 5xx and transport errors
        raise ``httpx.HTTPError``. Safe to retry: queries are reads, orders and refunds are
        deduplicated by ``out_trade_no`` / ``out_refund_no``."""
        keys = self._platform_keys()
        url = self.api_base + path
        split = urlsplit(url)
        signed_path = split.path + (f"?{split.query}" if split.query else "")
        body = b""
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(time.time())
        nonce = secrets.token_hex(16).upper()
        headers = {
            "Authorization": self.authorization(
                method=method, path=signed_path, body=body, timestamp=timestamp, nonce=nonce
            ),
            "Accept": "application/json",
            "User-Agent": "Cardvault",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = http.request(method, url, idempotent=True, content=body or None, headers=headers)
        if response.status_code >= 500:
            response.raise_for_status()
        if response.status_code >= 300:
            try:
                error = json.loads(response.content)
            except ValueError:
                error = {}
            return response.status_code, error if isinstance(error, dict) else {}
        self.verify_signed(lower_headers(dict(response.headers)), response.content, keys)
        if not response.content:
            return response.status_code, {}
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise MalformedNotification("unreadable WeChat Pay answer") from None
        if not isinstance(answer, dict):
            raise MalformedNotification("unexpected WeChat Pay answer")
        return response.status_code, answer

    @staticmethod
    def _error_code(answer: Mapping[str, Any]) -> str:
        return str(answer.get("code", ""))[:64]

    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        if payment.currency != "CNY":
            raise GatewayUnavailable(f"wechatpay cannot charge {payment.currency}")
        order = payment.order
        description = _truncate_utf8(order.product.title.strip(), _MAX_DESCRIPTION_BYTES)
        payload: dict[str, Any] = {
            "appid": self.option("appid").strip(),
            "mchid": self.option("mchid").strip(),
            "description": description or f"Order {order.number}",
            "out_trade_no": payment.reference,
            # WeChat closes the trade at our deadline instead of taking money for an expired
            # order (a late payment would still be honoured by the service).
            "time_expire": order.expires_at.astimezone(BEIJING).isoformat(timespec="seconds"),
            "notify_url": callback_url,
            "amount": {"total": to_fen(payment.amount), "currency": "CNY"},
        }
        status, answer = self._call("POST", NATIVE_PATH, payload)
        code_url = answer.get("code_url")
        if status != 200 or not isinstance(code_url, str):
            logger.warning(
                "wechatpay native order refused", extra={"code": self._error_code(answer)}
            )
            raise GatewayUnavailable(f"wechatpay refused the order ({status})")
        # The buyer scans whatever we show: only WeChat's own scheme, never some other URL.
        if not code_url.startswith("weixin://") or len(code_url) > _MAX_CODE_URL:
            raise MalformedNotification("unexpected code_url")
        return PaymentAction(
            redirect_url=self.hosted_pay_url(return_url=return_url, payment=payment),
            data={"qr": code_url},
        )

    # --- notifications ---------------------------------------------------------------------------
    def _decrypt(self, resource: object) -> dict[str, Any]:
        """The notification's resource, decrypted with the APIv3 key. The plaintext carries the
        buyer's openid and payment details: it is never logged or stored."""
        if not isinstance(resource, dict) or resource.get("algorithm") != AEAD_ALGORITHM:
            raise MalformedNotification("unexpected resource algorithm")
        ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
        associated = resource.get("associated_data") or ""
        if not (isinstance(ciphertext, str) and isinstance(nonce, str) and nonce):
            raise MalformedNotification("incomplete resource")
        if not isinstance(associated, str):
            raise MalformedNotification("malformed associated_data")
        try:
            cipher = AESGCM(self.secret("apiv3_key").strip().encode("utf-8"))
            plaintext = cipher.decrypt(
                nonce.encode("utf-8"),
                base64.b64decode(ciphertext, validate=True),
                associated.encode("utf-8"),
            )
        except (InvalidTag, binascii.Error, ValueError):
            # Tampered with, or encrypted for another merchant's key.
            raise InvalidSignature("resource does not decrypt") from None
        try:
            transaction = json.loads(plaintext)
        except ValueError:
            raise MalformedNotification("resource is not JSON") from None
        if not isinstance(transaction, dict):
            raise MalformedNotification("resource is not a transaction")
        return transaction

    def _check_merchant(self, transaction: Mapping[str, Any]) -> None:
        if (
            transaction.get("mchid") != self.option("mchid").strip()
            or transaction.get("appid") != self.option("appid").strip()
        ):
            raise ForeignNotification("transaction is for another merchant or app")

    @staticmethod
    def _event(
        transaction: Mapping[str, Any],
        *,
        kind: Literal["paid", "failed"],
        event_id: str,
        fallback: Payment | None = None,
    ) -> VerifiedEvent:
        reference = transaction.get("out_trade_no")
        if not isinstance(reference, str) or not reference or len(reference) > 40:
            # Never truncated: a cut-off reference could name another payment.
            raise UnknownPayment("out_trade_no is not one of ours")
        trade_id = transaction.get("transaction_id") or ""
        if (
            not isinstance(trade_id, str)
            or len(trade_id) > 128
            or (kind == "paid" and not trade_id)
        ):
            raise MalformedNotification("missing or malformed transaction_id")
        if not event_id or len(event_id) > 128:
            raise MalformedNotification("missing or malformed event id")
        amount = transaction.get("amount")
        if isinstance(amount, dict) and "total" in amount:
            total, currency = from_fen(amount.get("total")), amount.get("currency")
        elif kind == "failed" and fallback is not None:
            # A trade that was never paid may come back without an amount; a failed event moves
            # no money, and the service still checks the payment it names.
            total, currency = fallback.amount, fallback.currency
        else:
            raise MalformedNotification("missing amount")
        if not isinstance(currency, str) or not currency or len(currency) > 8:
            raise MalformedNotification("missing or malformed currency")
        return VerifiedEvent(
            event_id=event_id,
            kind=kind,
            payment_reference=reference,
            amount=total,
            currency=currency,
            gateway_trade_id=trade_id,
        )

    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        keys = self._platform_keys()
        self.verify_signed(lower_headers(request.headers), request.body, keys)
        try:
            notification = json.loads(request.body)
        except ValueError:
            raise MalformedNotification("body is not JSON") from None
        if not isinstance(notification, dict):
            raise MalformedNotification("body is not a notification")
        event_id = notification.get("id")
        if not isinstance(event_id, str):
            raise MalformedNotification("missing notification id")
        event_type = notification.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedNotification("missing event_type")
        if event_type != "TRANSACTION.SUCCESS":
            # Refund results and the like: the refund service tracks refunds itself.
            raise IgnoredNotification("not a payment success")
        transaction = self._decrypt(notification.get("resource"))
        self._check_merchant(transaction)
        if transaction.get("trade_state") not in PAID_STATES:
            raise MalformedNotification("success event without a successful trade")
        return self._event(transaction, kind="paid", event_id=event_id)

    def reply_accepted(self) -> CallbackReply:
        # APIv3 takes HTTP 200 or 204 as "received"; no body is needed.
        return CallbackReply(status=204, body="")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        if isinstance(error, IgnoredNotification):
            return self.reply_accepted()
        body = json.dumps({"code": "FAIL", "message": error.code})
        return CallbackReply(status=400, body=body, content_type="application/json")

    # --- query and refund -------------------------------------------------------------------------
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        mchid = self.option("mchid").strip()
        path = f"{QUERY_PATH}{quote(payment.reference, safe='')}?mchid={quote(mchid, safe='')}"
        status, answer = self._call("GET", path)
        if status == 404 and self._error_code(answer) == "ORDER_NOT_EXIST":
            return None  # the order never reached WeChat; nothing was paid
        if status != 200:
            logger.warning("wechatpay query failed", extra={"code": self._error_code(answer)})
            raise GatewayUnavailable(f"wechatpay query failed ({status})")
        self._check_merchant(answer)
        if answer.get("out_trade_no") != payment.reference:
            raise MalformedNotification("query answered for another trade")
        state = str(answer.get("trade_state", ""))
        if state in OPEN_STATES:
            return None
        if state in PAID_STATES:
            trade_id = str(answer.get("transaction_id") or "")
            return self._event(answer, kind="paid", event_id=f"query:{trade_id}")
        if state in FAILED_STATES:
            return self._event(
                answer,
                kind="failed",
                event_id=f"query:{payment.reference}:{state}",
                fallback=payment,
            )
        if state == "REFUND":
            # Paid, then refunded at WeChat outside Cardvault, while our payment is still open:
            # never deliver for money that went back; a person looks at it.
            logger.warning("wechatpay trade refunded before we confirmed it")
            return None
        raise MalformedNotification("unknown trade state")

    @staticmethod
    def refund_number(*, payment: Payment, amount: Decimal, reason: str) -> str:
        """A deterministic ``out_refund_no`` (≤ 64 chars): a retry of the same refund is the
        same refund at WeChat, which then answers with it instead of paying out twice."""
        digest = hashlib.sha256(f"{payment.reference}|{to_fen(amount)}|{reason}".encode())
        return "R" + digest.hexdigest()[:40]

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        # ``reason`` is the caller's refund request id, not text for the buyer: it only feeds the
        # refund number (WeChat shows its own "reason" field to the buyer, so none is sent).
        refund_no = self.refund_number(payment=payment, amount=amount, reason=reason)
        payload: dict[str, Any] = {
            "out_refund_no": refund_no,
            "amount": {
                "refund": to_fen(amount),
                "total": to_fen(payment.amount),
                "currency": "CNY",
            },
        }
        # WeChat takes one of the two; its own trade id is unambiguous once we have it.
        if payment.gateway_trade_id:
            payload["transaction_id"] = payment.gateway_trade_id
        else:
            payload["out_trade_no"] = payment.reference
        status, answer = self._call("POST", REFUND_PATH, payload)
        if status != 200:
            code = self._error_code(answer)
            logger.warning("wechatpay refund refused", extra={"code": code})
            failure = f"wechatpay refused the refund ({status}): {code}"
            return RefundResult(refund_id="", amount=Decimal(0), succeeded=False, failure=failure)
        return self._refund_result(answer, refund_no=refund_no, amount=amount)

    def query_refund(self, *, payment: Payment, refund_id: str, amount: Decimal) -> RefundResult:
        # ``refund_id`` is our out_refund_no (what ``refund`` reports): WeChat finds refunds by it.
        if not _REFUND_NO.fullmatch(refund_id):
            raise GatewayUnavailable("not a Cardvault refund number")
        status, answer = self._call("GET", f"{REFUND_PATH}/{refund_id}")
        if status != 200:
            code = self._error_code(answer)
            logger.warning("wechatpay refund query failed", extra={"code": code})
            raise GatewayUnavailable(f"wechatpay refund query failed ({status})")
        return self._refund_result(answer, refund_no=refund_id, amount=amount)

    def _refund_result(
        self, answer: Mapping[str, Any], *, refund_no: str, amount: Decimal
    ) -> RefundResult:
        """A signed refund answer (the POST's or the query's) as a ``RefundResult``. Its id is
        our ``out_refund_no``, the number the query needs (WeChat's own ``refund_id`` is
        searchable in its merchant platform as well)."""
        if answer.get("out_refund_no") != refund_no:
            raise MalformedNotification("refund answered for another refund")
        refunded = answer.get("amount")
        if isinstance(refunded, dict) and refunded.get("refund") not in (None, to_fen(amount)):
            raise MalformedNotification("refund answered for another amount")
        refund_state = str(answer.get("status", ""))
        if refund_state == "SUCCESS":
            return RefundResult(refund_id=refund_no, amount=amount, succeeded=True)
        if refund_state not in FAILED_REFUND_STATES:
            # PROCESSING: accepted, not finished (to the buyer's balance within minutes, to a
            # bank card within days), and it can still end ABNORMAL (a closed card). An unknown
            # state is treated alike: never booked, never failed on a guess.
            if refund_state != "PROCESSING":
                logger.warning("wechatpay refund in an unknown state")
            return RefundResult(refund_id=refund_no, amount=amount, succeeded=False, pending=True)
        # CLOSED, or ABNORMAL (the buyer's card refused it: WeChat's merchant platform offers to
        # send it elsewhere, or staff pay by hand).
        logger.warning("wechatpay refund not completed", extra={"status": refund_state})
        return RefundResult(
            refund_id=refund_no,
            amount=Decimal(0),
            succeeded=False,
            failure=f"wechatpay refund {refund_state}",
        )
