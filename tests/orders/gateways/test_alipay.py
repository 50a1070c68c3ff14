"""Alipay: RSA2-signed pay redirects, form-POST notifications through the real callback URL, and
signed query/refund answers from a local stub that plays Alipay with its own key pair.

The test signs and verifies with its own small implementation of Alipay's rules (not the
adapter's helpers), so a mistake in the adapter cannot cancel itself out."""

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core import mail
from django.test import Client
from django.utils import timezone

from ledger.models import Journal
from orders import services as order_services
from orders.exceptions import InvalidSignature, MalformedNotification
from orders.gateways.alipay import BEIJING, AlipayGateway
from orders.gateways.base import CallbackRequest
from orders.gateways.registry import build_gateway
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

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
CALLBACK = "/pay/callback/alipay/"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


# --- keys and Alipay's signing rules, written independently of the adapter ---------------------
@dataclass(frozen=True)
class Keys:
    app: rsa.RSAPrivateKey  # ours: signs requests
    alipay: rsa.RSAPrivateKey  # Alipay's: signs notifications and responses
    other: rsa.RSAPrivateKey  # anybody else's


@pytest.fixture(scope="module")
def keys() -> Keys:
    def new() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return Keys(app=new(), alipay=new(), other=new())


def private_pem(key: rsa.RSAPrivateKey, fmt=serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()


def bare(pem: str) -> str:
    """The key as Alipay's console shows it: one base64 line, no armour."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def content_of(params: dict[str, str], exclude: set[str], keep_empty: bool = False) -> str:
    return "&".join(
        f"{k}={v}" for k, v in sorted(params.items()) if k not in exclude and (v or keep_empty)
    )


def rsa2(key: rsa.RSAPrivateKey, content: str) -> str:
    raw = key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def rsa2_ok(key: rsa.RSAPrivateKey, content: str, signature: str) -> bool:
    try:
        key.public_key().verify(
            base64.b64decode(signature), content.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except (CryptoInvalidSignature, ValueError):
        return False
    return True


def beijing(moment) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


# --- the stub Alipay ------------------------------------------------------------------------------
class AlipayStub:
    """Alipay's gateway.do: checks our request signatures with the app public key, answers
    query and refund from ``trades``, signs answers with Alipay's key."""

    def __init__(self, server: StubServer, keys: Keys) -> None:
        self.server = server
        self.keys = keys
        self.trades: dict[str, dict[str, str]] = {}
        self.refunded: dict[str, tuple[str, Decimal]] = {}  # out_request_no → (trade, amount)
        self.unfinished: dict[str, tuple[str, Decimal]] = {}  # taken, no money moved yet
        self.defer_refunds = False
        self.verified: list[dict[str, str]] = []
        self.sign_with = keys.alipay
        self.sign_first = False
        self.sign_unescaped = False
        server.route("POST", "/gateway.do", self.api)
        server.route("GET", "/gateway.do", self.cashier)

    @property
    def url(self) -> str:
        return self.server.url + "/gateway.do"

    def _check(self, params: dict[str, str]) -> bool:
        ok = params.get("sign_type") == "RSA2" and rsa2_ok(
            self.keys.app, content_of(params, {"sign"}), params.get("sign", "")
        )
        if ok:
            self.verified.append(dict(params))
        return ok

    def cashier(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        status = 200 if self._check(request.query) else 400
        return status, {"Content-Type": "text/html; charset=utf-8"}, "收银台".encode()

    def api(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        params = request.form
        method = params.get("method", "")
        key = method.replace(".", "_") + "_response"
        if not self._check(params):
            return self.respond(key, {"code": "40002", "sub_code": "isv.invalid-signature"})
        biz = json.loads(params["biz_content"])
        if method == "alipay.trade.query":
            return self.respond(key, self.query(biz))
        if method == "alipay.trade.refund":
            return self.respond(key, self.refund(biz))
        if method == "alipay.trade.fastpay.refund.query":
            return self.respond(key, self.query_refund(biz))
        return self.respond("error_response", {"code": "40002", "sub_code": "isv.invalid-method"})

    def query(self, biz: dict[str, str]) -> dict[str, str]:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None:
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "交易不存在",
                "out_trade_no": biz["out_trade_no"],
                "buyer_pay_amount": "0.00",
            }
        return {
            "code": "10000",
            "msg": "Success",
            "buyer_logon_id": "buy***@example.com",
            "out_trade_no": biz["out_trade_no"],
            "store_name": "测试/门店",  # a slash: JSON may escape it, the signature may not
            **trade,
        }

    def refund(self, biz: dict[str, str]) -> dict[str, str]:
        trade = self.trades.get(biz["out_trade_no"])
        if trade is None or trade["trade_status"] != "TRADE_SUCCESS":
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
        request_no = biz["out_request_no"]
        if self.defer_refunds and request_no not in self.refunded:
            # Taken, not finished: the answer moves no money (fund_change N).
            self.unfinished[request_no] = (biz["out_trade_no"], Decimal(biz["refund_amount"]))
            return {
                "code": "10000",
                "msg": "Success",
                "trade_no": trade["trade_no"],
                "out_trade_no": biz["out_trade_no"],
                "fund_change": "N",
                "refund_fee": "0.00",
            }
        first = request_no not in self.refunded
        if first:
            self.refunded[request_no] = (biz["out_trade_no"], Decimal(biz["refund_amount"]))
        total = sum(a for t, a in self.refunded.values() if t == biz["out_trade_no"])
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": biz["out_trade_no"],
            "fund_change": "Y" if first else "N",
            "refund_fee": f"{total:.2f}",
        }

    def query_refund(self, biz: dict[str, str]) -> dict[str, str]:
        request_no = biz["out_request_no"]
        answer = {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"]}
        if request_no in self.refunded:
            trade_ref, amount = self.refunded[request_no]
            answer.update(
                {
                    "out_request_no": request_no,
                    "refund_amount": f"{amount:.2f}",
                    "refund_status": "REFUND_SUCCESS",
                    "trade_no": self.trades[trade_ref]["trade_no"],
                }
            )
        # Unfinished or unknown: no refund data, no refund_status ("not received or failed").
        return answer

    def finish(self, request_no: str, *, succeed: bool = True) -> None:
        """Alipay finishes (or drops) a refund it had taken."""
        taken = self.unfinished.pop(request_no)
        if succeed:
            self.refunded[request_no] = taken

    def respond(self, key: str, inner: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        # Deliberately unlike json.dumps' defaults (spaces, raw Chinese, "\/"): only a verifier
        # that cuts the signed text out of the raw body passes.
        text = json.dumps(inner, ensure_ascii=False, separators=(", ", ": "))
        escaped = text.replace("/", "\\/")
        sign = rsa2(self.sign_with, text if self.sign_unescaped else escaped)
        if self.sign_first:
            body = f'{{"sign":"{sign}", "{key}" : {escaped}}}'
        else:
            body = f'{{"{key}":{escaped},"sign":"{sign}"}}'
        return 200, {"Content-Type": "text/html;charset=utf-8"}, body.encode()


@pytest.fixture
def stub(keys):
    with StubServer() as server:
        yield AlipayStub(server, keys)


def configure(
    url: str,
    *,
    private_key: str,
    public_key: str,
    seller_id: str = SELLER_ID,
    **fields,
) -> GatewayConfig:
    config = GatewayConfig(
        gateway="alipay",
        enabled=True,
        options={
            "app_id": APP_ID,
            "alipay_public_key": public_key,
            "gateway_url": url,
            "seller_id": seller_id,
        },
        **fields,
    )
    config.set_secrets({"app_private_key": private_key})
    config.save()
    return config


@pytest.fixture
def alipay(keys, stub, db) -> GatewayConfig:
    return configure(
        stub.url, private_key=private_pem(keys.app), public_key=public_pem(keys.alipay)
    )


def open_alipay_payment(order: Order, *, mobile: bool = False):
    action = order_services.start_payment(
        order=order, gateway_name="alipay", base_url="http://testserver/", mobile=mobile
    )
    return action, Payment.objects.filter(order=order).latest("created_at")


@pytest.fixture
def payment(alipay, stocked_product) -> Payment:
    return open_alipay_payment(place(stocked_product, quantity=2).order)[1]


def notification(
    payment: Payment,
    keys: Keys,
    *,
    key: rsa.RSAPrivateKey | None = None,
    keep_empty: bool = False,
    **overrides: str | None,
) -> dict[str, str]:
    """A trade_status_sync notification as Alipay posts it, signed over every field but sign
    and sign_type; any field overridable (None removes it) before signing."""
    now = timezone.now()
    amount = f"{payment.amount:.2f}"
    params: dict[str, str | None] = {
        "gmt_create": beijing(now - timedelta(minutes=1)),
        "charset": "utf-8",
        "seller_email": "shop@example.com",
        "subject": "Product",
        "buyer_id": "2088102177846875",
        "invoice_amount": amount,
        "notify_id": f"2024N{payment.reference}",
        "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}]),
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": amount,
        "app_id": APP_ID,
        "auth_app_id": APP_ID,
        "buyer_pay_amount": amount,
        "sign_type": "RSA2",
        "seller_id": SELLER_ID,
        "gmt_payment": beijing(now),
        "notify_time": beijing(now),
        "version": "1.0",
        "out_trade_no": payment.reference,
        "total_amount": amount,
        "trade_no": f"2024T{payment.reference}",
        "buyer_logon_id": "buy***@example.com",
        "point_amount": "0.00",
    }
    params.update(overrides)
    signed = {k: v for k, v in params.items() if v is not None}
    content = content_of(signed, {"sign", "sign_type"}, keep_empty=keep_empty)
    signed["sign"] = rsa2(key or keys.alipay, content)
    return signed


def post_notify(params: dict[str, str], client: Client | None = None):
    return (client or Client()).post(CALLBACK, data=urlencode(params), content_type=FORM)


def snapshot() -> dict[str, object]:
    """Everything a callback could change, apart from the notification log."""
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "paid_at", "delivered_at")),
        "payments": sorted(Payment.objects.values_list("id", "status", "gateway_trade_id")),
        "events": PaymentEvent.objects.count(),
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_id")),
        "deliveries": Delivery.objects.count(),
    }


