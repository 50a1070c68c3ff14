"""WeChat Pay APIv3 Native: signed requests to a local stub that plays WeChat Pay with its own
platform key and self-signed certificate, and AES-GCM encrypted, RSA-signed notifications
through the real callback URL.

The test signs, verifies and encrypts with its own small implementation of WeChat Pay's rules
(not the adapter's helpers), so a mistake in the adapter cannot cancel itself out."""

import base64
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from django.core import mail
from django.test import Client
from django.utils import timezone

from ledger.models import Journal
from orders import services as order_services
from orders.exceptions import GatewayUnavailable, InvalidSignature, MalformedNotification
from orders.gateways.base import CallbackRequest
from orders.gateways.registry import build_gateway
from orders.gateways.wechatpay import WeChatPayGateway
from orders.models import (
    Delivery,
    GatewayConfig,
    Order,
    Payment,
    PaymentEvent,
    PaymentNotification,
    Refund,
)
from shop.models import CardKey
from tests.conftest import place
from tests.factories import ProductFactory, add_keys
from tests.stub_server import StubRequest, StubServer

pytestmark = pytest.mark.django_db

MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD********".replace("*", "0")
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092025010100000000000001"
CALLBACK = "/pay/callback/wechatpay/"
NATIVE = "/v3/pay/transactions/native"
QUERY = "/v3/pay/transactions/out-trade-no/"
REFUNDS = "/v3/refund/domestic/refunds"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o-buyer-secret"


# --- keys, certificates and WeChat Pay's rules, written independently of the adapter -----------
def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, *, days_valid: int = 365, expired: bool = False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = datetime.now(UTC)
    start = now - timedelta(days=800 if expired else 1)
    end = now - timedelta(days=1) if expired else now + timedelta(days=days_valid)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )


def cert_pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def serial_of(cert) -> str:
    return f"{cert.serial_number:X}"


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey  # ours: signs requests
    platform: rsa.RSAPrivateKey  # WeChat Pay's: signs answers and notifications
    platform_cert: x509.Certificate
    other: rsa.RSAPrivateKey  # anybody else's
    other_cert: x509.Certificate
    expired: rsa.RSAPrivateKey  # an old platform key whose certificate has run out
    expired_cert: x509.Certificate
    apiv3: str

    @property
    def serial(self) -> str:
        return serial_of(self.platform_cert)