def assert_rejected(response, code: str, before: dict[str, object]) -> None:
    assert response.status_code == 400
    assert response.content == b"fail"
    assert snapshot() == before
    log = PaymentNotification.objects.filter(gateway="alipay").latest("id")
    assert log.result == PaymentNotification.Result.REJECTED
    assert log.detail == code


# --- opening a payment ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mobile", "method", "product_code"),
    [
        (False, "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        (True, "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
def test_pay_redirect_is_signed_with_the_app_key(
    alipay, stub, stocked_product, keys, mobile, method, product_code
):
    placed = place(stocked_product, quantity=2)
    action, payment = open_alipay_payment(placed.order, mobile=mobile)

    assert action.redirect_url.startswith(stub.url + "?")
    assert payment.gateway_data == {}
    assert stub.verified == []  # page pay needs no call from us: the buyer's browser goes there
    # The buyer's browser follows the redirect; the stub cashier checks our signature.
    assert httpx.get(action.redirect_url).status_code == 200
    params = stub.verified[-1]
    assert dict(parse_qsl(urlsplit(action.redirect_url).query)) == params
    assert {k: v for k, v in params.items() if k not in ("timestamp", "biz_content", "sign")} == {
        "app_id": APP_ID,
        "method": method,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "version": "1.0",
        "notify_url": "http://testserver/pay/callback/alipay/",
        "return_url": f"http://testserver/o/{placed.token}/",
    }
    sent = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
    assert abs(sent.replace(tzinfo=BEIJING) - timezone.now()) < timedelta(minutes=1)
    biz = json.loads(params["biz_content"])
    expected = {
        "out_trade_no": payment.reference,
        "total_amount": "20.00",
        "subject": stocked_product.title,
        "product_code": product_code,
        "time_expire": beijing(placed.order.expires_at),
    }
    if mobile:
        expected["quit_url"] = f"http://testserver/o/{placed.token}/"
    assert biz == expected


def test_order_page_sends_a_phone_buyer_to_wap_pay(alipay, stub, stocked_product):
    placed = place(stocked_product)
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"

    response = Client().post(
        f"/o/{placed.token}/pay/", {"gateway": "alipay"}, headers={"User-Agent": iphone}
    )

    assert response.status_code == 302
    assert response["Location"].startswith(stub.url + "?")
    assert dict(parse_qsl(urlsplit(response["Location"]).query))["method"] == (
        "alipay.trade.wap.pay"
    )


def test_subject_drops_characters_alipay_refuses(alipay, stub, merchant):
    product = ProductFactory(merchant=merchant, title="Steam 100/200 = gift & more")
    add_keys(product, 1)
    action, _payment = open_alipay_payment(place(product).order)
    biz = json.loads(dict(parse_qsl(urlsplit(action.redirect_url).query))["biz_content"])
    assert biz["subject"] == "Steam 100 200   gift   more"


@pytest.mark.parametrize(
    ("private_format", "public_format"),
    [
        pytest.param("pkcs8-pem", "spki-pem", id="pem"),
        pytest.param("pkcs1-pem", "pkcs1-pem", id="pkcs1-pem"),
        pytest.param("pkcs8-bare", "spki-bare", id="console-pkcs8"),
        pytest.param("pkcs1-bare", "spki-bare", id="console-pkcs1"),
    ],
)
def test_keys_are_read_as_pem_or_as_the_console_shows_them(
    keys, stub, stocked_product, private_format, public_format
):
    private = {
        "pkcs8-pem": private_pem(keys.app),
        "pkcs1-pem": private_pem(keys.app, serialization.PrivateFormat.TraditionalOpenSSL),
        "pkcs8-bare": bare(private_pem(keys.app)),
        "pkcs1-bare": bare(private_pem(keys.app, serialization.PrivateFormat.TraditionalOpenSSL)),
    }[private_format]
    public = {
        "spki-pem": public_pem(keys.alipay),
        "pkcs1-pem": public_pem(keys.alipay, serialization.PublicFormat.PKCS1),
        "spki-bare": bare(public_pem(keys.alipay)),
    }[public_format]
    configure(stub.url, private_key=private, public_key=public)
    action, payment = open_alipay_payment(place(stocked_product).order)

    assert httpx.get(action.redirect_url).status_code == 200
    assert post_notify(notification(payment, keys)).content == b"success"
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


# --- notifications --------------------------------------------------------------------------------
def test_genuine_notification_delivers_once_and_every_repeat_gets_success(
    payment, keys, django_capture_on_commit_callbacks
):
    params = notification(payment, keys)

    with django_capture_on_commit_callbacks(execute=True):
        responses = [post_notify(params) for _ in range(8)]

    assert [(r.status_code, r.content) for r in responses] == [(200, b"success")] * 8
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(order=order, status=CardKey.Status.SOLD).count() == 2
    assert len(mail.outbox) == 1
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.gateway_trade_id == f"2024T{payment.reference}"
    event = PaymentEvent.objects.get()
    assert (event.event_id, event.kind, event.amount, event.currency) == (
        f"2024N{payment.reference}",
        "paid",
        Decimal("20.00"),
        "CNY",
    )
    results = list(PaymentNotification.objects.values_list("result", flat=True))
    assert sorted(results) == sorted(["accepted"] + ["duplicate"] * 7)


def test_notification_retried_a_day_later_is_still_accepted(payment, keys):
    # Alipay retries for ~25 hours; the last attempts carry an old notify_time.
    params = notification(payment, keys, notify_time=beijing(timezone.now() - timedelta(hours=25)))
    assert post_notify(params).content == b"success"
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def _tampered(payment, keys):
    params = notification(payment, keys)
    params["total_amount"] = "0.01"  # changed after Alipay signed
    return params


def _unsigned(payment, keys):
    params = notification(payment, keys)
    del params["sign"]
    return params


BAD_NOTIFICATIONS = [
    pytest.param(_tampered, "invalid_signature", id="tampered"),
    pytest.param(lambda p, k: notification(p, k, key=k.other), "invalid_signature", id="wrong-key"),
    pytest.param(lambda p, k: notification(p, k, key=k.app), "invalid_signature", id="app-key"),
    pytest.param(_unsigned, "invalid_signature", id="unsigned"),
    pytest.param(
        lambda p, k: notification(p, k, sign_type="RSA"), "invalid_signature", id="sha1-downgrade"
    ),
    pytest.param(
        lambda p, k: notification(p, k, notify_time=beijing(timezone.now() - timedelta(hours=49))),
        "stale_timestamp",
        id="stale",
    ),
    pytest.param(
        lambda p, k: notification(p, k, notify_time=beijing(timezone.now() + timedelta(hours=1))),
        "stale_timestamp",
        id="future",
    ),
    pytest.param(
        lambda p, k: notification(p, k, notify_time=None), "malformed", id="no-notify-time"
    ),
    pytest.param(lambda p, k: notification(p, k, total_amount="0.01"), "amount_mismatch", id="amt"),
    pytest.param(
        lambda p, k: notification(p, k, total_amount="20.001"), "malformed", id="amount-3-digits"
    ),
    pytest.param(lambda p, k: notification(p, k, total_amount="2E1"), "malformed", id="amount-exp"),
    pytest.param(
        lambda p, k: notification(p, k, out_trade_no="PDOESNOTEXIST"),
        "unknown_payment",
        id="unknown-order",
    ),
    pytest.param(
        # A genuine notification of somebody else's app (same Alipay platform key).
        lambda p, k: notification(p, k, app_id="2021999999999999"),
        "unknown_payment",
        id="other-app",
    ),
    pytest.param(
        lambda p, k: notification(p, k, seller_id="2088999999999999"),
        "unknown_payment",
        id="other-seller",
    ),
    pytest.param(
        lambda p, k: notification(p, k, trade_status="TRADE_WEIRD"), "malformed", id="status"
    ),
    pytest.param(lambda p, k: notification(p, k, trade_no=None), "malformed", id="no-trade-no"),
]


@pytest.mark.parametrize(("build", "code"), BAD_NOTIFICATIONS)
def test_bad_notifications_are_rejected_and_change_nothing(payment, keys, build, code):
    params = build(payment, keys)
    before = snapshot()

    assert_rejected(post_notify(params), code, before)


def test_repeated_form_field_is_rejected(payment, keys):
    params = notification(payment, keys)
    before = snapshot()
    body = urlencode(params) + "&total_amount=0.01"

    assert_rejected(Client().post(CALLBACK, data=body, content_type=FORM), "malformed", before)


def test_currency_mismatch_is_rejected(alipay, stocked_product, keys):
    # A payment in another currency can only exist by mistake (accepts() refuses it): a yuan
    # notification must still not pay it.
    order = place(stocked_product).order
    usd = Payment.objects.create(
        reference="PUSD0001", order=order, gateway="alipay", amount=order.amount, currency="USD"
    )
    before = snapshot()

    assert_rejected(post_notify(notification(usd, keys)), "currency_mismatch", before)


def test_trade_already_bound_to_another_order_is_rejected(alipay, stocked_product, keys):
    first = open_alipay_payment(place(stocked_product).order)[1]
    second = open_alipay_payment(place(stocked_product).order)[1]
    assert post_notify(notification(first, keys, trade_no="2024SHARED")).status_code == 200
    before = snapshot()

    response = post_notify(notification(second, keys, trade_no="2024SHARED"))

    assert_rejected(response, "trade_bound_to_other_payment", before)
    assert Order.objects.get(pk=second.order_id).status == Order.Status.PENDING


def test_trade_closed_marks_the_payment_failed(payment, keys):
    response = post_notify(notification(payment, keys, trade_status="TRADE_CLOSED"))

    assert response.content == b"success"
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING


def test_trade_finished_after_success_delivers_nothing_new(payment, keys):
    assert post_notify(notification(payment, keys)).content == b"success"
    before = snapshot()

    finished = notification(
        payment, keys, trade_status="TRADE_FINISHED", notify_id=f"2024F{payment.reference}"
    )
    assert post_notify(finished).content == b"success"

    after = snapshot()
    assert (after["deliveries"], after["keys"]) == (before["deliveries"], before["keys"])


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"trade_status": "WAIT_BUYER_PAY", "gmt_payment": None}, id="wait-buyer-pay"),
        pytest.param(
            {
                "notify_id": "2024REFUND",
                "refund_fee": "5.00",
                "gmt_refund": "2024-01-01 12:00:00.123",
                "out_biz_no": "R123",
            },
            id="refund",
        ),
    ],
)
def test_notifications_with_nothing_to_do_are_acknowledged_and_change_nothing(
    payment, keys, overrides
):
    before = snapshot()

    response = post_notify(notification(payment, keys, **overrides))

    # "success", or Alipay would retry it for a day.
    assert (response.status_code, response.content) == (200, b"success")
    assert snapshot() == before
    log = PaymentNotification.objects.get()
    assert log.result == PaymentNotification.Result.IGNORED


def test_nothing_to_do_notification_with_a_bad_signature_is_not_acknowledged(payment, keys):
    params = notification(payment, keys, key=keys.other, trade_status="WAIT_BUYER_PAY")
    assert_rejected(post_notify(params), "invalid_signature", snapshot())


def test_html_escaped_fund_bill_list_verifies(payment, keys):
    # Alipay signs fund_bill_list as JSON but some notifications carry it HTML-escaped.
    params = notification(payment, keys)
    params["fund_bill_list"] = params["fund_bill_list"].replace('"', "&quot;")

    assert post_notify(params).content == b"success"
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_raw_utf8_in_the_form_body_is_read(payment, keys):
    params = notification(payment, keys, subject="测试商品 100元")
    body = "&".join(
        f"{k}={v if k == 'subject' else quote(v, safe='')}" for k, v in params.items()
    ).encode()

    response = Client().post(CALLBACK, data=body, content_type=FORM)

    assert response.content == b"success"


def test_signature_over_empty_values_verifies(payment, keys):
    params = notification(payment, keys, body="", keep_empty=True)
    assert post_notify(params).content == b"success"


def test_empty_private_key_refuses_everything(payment, keys):
    params = notification(payment, keys)
    config = GatewayConfig.objects.get(gateway="alipay")
    config.set_secrets({"app_private_key": ""})
    config.save()
    before = snapshot()

    response = post_notify(params)

    assert 400 <= response.status_code < 500
    assert snapshot() == before
    # Even called directly, bypassing the "enabled" check, it verifies nothing.
    gateway = AlipayGateway(config)
    request = CallbackRequest(method="POST", body=urlencode(params).encode(), headers={})
    with pytest.raises(InvalidSignature):
        gateway.verify_callback(request)