@pytest.fixture(scope="module")
def keys() -> Keys:
    platform, other, expired = new_key(), new_key(), new_key()
    return Keys(
        merchant=new_key(),
        platform=platform,
        platform_cert=self_signed(platform),
        other=other,
        other_cert=self_signed(other),
        expired=expired,
        expired_cert=self_signed(expired, expired=True),
        apiv3=secrets.token_hex(16),  # 32 characters, as WeChat's console makes them
    )


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPrivateKey, message: bytes, signature: str) -> bool:
    try:
        key.public_key().verify(
            base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (CryptoInvalidSignature, ValueError):
        return False
    return True


def wechat_headers(
    key: rsa.RSAPrivateKey, serial: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """WeChat Pay's signature headers over ``ts\\nnonce\\nbody\\n``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16)
    signature = sign(key, f"{stamp}\n{nonce}\n".encode() + body + b"\n")
    return {
        "Wechatpay-Timestamp": stamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def parse_authorization(value: str) -> dict[str, str]:
    schema, _, rest = value.partition(" ")
    assert schema == "WECHATPAY2-SHA256-RSA2048"
    fields = {}
    for item in rest.split(","):
        name, _, quoted = item.partition("=")
        assert quoted.startswith('"') and quoted.endswith('"')
        fields[name] = quoted[1:-1]
    return fields


def encrypt_resource(apiv3: str, plaintext: dict, *, nonce: str = "fdasflkja484") -> dict:
    data = json.dumps(plaintext, ensure_ascii=False).encode()
    ciphertext = AESGCM(apiv3.encode()).encrypt(nonce.encode(), data, b"transaction")
    return {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": "transaction",
        "nonce": nonce,
    }


def transaction(payment: Payment, **overrides) -> dict:
    data = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": payment.reference,
        "transaction_id": "42000012" + payment.reference[1:],
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "CMC",
        "attach": "",
        "success_time": "2025-06-08T10:34:56+08:00",
        "payer": {"openid": OPENID},
        "amount": {
            "total": int(payment.amount * 100),
            "payer_total": int(payment.amount * 100),
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    amount = overrides.pop("amount", None)
    if amount:
        data["amount"] = {**data["amount"], **amount}
    data.update(overrides)
    return data


def notification(
    keys: Keys,
    payment: Payment,
    *,
    event_id: str | None = None,
    event_type: str = "TRANSACTION.SUCCESS",
    key: rsa.RSAPrivateKey | None = None,
    serial: str | None = None,
    timestamp: int | None = None,
    apiv3: str | None = None,
    **fields,
) -> tuple[bytes, dict[str, str]]:
    """A notification body and headers as WeChat Pay sends them, any part overridable."""
    payload = {
        "id": event_id or f"EV-{payment.reference}",
        "create_time": "2025-06-08T10:34:56+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": encrypt_resource(apiv3 or keys.apiv3, transaction(payment, **fields)),
    }
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = wechat_headers(key or keys.platform, serial or keys.serial, body, timestamp=timestamp)
    return body, headers


def post(body: bytes, headers: dict[str, str], client: Client | None = None):
    return (client or Client()).post(
        CALLBACK, data=body, content_type="application/json", headers=headers
    )


# --- the stub WeChat Pay ---------------------------------------------------------------------
class WeChatStub:
    """api.mch.weixin.qq.com: checks our Authorization with the merchant public key, keeps
    trades and refunds, signs every answer with the platform key."""

    def __init__(self, server: StubServer, keys: Keys) -> None:
        self.server = server
        self.keys = keys
        self.trades: dict[str, dict] = {}  # out_trade_no → the order as created, plus state
        self.refunds: dict[str, dict] = {}  # out_refund_no → refund
        self.verified: list[tuple[str, str, dict]] = []  # (method, signed path, body)
        self.sign_with = keys.platform
        self.serial = keys.serial
        self.refund_status = "SUCCESS"
        self.refund_error: tuple[int, str] | None = None
        self.refund_query_error: tuple[int, str] | None = None
        server.route("POST", NATIVE, self.native)
        server.route("POST", REFUNDS, self.refund)

    def _authorized(self, request: StubRequest) -> dict | None:
        header = {k.lower(): v for k, v in request.headers.items()}.get("authorization", "")
        fields = parse_authorization(header)
        assert fields["mchid"] == MCHID and fields["serial_no"] == MERCHANT_SERIAL
        path = request.path + ("?" + urlencode(request.query) if request.query else "")
        message = (
            f"{request.method}\n{path}\n{fields['timestamp']}\n{fields['nonce_str']}\n".encode()
            + request.body
            + b"\n"
        )
        if not verify(self.keys.merchant, message, fields["signature"]):
            return None
        assert abs(time.time() - int(fields["timestamp"])) < 60
        body = json.loads(request.body) if request.body else {}
        self.verified.append((request.method, path, body))
        return body

    def answer(self, status: int, payload: dict) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Request-ID": "08F7B5"}
        headers.update(wechat_headers(self.sign_with, self.serial, body))
        return status, headers, body

    @staticmethod
    def unsigned(status: int, code: str) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"code": code, "message": code}).encode()
        return status, {"Content-Type": "application/json"}, body

    def native(self, request: StubRequest):
        body = self._authorized(request)
        if body is None:
            return self.unsigned(401, "SIGN_ERROR")
        reference = body["out_trade_no"]
        self.trades[reference] = {**body, "trade_state": "NOTPAY"}
        self.server.route("GET", QUERY + reference, self.query)
        return self.answer(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={reference[-8:]}"})

    def query(self, request: StubRequest):
        if self._authorized(request) is None:
            return self.unsigned(401, "SIGN_ERROR")
        assert request.query == {"mchid": MCHID}
        reference = request.path.rsplit("/", 1)[1]
        trade = self.trades.get(reference)
        if trade is None:
            return self.unsigned(404, "ORDER_NOT_EXIST")
        answer = {
            "appid": trade["appid"],
            "mchid": trade["mchid"],
            "out_trade_no": reference,
            "trade_state": trade["trade_state"],
            "trade_state_desc": "",
            "amount": {"total": trade["amount"]["total"], "currency": "CNY"},
        }
        if trade["trade_state"] in ("SUCCESS", "REFUND"):
            answer["transaction_id"] = "42000012" + reference[1:]
            answer["amount"]["payer_total"] = trade["amount"]["total"]
        return self.answer(200, answer)

    def refund(self, request: StubRequest):
        body = self._authorized(request)
        if body is None:
            return self.unsigned(401, "SIGN_ERROR")
        if self.refund_error is not None:
            return self.unsigned(*self.refund_error)
        number = body["out_refund_no"]
        # Same out_refund_no → the same refund, never a second payout.
        refund = self.refunds.setdefault(
            number,
            {
                "refund_id": f"5030{len(self.refunds):024d}",
                "out_refund_no": number,
                "transaction_id": body.get("transaction_id", ""),
                "out_trade_no": body.get("out_trade_no", ""),
                "channel": "ORIGINAL",
                "status": self.refund_status,
                "amount": {**body["amount"], "payer_refund": body["amount"]["refund"]},
            },
        )
        self.server.route("GET", f"{REFUNDS}/{number}", self.query_refund)
        return self.answer(200, refund)

    def query_refund(self, request: StubRequest):
        if self._authorized(request) is None:
            return self.unsigned(401, "SIGN_ERROR")
        if self.refund_query_error is not None:
            return self.unsigned(*self.refund_query_error)
        return self.answer(200, self.refunds[request.path.rsplit("/", 1)[1]])


def options(keys: Keys, url: str, **extra: str) -> dict[str, str]:
    return {
        "mchid": MCHID,
        "appid": APPID,
        "merchant_serial_no": MERCHANT_SERIAL,
        "platform_certificates": cert_pem(keys.platform_cert) + cert_pem(keys.expired_cert),
        "api_base": url,
        **extra,
    }


def configure(keys: Keys, url: str, *, secrets_: dict[str, str] | None = None, **extra: str):
    config, _created = GatewayConfig.objects.update_or_create(
        gateway="wechatpay", defaults={"enabled": True, "options": options(keys, url, **extra)}
    )
    config.set_secrets(
        secrets_
        if secrets_ is not None
        else {"merchant_private_key": private_pem(keys.merchant), "apiv3_key": keys.apiv3}
    )
    config.save()
    return config


@pytest.fixture
def wechat(keys):
    with StubServer() as server:
        stub = WeChatStub(server, keys)
        configure(keys, server.url)
        yield stub


def open_wechat_payment(order: Order) -> Payment:
    order_services.start_payment(
        order=order, gateway_name="wechatpay", base_url="http://testserver/"
    )
    return Payment.objects.filter(order=order).latest("created_at")


@pytest.fixture
def placed(stocked_product, wechat):
    return place(stocked_product, quantity=2)


@pytest.fixture
def payment(placed):
    return open_wechat_payment(placed.order)


def gateway() -> WeChatPayGateway:
    built = build_gateway("wechatpay")
    assert isinstance(built, WeChatPayGateway)
    return built


def snapshot() -> dict[str, object]:
    """Everything a callback could change, apart from the notification log."""
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "paid_at", "delivered_at")),
        "payments": sorted(Payment.objects.values_list("id", "status", "gateway_trade_id")),
        "events": PaymentEvent.objects.count(),
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_id")),
        "deliveries": Delivery.objects.count(),
    }


def assert_rejected(response, code: str) -> None:
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"code": "FAIL", "message": code}


# --- opening a payment --------------------------------------------------------------------------
def test_native_order_is_signed_and_shows_the_qr_on_our_pay_page(wechat, placed):
    action = order_services.start_payment(
        order=placed.order, gateway_name="wechatpay", base_url="http://testserver/"
    )
    payment = Payment.objects.get(order=placed.order)

    assert action.redirect_url == f"http://testserver/o/{placed.token}/pay/{payment.reference}/"
    code_url = f"weixin://wxpay/bizpayurl?pr={payment.reference[-8:]}"
    assert payment.gateway_data == {"qr": code_url}
    [(method, path, body)] = wechat.verified
    assert (method, path) == ("POST", NATIVE)
    assert body["appid"] == APPID and body["mchid"] == MCHID
    assert body["out_trade_no"] == payment.reference
    assert body["notify_url"] == "http://testserver/pay/callback/wechatpay/"
    assert body["amount"] == {"total": 2000, "currency": "CNY"}
    assert body["description"] == placed.order.product.title
    assert body["time_expire"].endswith("+08:00")

    page = Client().get(f"/o/{placed.token}/pay/{payment.reference}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Scan with WeChat" in html
    assert "<svg" in html
    assert "20.00" in html


def test_long_chinese_title_is_cut_to_127_bytes(wechat, merchant):
    product = ProductFactory(merchant=merchant, title="微信支付测试商品" * 20)
    add_keys(product, 1)
    open_wechat_payment(place(product).order)
    description = wechat.verified[0][2]["description"]
    assert len(description.encode()) <= 127
    assert product.title.startswith(description)


def test_unsigned_or_forged_create_answer_is_refused(wechat, placed, keys):
    wechat.sign_with = keys.other
    with pytest.raises(InvalidSignature):
        open_wechat_payment(placed.order)
    assert Payment.objects.get(order=placed.order).gateway_data == {}


def test_create_refusal_is_gateway_unavailable(wechat, placed):
    wechat.server.route("POST", NATIVE, lambda request: wechat.unsigned(400, "PARAM_ERROR"))
    with pytest.raises(GatewayUnavailable):
        open_wechat_payment(placed.order)


# --- notifications ------------------------------------------------------------------------------
def test_genuine_notification_delivers_once_and_repeats_get_the_same_ack(
    keys, payment, django_capture_on_commit_callbacks
):
    body, headers = notification(keys, payment)
    responses = []
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(8):
            responses.append(post(body, headers))

    assert [(r.status_code, r.content) for r in responses] == [(204, b"")] * 8
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 2
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.gateway_trade_id == "42000012" + payment.reference[1:]
    assert PaymentEvent.objects.get().event_id == f"EV-{payment.reference}"
    assert len(mail.outbox) == 1
    results = list(PaymentNotification.objects.values_list("result", flat=True))
    assert sorted(results) == sorted(["accepted"] + ["duplicate"] * 7)


def test_decrypted_details_are_never_logged_or_stored(keys, payment, caplog):
    caplog.set_level(logging.DEBUG)
    body, headers = notification(keys, payment)
    assert post(body, headers).status_code == 204
    assert OPENID not in caplog.text
    assert all(OPENID not in n.body for n in PaymentNotification.objects.all())


def _tamper_ciphertext(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    """WeChat-signed, but the ciphertext was altered (a flipped bit fails the GCM tag)."""
    body, _headers = notification(keys, payment)
    payload = json.loads(body)
    raw = bytearray(base64.b64decode(payload["resource"]["ciphertext"]))
    raw[5] ^= 0x01
    payload["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    body = json.dumps(payload).encode()
    return body, wechat_headers(keys.platform, keys.serial, body)


def _tamper_after_signing(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    """A genuine notification whose body was changed after WeChat signed it."""
    body, headers = notification(keys, payment)
    return body.replace(b'"EV-', b'"EX-'), headers


def _wrong_apiv3_key(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    return notification(keys, payment, apiv3=secrets.token_hex(16))


def _signtest(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    """WeChat's probe: a deliberately broken signature, to see whether we check it."""
    body, headers = notification(keys, payment)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    return body, headers


def _other_key_same_serial(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    return notification(keys, payment, key=keys.other)


def _other_cert_serial(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    return notification(keys, payment, key=keys.other, serial=serial_of(keys.other_cert))


def _expired_cert(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
    return notification(keys, payment, key=keys.expired, serial=serial_of(keys.expired_cert))


def _header(name: str, value: str | None):
    def build(keys: Keys, payment: Payment) -> tuple[bytes, dict[str, str]]:
        body, headers = notification(keys, payment)
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
        return body, headers

    return build


@pytest.mark.parametrize(
    ("build", "code"),
    [
        pytest.param(_tamper_after_signing, "invalid_signature", id="tampered-body"),
        pytest.param(_tamper_ciphertext, "invalid_signature", id="tampered-ciphertext"),
        pytest.param(_wrong_apiv3_key, "invalid_signature", id="other-merchants-apiv3-key"),
        pytest.param(_other_key_same_serial, "invalid_signature", id="wrong-signing-key"),
        pytest.param(_other_cert_serial, "invalid_signature", id="unknown-serial"),
        pytest.param(_expired_cert, "invalid_signature", id="expired-certificate"),
        pytest.param(_signtest, "invalid_signature", id="signtest-probe"),
        pytest.param(_header("Wechatpay-Signature", None), "invalid_signature", id="unsigned"),
        pytest.param(_header("Wechatpay-Serial", None), "invalid_signature", id="no-serial"),
        pytest.param(
            _header("Wechatpay-Serial", "../../etc"), "invalid_signature", id="bad-serial"
        ),
        pytest.param(_header("Wechatpay-Serial", "X" * 500), "invalid_signature", id="huge-serial"),
        pytest.param(_header("Wechatpay-Timestamp", "soon"), "invalid_signature", id="bad-ts"),
        pytest.param(_header("Wechatpay-Nonce", ""), "invalid_signature", id="empty-nonce"),
        pytest.param(_header("Wechatpay-Signature", "%%%"), "invalid_signature", id="bad-b64"),
        pytest.param(
            _header("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"),
            "invalid_signature",
            id="sm2-type",
        ),
        pytest.param(
            lambda k, p: notification(k, p, timestamp=int(time.time()) - 3600),
            "stale_timestamp",
            id="stale",
        ),
        pytest.param(
            lambda k, p: notification(k, p, timestamp=int(time.time()) + 3600),
            "stale_timestamp",
            id="future",
        ),
        pytest.param(
            lambda k, p: notification(k, p, amount={"total": 1}), "amount_mismatch", id="amount"
        ),
        pytest.param(
            lambda k, p: notification(k, p, amount={"total": 1999}),
            "amount_mismatch",
            id="amount-one-fen-short",
        ),
        pytest.param(
            lambda k, p: notification(k, p, amount={"total": "2000"}),
            "malformed",
            id="amount-as-string",
        ),
        pytest.param(
            lambda k, p: notification(k, p, amount={"currency": "USD"}),
            "currency_mismatch",
            id="currency",
        ),
        pytest.param(
            lambda k, p: notification(k, p, out_trade_no="PDOESNOTEXIST00000000000"),
            "unknown_payment",
            id="unknown-reference",
        ),
        pytest.param(
            lambda k, p: notification(k, p, mchid="1900000999"), "wrong_merchant", id="mchid"
        ),
        pytest.param(
            lambda k, p: notification(k, p, appid="wx0000000000000000"),
            "wrong_merchant",
            id="appid",
        ),
        pytest.param(
            lambda k, p: notification(k, p, trade_state="NOTPAY"), "malformed", id="not-paid"
        ),
    ],
)
def test_bad_notifications_are_rejected_and_change_nothing(wechat, keys, payment, build, code):
    body, headers = build(keys, payment)
    calls_before = len(wechat.server.requests)
    before = snapshot()

    response = post(body, headers)

    assert_rejected(response, code)
    assert snapshot() == before
    # Nothing is ever fetched to verify a notification (no certificate download).
    assert len(wechat.server.requests) == calls_before
    log = PaymentNotification.objects.get()
    assert (log.result, log.detail) == (PaymentNotification.Result.REJECTED, code)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"id": 1}', b'{"id": "x"}'])
def test_signed_but_malformed_bodies_are_400_not_500(keys, payment, body):
    before = snapshot()
    response = post(body, wechat_headers(keys.platform, keys.serial, body))
    assert response.status_code == 400
    assert snapshot() == before


def test_signed_success_with_a_malformed_resource_is_400(keys, payment):
    for resource in (None, "x", {"algorithm": "AES"}, {"algorithm": "AEAD_AES_256_GCM"}):
        payload = {"id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource": resource}
        body = json.dumps(payload).encode()
        response = post(body, wechat_headers(keys.platform, keys.serial, body))
        assert response.status_code == 400


def test_other_event_types_are_acknowledged_and_change_nothing(keys, payment):
    before = snapshot()
    body, headers = notification(keys, payment, event_type="REFUND.SUCCESS")
    response = post(body, headers)
    assert (response.status_code, response.content) == (204, b"")
    assert snapshot() == before
    assert PaymentNotification.objects.get().result == PaymentNotification.Result.IGNORED


def test_headers_are_read_in_any_case(keys, payment):
    body, headers = notification(keys, payment)
    lowered = {name.lower(): value for name, value in headers.items()}
    shouting = {name.upper(): value for name, value in headers.items()}
    for variant in (lowered, shouting):
        event = gateway().verify_callback(
            CallbackRequest(method="POST", body=body, headers=variant)
        )
        assert event.payment_reference == payment.reference
        assert event.amount == Decimal("20.00")


def test_conflicting_header_spellings_are_refused(keys, payment):
    body, headers = notification(keys, payment)
    headers["wechatpay-serial"] = "ABCDEF"
    with pytest.raises(InvalidSignature):
        gateway().verify_callback(CallbackRequest(method="POST", body=body, headers=headers))


def test_serial_case_and_leading_zeros_do_not_matter(keys, payment):
    body, headers = notification(keys, payment, serial="00" + keys.serial.lower())
    assert post(body, headers).status_code == 204


def test_trade_id_already_bound_to_another_order_is_rejected(keys, wechat, stocked_product):
    first = open_wechat_payment(place(stocked_product).order)
    second = open_wechat_payment(place(stocked_product).order)
    assert post(*notification(keys, first)).status_code == 204
    before = snapshot()

    body, headers = notification(
        keys, second, transaction_id="42000012" + first.reference[1:], amount={"total": 1000}
    )
    response = post(body, headers)

    assert_rejected(response, "trade_bound_to_other_payment")
    assert snapshot() == before


def test_amounts_convert_exactly_from_fen(keys, wechat, merchant):
    product = ProductFactory(merchant=merchant, price=Decimal("0.07"))
    add_keys(product, 1)
    payment = open_wechat_payment(place(product).order)
    assert wechat.verified[0][2]["amount"]["total"] == 7
    assert post(*notification(keys, payment)).status_code == 204
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_platform_public_key_mode(keys, wechat, stocked_product):
    configure(
        keys,
        wechat.server.url,
        platform_certificates=public_pem(keys.platform),
        platform_public_key_id=PUBLIC_KEY_ID,
    )
    wechat.serial = PUBLIC_KEY_ID  # WeChat then signs its answers with the public key too
    payment = open_wechat_payment(place(stocked_product).order)
    # Certificates are no longer configured: the certificate serial is unknown now.
    assert post(*notification(keys, payment)).status_code == 400
    assert post(*notification(keys, payment, serial=PUBLIC_KEY_ID)).status_code == 204
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


# --- missing credentials --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "missing",
    ["apiv3_key", "merchant_private_key", "short_apiv3_key", "platform_certificates"],
)
def test_empty_credentials_refuse_to_verify(keys, wechat, payment, missing):
    stored = {"merchant_private_key": private_pem(keys.merchant), "apiv3_key": keys.apiv3}
    extra = {}
    if missing == "short_apiv3_key":
        stored["apiv3_key"] = keys.apiv3[:16]
    elif missing == "platform_certificates":
        extra["platform_certificates"] = ""
    else:
        stored[missing] = ""
    config = configure(keys, wechat.server.url, secrets_=stored, **extra)
    body, headers = notification(keys, payment)
    before = snapshot()

    response = post(body, headers)

    assert 400 <= response.status_code < 500
    assert snapshot() == before
    # Even called directly, bypassing is_enabled():
    with pytest.raises(InvalidSignature):
        WeChatPayGateway(config).verify_callback(
            CallbackRequest(method="POST", body=body, headers=headers)
        )


def test_garbage_platform_certificates_refuse_to_verify(keys, wechat, payment):
    configure(keys, wechat.server.url, platform_certificates="not a certificate")
    body, headers = notification(keys, payment)
    assert_rejected(post(body, headers), "invalid_signature")


# --- query ----------------------------------------------------------------------------------------
def test_query_open_paid_and_closed(wechat, keys, payment):
    gw = gateway()
    assert gw.query_payment(payment=payment) is None
    method, path, _body = wechat.verified[-1]
    assert (method, path) == ("GET", f"{QUERY}{payment.reference}?mchid={MCHID}")

    wechat.trades[payment.reference]["trade_state"] = "USERPAYING"
    assert gw.query_payment(payment=payment) is None

    wechat.trades[payment.reference]["trade_state"] = "SUCCESS"
    event = gw.query_payment(payment=payment)
    trade_id = "42000012" + payment.reference[1:]
    assert event is not None
    assert (event.kind, event.event_id, event.payment_reference) == (
        "paid",
        f"query:{trade_id}",
        payment.reference,
    )
    assert (event.amount, event.currency, event.gateway_trade_id) == (
        Decimal("20.00"),
        "CNY",
        trade_id,
    )
    order_services.confirm_payment(gateway_name="wechatpay", verified=event)
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED

    wechat.trades[payment.reference]["trade_state"] = "CLOSED"
    closed = gw.query_payment(payment=payment)
    assert closed is not None and closed.kind == "failed"


def test_query_of_an_order_wechat_never_saw_is_open(wechat, keys, payment):
    del wechat.trades[payment.reference]
    assert gateway().query_payment(payment=payment) is None


def test_query_answer_with_a_bad_signature_is_refused(wechat, keys, payment):
    wechat.trades[payment.reference]["trade_state"] = "SUCCESS"
    wechat.sign_with = keys.other
    with pytest.raises(InvalidSignature):
        gateway().query_payment(payment=payment)


# --- refund ---------------------------------------------------------------------------------------
@pytest.fixture
def paid(keys, payment):
    assert post(*notification(keys, payment)).status_code == 204
    payment.refresh_from_db()
    return payment


def test_refund_through_the_service(wechat, paid):
    refund = order_services.request_refund(
        request_id="refund-1", order_id=paid.order_id, reason="buyer asked", source="staff"
    )
    assert refund.status == Refund.Status.SUCCEEDED
    method, path, body = wechat.verified[-1]
    assert (method, path) == ("POST", REFUNDS)
    assert body["transaction_id"] == paid.gateway_trade_id
    assert body["amount"] == {"refund": 2000, "total": 2000, "currency": "CNY"}
    expected = hashlib.sha256(f"{paid.reference}|2000|refund-1".encode()).hexdigest()[:40]
    assert body["out_refund_no"] == "R" + expected
    # Our out_refund_no: the number WeChat finds the refund by (and shows in its platform).
    assert refund.gateway_refund_id == "R" + expected
    assert Order.objects.get(pk=paid.order_id).status == Order.Status.REFUNDED


def test_refund_retries_reuse_the_refund_number(wechat, paid):
    gw = gateway()
    first = gw.refund(payment=paid, amount=Decimal("5.00"), reason="r-1")
    again = gw.refund(payment=paid, amount=Decimal("5.00"), reason="r-1")
    other = gw.refund(payment=paid, amount=Decimal("5.00"), reason="r-2")
    numbers = [body["out_refund_no"] for _m, _p, body in wechat.verified[-3:]]
    assert numbers[0] == numbers[1] != numbers[2]
    assert first == again
    assert first.succeeded and other.succeeded
    assert first.amount == Decimal("5.00")
    assert len(wechat.refunds) == 2


def test_processing_refund_is_pending_until_the_query_says_success(wechat, paid):
    # PROCESSING is accepted, not finished: it can still end ABNORMAL (a closed bank card).
    wechat.refund_status = "PROCESSING"
    result = gateway().refund(payment=paid, amount=Decimal("20.00"), reason="r")
    assert (result.succeeded, result.pending) == (False, True)
    assert result.refund_id == wechat.verified[-1][2]["out_refund_no"]

    again = gateway().query_refund(payment=paid, refund_id=result.refund_id, amount=Decimal(20))
    assert again.pending
    assert wechat.verified[-1][:2] == ("GET", f"{REFUNDS}/{result.refund_id}")

    wechat.refunds[result.refund_id]["status"] = "SUCCESS"
    done = gateway().query_refund(payment=paid, refund_id=result.refund_id, amount=Decimal(20))
    assert (done.succeeded, done.amount, done.refund_id) == (True, Decimal(20), result.refund_id)


def test_refund_query_refuses_odd_answers(wechat, keys, paid):
    wechat.refund_status = "PROCESSING"
    number = gateway().refund(payment=paid, amount=Decimal("20.00"), reason="r").refund_id
    with pytest.raises(MalformedNotification):  # another amount than the refund's
        gateway().query_refund(payment=paid, refund_id=number, amount=Decimal("5.00"))
    for bad in ("", "../../v3/pay/transactions", "5030000000000000000000000000"):
        with pytest.raises(GatewayUnavailable):
            gateway().query_refund(payment=paid, refund_id=bad, amount=Decimal("20.00"))
    wechat.refund_query_error = (404, "RESOURCE_NOT_EXISTS")
    with pytest.raises(GatewayUnavailable):
        gateway().query_refund(payment=paid, refund_id=number, amount=Decimal("20.00"))
    wechat.refund_query_error = None
    wechat.sign_with = keys.other
    with pytest.raises(InvalidSignature):
        gateway().query_refund(payment=paid, refund_id=number, amount=Decimal("20.00"))


@pytest.mark.parametrize("status", ["ABNORMAL", "CLOSED"])
def test_abnormal_refund_is_not_a_success(wechat, paid, status):
    wechat.refund_status = status
    result = gateway().refund(payment=paid, amount=Decimal("20.00"), reason="r")
    assert (result.succeeded, result.pending) == (False, False)
    assert result.failure == f"wechatpay refund {status}"
    assert result.refund_id == wechat.verified[-1][2]["out_refund_no"]


def test_a_refund_state_wechat_may_add_is_pending_not_failed(wechat, paid):
    wechat.refund_status = "SOMETHING_NEW"
    result = gateway().refund(payment=paid, amount=Decimal("20.00"), reason="r")
    assert (result.succeeded, result.pending, result.failure) == (False, True, "")


def test_refused_refund_is_not_a_success(wechat, paid):
    wechat.refund_error = (403, "NOT_ENOUGH")
    result = gateway().refund(payment=paid, amount=Decimal("20.00"), reason="r")
    assert (result.succeeded, result.amount, result.refund_id) == (False, Decimal(0), "")
    assert result.failure == "wechatpay refused the refund (403): NOT_ENOUGH"


def test_processing_refund_through_the_service_and_the_repair_job(
    wechat, paid, django_capture_on_commit_callbacks
):
    wechat.refund_status = "PROCESSING"
    order_services.mark_receipt_sent(order_id=paid.order_id)
    refund = order_services.request_refund(
        request_id="refund-p", order_id=paid.order_id, reason="buyer asked", source="staff"
    )
    assert (refund.status, refund.gateway_refund_id) == (
        Refund.Status.PENDING,
        wechat.verified[-1][2]["out_refund_no"],
    )
    assert Order.objects.get(pk=paid.order_id).status == Order.Status.DELIVERED
    later = timezone.now() + timedelta(minutes=10)

    wechat.refunds[refund.gateway_refund_id]["status"] = "SUCCESS"
    with django_capture_on_commit_callbacks(execute=True):
        order_services.repair_paid_orders(now=later)
        order_services.repair_paid_orders(now=later)  # a replay changes nothing

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert Order.objects.get(pk=paid.order_id).status == Order.Status.REFUNDED
    assert Journal.objects.filter(reference=f"refund:{refund.pk}").count() == 1
    assert len(mail.outbox) == 1
    posts = [v for v in wechat.verified if v[0] == "POST" and v[1] == REFUNDS]
    assert len(posts) == 1  # asked about, never sent again


def test_processing_refund_that_ends_abnormal_is_failed_for_staff(wechat, paid):
    wechat.refund_status = "PROCESSING"
    refund = order_services.request_refund(
        request_id="refund-a", order_id=paid.order_id, reason="buyer asked", source="staff"
    )
    wechat.refunds[refund.gateway_refund_id]["status"] = "ABNORMAL"

    order_services.repair_paid_orders(now=timezone.now() + timedelta(minutes=10))

    refund.refresh_from_db()
    assert (refund.status, refund.failure) == (Refund.Status.FAILED, "wechatpay refund ABNORMAL")
    order = Order.objects.get(pk=paid.order_id)
    assert order.status == Order.Status.DELIVERED
    assert "refund refund-a failed" in order.needs_attention
    assert not Journal.objects.filter(reference=f"refund:{refund.pk}").exists()


# --- accepts --------------------------------------------------------------------------------------
def test_accepts_honours_currency_and_limits(wechat):
    config = GatewayConfig.objects.get(gateway="wechatpay")
    gw = WeChatPayGateway(config)
    assert gw.accepts(amount=Decimal("10.00"), currency="CNY")
    assert not gw.accepts(amount=Decimal("10.00"), currency="USD")
    config.min_amount, config.max_amount = Decimal("1.00"), Decimal("100.00")
    config.save()
    gw = WeChatPayGateway(config)
    assert not gw.accepts(amount=Decimal("0.99"), currency="CNY")
    assert gw.accepts(amount=Decimal("1.00"), currency="CNY")
    assert gw.accepts(amount=Decimal("100.00"), currency="CNY")
    assert not gw.accepts(amount=Decimal("100.01"), currency="CNY")
    config.currencies = ["USD"]
    config.save()
    # Listing USD does not make WeChat charge dollars.
    assert not WeChatPayGateway(config).accepts(amount=Decimal("10.00"), currency="USD")
    config.enabled = False
    config.save()
    assert not WeChatPayGateway(config).accepts(amount=Decimal("10.00"), currency="CNY")