@pytest.mark.parametrize("option", ["alipay_public_key", "app_id"])
def test_empty_option_refuses_everything(payment, keys, option):
    params = notification(payment, keys)
    config = GatewayConfig.objects.get(gateway="alipay")
    config.options[option] = ""
    config.save()
    before = snapshot()

    assert 400 <= post_notify(params).status_code < 500
    assert snapshot() == before
    with pytest.raises(InvalidSignature):
        AlipayGateway(config).verify_callback(
            CallbackRequest(method="POST", body=urlencode(params).encode(), headers={})
        )


def test_get_on_the_callback_url_changes_nothing(payment, keys):
    before = snapshot()
    response = Client().get(CALLBACK, notification(payment, keys))
    assert 400 <= response.status_code < 500
    assert snapshot() == before


# --- query ----------------------------------------------------------------------------------------
def gateway() -> AlipayGateway:
    built = build_gateway("alipay")
    assert isinstance(built, AlipayGateway)
    return built


def paid_trade(payment: Payment, status: str = "TRADE_SUCCESS") -> dict[str, str]:
    return {
        "trade_no": f"2024T{payment.reference}",
        "trade_status": status,
        "total_amount": f"{payment.amount:.2f}",
    }


@pytest.mark.parametrize("layout", ["plain", "sign-first", "signed-unescaped"])
def test_query_paid_trade_returns_a_verified_event(payment, stub, layout):
    stub.trades[payment.reference] = paid_trade(payment)
    stub.sign_first = layout == "sign-first"
    stub.sign_unescaped = layout == "signed-unescaped"

    event = gateway().query_payment(payment=payment)

    assert event is not None
    assert (event.event_id, event.kind, event.payment_reference) == (
        f"query:2024T{payment.reference}:TRADE_SUCCESS",
        "paid",
        payment.reference,
    )
    assert (event.amount, event.currency, event.gateway_trade_id) == (
        Decimal("20.00"),
        "CNY",
        f"2024T{payment.reference}",
    )
    request = stub.verified[-1]  # the stub checked our signature
    assert request["method"] == "alipay.trade.query"
    assert json.loads(request["biz_content"]) == {"out_trade_no": payment.reference}
    # The reconcile path: the verified event pays the order like a notification would.
    order_services.confirm_payment(gateway_name="alipay", verified=event)
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_query_open_or_unknown_trade_returns_none(payment, stub):
    assert gateway().query_payment(payment=payment) is None  # ACQ.TRADE_NOT_EXIST
    stub.trades[payment.reference] = paid_trade(payment, "WAIT_BUYER_PAY")
    assert gateway().query_payment(payment=payment) is None
    assert len(stub.verified) == 2


def test_query_closed_trade_is_a_failed_event(payment, stub):
    stub.trades[payment.reference] = paid_trade(payment, "TRADE_CLOSED")
    event = gateway().query_payment(payment=payment)
    assert event is not None
    assert event.kind == "failed"


def test_query_answer_not_signed_by_alipay_is_refused(payment, stub, keys):
    stub.trades[payment.reference] = paid_trade(payment)
    stub.sign_with = keys.other

    with pytest.raises(InvalidSignature):
        gateway().query_payment(payment=payment)


def test_query_answer_for_another_trade_is_refused(payment, stub):
    stub.trades[payment.reference] = {**paid_trade(payment), "out_trade_no": "POTHER"}
    with pytest.raises(MalformedNotification, match="another trade"):
        gateway().query_payment(payment=payment)


# --- refund ---------------------------------------------------------------------------------------
def test_refund_is_signed_idempotent_and_verified(payment, stub, keys):
    assert post_notify(notification(payment, keys)).content == b"success"
    payment.refresh_from_db()
    stub.trades[payment.reference] = paid_trade(payment)

    result = gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-1 buyer asked")
    again = gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-1 buyer asked")

    assert result.succeeded and again.succeeded
    assert result.amount == Decimal("5.00")
    assert result.refund_id == again.refund_id
    assert list(stub.refunded) == [result.refund_id]  # the retry moved no money
    # The repeat's answer moved no money (fund_change N): the refund query confirmed it.
    query = stub.verified[-1]
    assert query["method"] == "alipay.trade.fastpay.refund.query"
    assert json.loads(query["biz_content"]) == {
        "out_trade_no": payment.reference,
        "out_request_no": result.refund_id,
    }
    request = stub.verified[-2]
    assert request["method"] == "alipay.trade.refund"
    assert json.loads(request["biz_content"]) == {
        "out_trade_no": payment.reference,
        "trade_no": payment.gateway_trade_id,
        "refund_amount": "5.00",
        "out_request_no": result.refund_id,
        "refund_reason": "RF-1 buyer asked",
    }
    other = gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-2")
    assert other.succeeded and other.refund_id != result.refund_id


def test_refund_refused_by_alipay_is_not_succeeded(payment, stub):
    result = gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-1")
    assert not result.succeeded
    assert result.amount == Decimal("0")


def test_refund_without_fund_change_is_pending_until_the_query_confirms_it(payment, stub, keys):
    assert post_notify(notification(payment, keys)).content == b"success"
    payment.refresh_from_db()
    stub.trades[payment.reference] = paid_trade(payment)
    stub.defer_refunds = True

    result = gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-1")
    assert (result.succeeded, result.pending, result.amount) == (False, True, Decimal("5.00"))
    assert result.refund_id in stub.unfinished

    still = gateway().query_refund(payment=payment, refund_id=result.refund_id, amount=Decimal(5))
    assert (still.succeeded, still.pending, still.refund_id) == (False, False, "")
    assert still.failure

    stub.finish(result.refund_id)
    done = gateway().query_refund(payment=payment, refund_id=result.refund_id, amount=Decimal(5))
    assert (done.succeeded, done.refund_id) == (True, result.refund_id)
    with pytest.raises(MalformedNotification):
        gateway().query_refund(payment=payment, refund_id=result.refund_id, amount=Decimal(4))


def test_unfinished_refund_through_the_service(
    payment, stub, keys, django_capture_on_commit_callbacks
):
    assert post_notify(notification(payment, keys)).content == b"success"
    payment.refresh_from_db()
    order_services.mark_receipt_sent(order_id=payment.order_id)
    stub.trades[payment.reference] = paid_trade(payment)
    stub.defer_refunds = True
    refund = order_services.request_refund(
        request_id="ali-1", order_id=payment.order_id, reason="buyer asked", source="staff"
    )
    assert refund.status == Refund.Status.PENDING
    assert refund.gateway_refund_id in stub.unfinished
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED

    stub.finish(refund.gateway_refund_id)
    later = timezone.now() + timedelta(minutes=10)
    with django_capture_on_commit_callbacks(execute=True):
        order_services.repair_paid_orders(now=later)
        order_services.repair_paid_orders(now=later)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.REFUNDED
    assert Journal.objects.filter(reference=f"refund:{refund.pk}").count() == 1
    assert len(mail.outbox) == 1
    methods = [v["method"] for v in stub.verified]
    assert methods.count("alipay.trade.refund") == 1


def test_a_refund_alipay_never_finished_fails_and_retries_the_same_request(payment, stub, keys):
    assert post_notify(notification(payment, keys)).content == b"success"
    payment.refresh_from_db()
    stub.trades[payment.reference] = paid_trade(payment)
    stub.defer_refunds = True
    refund = order_services.request_refund(
        request_id="ali-2", order_id=payment.order_id, reason="buyer asked", source="staff"
    )
    request_no = refund.gateway_refund_id
    stub.finish(request_no, succeed=False)

    order_services.repair_paid_orders(now=timezone.now() + timedelta(minutes=10))

    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert (refund.gateway_refund_id, refund.failure) == (
        "",
        "alipay has no successful refund under this request number",
    )
    assert "refund ali-2 failed" in Order.objects.get(pk=payment.order_id).needs_attention
    assert not Journal.objects.filter(reference=f"refund:{refund.pk}").exists()

    # Alipay's retry: the same out_request_no again, which can never refund twice.
    stub.defer_refunds = False
    again = order_services.request_refund(
        request_id="ali-2", order_id=payment.order_id, reason="buyer asked", source="staff"
    )
    assert again.status == Refund.Status.SUCCEEDED and again.gateway_refund_id == request_no
    numbers = [
        json.loads(v["biz_content"])["out_request_no"]
        for v in stub.verified
        if v["method"] == "alipay.trade.refund"
    ]
    assert numbers == [request_no, request_no]
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.REFUNDED


def test_refund_answer_not_signed_by_alipay_is_refused(payment, stub, keys):
    stub.trades[payment.reference] = paid_trade(payment)
    stub.sign_with = keys.other
    with pytest.raises(InvalidSignature):
        gateway().refund(payment=payment, amount=Decimal("5.00"), reason="RF-1")


# --- availability ---------------------------------------------------------------------------------
def test_accepts_honours_currency_min_and_max(alipay):
    alipay.min_amount = Decimal("1.00")
    alipay.max_amount = Decimal("500.00")
    alipay.currencies = ["CNY", "USD"]
    alipay.save()
    gw = gateway()

    assert gw.accepts(amount=Decimal("1.00"), currency="CNY")
    assert gw.accepts(amount=Decimal("500.00"), currency="CNY")
    assert not gw.accepts(amount=Decimal("0.99"), currency="CNY")
    assert not gw.accepts(amount=Decimal("500.01"), currency="CNY")
    # Alipay charges yuan: configuring USD does not make a USD order chargeable.
    assert not gw.accepts(amount=Decimal("10.00"), currency="USD")
    alipay.currencies = ["USD"]
    alipay.save()
    assert not gateway().accepts(amount=Decimal("10.00"), currency="CNY")


def test_disabled_or_unconfigured_gateway_accepts_nothing(alipay):
    alipay.enabled = False
    alipay.save()
    assert not gateway().accepts(amount=Decimal("10.00"), currency="CNY")
    alipay.enabled = True
    alipay.set_secrets({})
    alipay.save()
    assert not gateway().accepts(amount=Decimal("10.00"), currency="CNY")
