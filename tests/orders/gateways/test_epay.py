"""易支付 (epay): MD5-signed pay redirects, notifications as GET query and as POST form through the
real callback URL, confirmation through the query API of a local stub aggregator, refunds.

The test signs and verifies with its own small implementation of the epay rules (not the
adapter's helpers), so a mistake in the adapter cannot cancel itself out. The key is generated
here, per test."""

import hashlib
import json
import secrets
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from django.core import mail
from django.test import Client

from orders import services as order_services
from orders.exceptions import InvalidSignature
from orders.gateways.base import CallbackRequest
from orders.gateways.epay import EpayGateway, ManualRefundRequired, Unconfirmed
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

PID = "1001"
CALLBACK = "/pay/callback/epay/"
FORM = "application/x-www-form-urlencoded"


# --- the epay rules, written independently of the adapter ----------------------------------------
def epay_sign(params: dict[str, str], key: str) -> str:
    content = "&".join(
        f"{k}={v}"
        for k, v in sorted(params.items())
        if k not in ("sign", "sign_type") and v.strip() != ""
    )
    return hashlib.md5((content + key).encode()).hexdigest()  # noqa: S324 - epay signs with MD5


@pytest.fixture
def key() -> str:
    return secrets.token_hex(16)


# --- the stub aggregator ------------------------------------------------------------------------
class EpayStub:
    """An epay aggregator: submit.php checks our signature; api.php answers act=order from
    ``trades`` (keyed by out_trade_no) and act=refund, both only for our pid and key."""

    def __init__(self, server: StubServer, key: str) -> None:
        self.server = server
        self.key = key
        self.trades: dict[str, dict[str, object]] = {}
        self.query_answer: tuple[int, bytes] | None = None  # overrides every query answer
        self.refund_code = 1
        self.queries: list[StubRequest] = []
        self.refunds: list[StubRequest] = []
        server.route("GET", "/submit.php", self.submit)
        server.route("GET", "/api.php", self.api_get)
        server.route("POST", "/api.php", self.api_post)

    @property
    def base(self) -> str:
        return self.server.url + "/"

    def _json(self, status: int, body: object) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def submit(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        params = request.query
        ok = params.get("sign_type") == "MD5" and params.get("sign") == epay_sign(params, self.key)
        return (200 if ok else 400), {"Content-Type": "text/html"}, b"cashier" if ok else b"sign"

    def api_get(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        params = request.query
        if params.get("act") != "order":
            return self._json(200, {"code": -5, "msg": "No Act!"})
        self.queries.append(request)
        if self.query_answer is not None:
            status, body = self.query_answer
            return status, {"Content-Type": "application/json"}, body
        if params.get("pid") != PID:
            return self._json(200, {"code": -3, "msg": "PID不存在"})
        if params.get("key") != self.key:
            return self._json(200, {"code": -2, "msg": "KEY校验失败"})
        trade = self.trades.get(params.get("out_trade_no", ""))
        if trade is None:
            return self._json(200, {"code": -1, "msg": "订单号不存在"})
        return self._json(
            200,
            {
                "code": 1,
                "msg": "查询订单号成功！",
                "out_trade_no": params["out_trade_no"],
                "pid": int(PID),
                "type": "alipay",
                "name": "product",
                **trade,
            },
        )

    def api_post(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        if request.query.get("act") != "refund":
            return self._json(200, {"code": -5, "msg": "No Act!"})
        self.refunds.append(request)
        form = request.form
        if form.get("pid") != PID or form.get("key") != self.key:
            return self._json(200, {"code": -2, "msg": "KEY校验失败"})
        if self.refund_code not in (0, 1):
            return self._json(200, {"code": self.refund_code, "msg": "退款失败"})
        return self._json(200, {"code": self.refund_code, "refund_no": "RF20240101000001"})


@pytest.fixture
def stub(key):
    with StubServer() as server:
        yield EpayStub(server, key)


def configure(stub: EpayStub, key: str, **options: str) -> GatewayConfig:
    config, _created = GatewayConfig.objects.update_or_create(
        gateway="epay",
        defaults={"enabled": True, "options": {"api_base": stub.base, "pid": PID, **options}},
    )
    config.set_secrets({"key": key})
    config.save()
    return config


@pytest.fixture
def config(stub, key):
    return configure(stub, key)


@pytest.fixture
def stocked(merchant):
    product = ProductFactory(merchant=merchant, title="Game key & bonus <gift>")
    add_keys(product, 10)
    return product


def open_epay_payment(product, quantity: int = 2) -> Payment:
    placed = place(product, quantity=quantity)
    order_services.start_payment(
        order=placed.order, gateway_name="epay", base_url="http://testserver/"
    )
    return Payment.objects.filter(order=placed.order).latest("created_at")


@pytest.fixture
def payment(config, stocked):
    return open_epay_payment(stocked)  # 2 × 10.00 = 20.00 CNY


def trade_no_for(payment: Payment) -> str:
    return "2024" + payment.reference.replace("-", "")[-12:]


def paid_at_aggregator(stub: EpayStub, payment: Payment, **overrides: object) -> str:
    """The aggregator's own record: paid, with its trade number (what act=order answers)."""
    trade_no = str(overrides.pop("trade_no", trade_no_for(payment)))
    stub.trades[payment.reference] = {
        "trade_no": trade_no,
        "money": f"{payment.amount:.2f}",
        "status": 1,
        **overrides,
    }
    return trade_no


def notification(
    payment: Payment,
    key: str,
    *,
    reference: str | None = None,
    trade_no: str | None = None,
    money: str | None = None,
    pid: str = PID,
    status: str = "TRADE_SUCCESS",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """What Rainbow epay's creat_callback builds: money as PHP prints a float ("20", not
    "20.00"), signed with the merchant key, sign_type appended."""
    params = {
        "pid": pid,
        "trade_no": trade_no or trade_no_for(payment),
        "out_trade_no": reference or payment.reference,
        "type": "alipay",
        "name": "product",
        "money": money if money is not None else f"{payment.amount.normalize():f}",
        "trade_status": status,
        **(extra or {}),
    }
    params["sign"] = epay_sign(params, key)
    params["sign_type"] = "MD5"
    return params


def send_get(params: dict[str, str]):
    return Client().get(CALLBACK, params)


def send_post(params: dict[str, str]):
    return Client().post(CALLBACK, data=urlencode(params), content_type=FORM)


def snapshot() -> dict[str, object]:
    """Everything a callback could change, apart from the notification log."""
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "paid_at", "delivered_at")),
        "payments": sorted(Payment.objects.values_list("id", "status", "gateway_trade_id")),
        "events": PaymentEvent.objects.count(),
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_id")),
        "deliveries": Delivery.objects.count(),
    }


def assert_rejected(response, before: dict[str, object], code: str) -> None:
    assert response.status_code == 400
    assert response.content == b"fail"
    assert snapshot() == before
    log = PaymentNotification.objects.latest("id")
    assert (log.result, log.detail) == (PaymentNotification.Result.REJECTED, code)


def assert_delivered(payment: Payment, trade_no: str) -> None:
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.gateway_trade_id == trade_no
    assert Delivery.objects.filter(order=order).count() == order.quantity


# --- paying ------------------------------------------------------------------------------------
def test_pay_redirect_is_signed_with_the_merchant_key(payment, stub, key):
    action_url = f"{stub.base}submit.php?"
    placed = place(payment.order.product)
    action = order_services.start_payment(
        order=placed.order, gateway_name="epay", base_url="http://testserver/"
    )
    assert action.redirect_url.startswith(action_url)
    params = dict(parse_qsl(urlsplit(action.redirect_url).query, keep_blank_values=True))
    new_payment = Payment.objects.filter(order=placed.order).get()
    assert params["sign"] == epay_sign(params, key)
    assert params["sign_type"] == "MD5"
    assert params["pid"] == PID
    assert params["type"] == "alipay"  # the first of the default "alipay,wxpay"
    assert params["out_trade_no"] == new_payment.reference
    assert params["money"] == "10.00"
    assert params["notify_url"] == "http://testserver/pay/callback/epay/"
    assert params["return_url"] == f"http://testserver/o/{placed.token}/"
    # Characters some clones escape before verifying are not sent at all.
    assert not set(params["name"]) & set("&<>=\"'")
    assert "Game key" in params["name"]
    # The stub aggregator's cashier accepts the signature.
    assert httpx.get(action.redirect_url).status_code == 200


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"pay_types": " wxpay, qqpay"}, "wxpay"),
        ({"pay_types": "wxpay,qqpay", "default_type": "qqpay"}, "qqpay"),
        ({"pay_types": ""}, "alipay"),
    ],
)
def test_pay_type_follows_the_options(stub, key, stocked, options, expected):
    configure(stub, key, **options)
    placed = place(stocked)
    action = order_services.start_payment(
        order=placed.order, gateway_name="epay", base_url="http://testserver/"
    )
    params = dict(parse_qsl(urlsplit(action.redirect_url).query))
    assert params["type"] == expected
    assert params["sign"] == epay_sign(params, key)


# --- notifications -----------------------------------------------------------------------------
@pytest.mark.parametrize("send", [send_get, send_post], ids=["get-query", "post-form"])
def test_genuine_notification_is_confirmed_and_delivers(payment, stub, key, send):
    trade_no = paid_at_aggregator(stub, payment)

    response = send(notification(payment, key))

    assert (response.status_code, response.content) == (200, b"success")
    assert_delivered(payment, trade_no)
    # Confirmed through the query API, with our pid and key, for this order.
    (query,) = stub.queries
    assert query.query == {
        "act": "order",
        "pid": PID,
        "key": key,
        "out_trade_no": payment.reference,
    }
    event = PaymentEvent.objects.get()
    assert event.event_id == f"{trade_no}:TRADE_SUCCESS"
    assert event.amount == Decimal("20")  # as sent ("20"); equal to 20.00
    log = PaymentNotification.objects.get()
    assert log.result == PaymentNotification.Result.ACCEPTED


def test_replayed_eight_times_delivers_once(payment, stub, key, django_capture_on_commit_callbacks):
    trade_no = paid_at_aggregator(stub, payment)
    params = notification(payment, key)

    with django_capture_on_commit_callbacks(execute=True):
        replies = [send_get(params) for _ in range(8)]

    assert [(r.status_code, r.content) for r in replies] == [(200, b"success")] * 8
    assert_delivered(payment, trade_no)
    assert PaymentEvent.objects.count() == 1
    assert len(mail.outbox) == 1
    # Only the first delivery asked the aggregator; repeats of an applied event need not.
    assert len(stub.queries) == 1
    results = list(PaymentNotification.objects.order_by("id").values_list("result", flat=True))
    assert (
        results
        == [PaymentNotification.Result.ACCEPTED] + [PaymentNotification.Result.DUPLICATE] * 7
    )


def test_replay_after_the_trade_was_refunded_is_still_acknowledged(payment, stub, key):
    paid_at_aggregator(stub, payment)
    params = notification(payment, key)
    assert send_get(params).status_code == 200
    stub.trades[payment.reference]["status"] = 2  # refunded at the aggregator since
    before = snapshot()

    response = send_post(params)

    assert (response.status_code, response.content) == (200, b"success")
    assert snapshot() == before


def test_notification_with_extra_and_empty_fields_verifies(payment, stub, key):
    """Optional fields are signed too; empty (and whitespace-only) values are left out."""
    trade_no = paid_at_aggregator(stub, payment)
    params = notification(
        payment,
        key,
        money="20.00",
        extra={"param": "", "buyer": "  ", "api_trade_no": "2024010122001400000000001"},
    )
    assert send_post(params).content == b"success"
    assert_delivered(payment, trade_no)


def tamper(params: dict[str, str], **changes: str) -> dict[str, str]:
    return {**params, **changes}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(
            lambda p, k: tamper(notification(p, k), money="0.01"),
            "invalid_signature",
            id="tampered-money",
        ),
        pytest.param(
            lambda p, k: tamper(notification(p, k), out_trade_no="PAY-OTHER"),
            "invalid_signature",
            id="tampered-reference",
        ),
        pytest.param(
            lambda p, k: notification(p, secrets.token_hex(16)),
            "invalid_signature",
            id="wrong-key",
        ),
        pytest.param(
            lambda p, k: {k2: v for k2, v in notification(p, k).items() if k2 != "sign"},
            "invalid_signature",
            id="unsigned",
        ),
        pytest.param(
            lambda p, k: tamper(notification(p, k), sign_type="RSA"),
            "invalid_signature",
            id="rsa-sign-type",
        ),
        pytest.param(lambda p, k: notification(p, k, pid="1002"), "unknown_payment", id="pid"),
        pytest.param(
            lambda p, k: notification(p, k, status="WAIT_BUYER_PAY"), "malformed", id="status"
        ),
        pytest.param(lambda p, k: notification(p, k, money="2e1"), "malformed", id="money-exp"),
    ],
)
@pytest.mark.parametrize("send", [send_get, send_post], ids=["get", "post"])
def test_bad_notifications_are_rejected_and_change_nothing(payment, stub, key, make, code, send):
    paid_at_aggregator(stub, payment)
    before = snapshot()

    response = send(make(payment, key))

    assert_rejected(response, before, code)
    assert stub.queries == []  # refused before asking anybody


def test_amount_mismatch_is_rejected_and_flagged(payment, stub, key):
    # The aggregator really took 0.01 for our reference (a genuine but wrong payment).
    paid_at_aggregator(stub, payment, money="0.01")
    before = snapshot()

    response = send_get(notification(payment, key, money="0.01"))

    assert_rejected(response, before, "amount_mismatch")
    assert Order.objects.get(pk=payment.order_id).needs_attention


def test_amount_with_extra_digits_is_a_mismatch(payment, stub, key):
    paid_at_aggregator(stub, payment, money="20.001")
    before = snapshot()
    assert_rejected(send_get(notification(payment, key, money="20.001")), before, "amount_mismatch")


def test_unknown_order_reference_is_rejected(payment, stub, key):
    stub.trades["PAY-DOES-NOT-EXIST"] = {"trade_no": "2024999", "money": "20.00", "status": 1}
    before = snapshot()
    response = send_get(
        notification(payment, key, reference="PAY-DOES-NOT-EXIST", trade_no="2024999")
    )
    assert_rejected(response, before, "unknown_payment")


def test_empty_key_configured_rejects_everything(payment, stub, key):
    paid_at_aggregator(stub, payment)
    config = GatewayConfig.objects.get(gateway="epay")
    config.set_secrets({"key": ""})
    config.save()
    before = snapshot()

    # Signed with the empty key: exactly what a forger would do.
    response = send_get(notification(payment, ""))

    assert response.status_code in (400, 404)  # disabled (404) or refused (400)
    assert snapshot() == before
    # Even when called directly, with the gateway object built around that config.
    gateway = EpayGateway(config)
    params = notification(payment, "")
    with pytest.raises(InvalidSignature):
        gateway.verify_callback(
            CallbackRequest(method="GET", body=b"", headers={}, query=params, form={})
        )


# --- confirmation by query -------------------------------------------------------------------
@pytest.mark.parametrize(
    "trade",
    [
        pytest.param({"status": 0}, id="unpaid"),
        pytest.param({"money": "19.99"}, id="other-money"),
        pytest.param({"trade_no": "2024OTHER"}, id="other-trade"),
        pytest.param(None, id="not-found"),
    ],
)
def test_notification_the_query_does_not_confirm_is_rejected(payment, stub, key, trade):
    if trade is not None:
        paid_at_aggregator(stub, payment, **trade)
    before = snapshot()

    response = send_get(notification(payment, key))

    assert_rejected(response, before, "unconfirmed")
    assert len(stub.queries) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((500, b"oops"), id="http-500"),
        pytest.param((200, b"<html>system error</html>"), id="not-json"),
        pytest.param((200, b'{"code": -2, "msg": "KEY\\u6821\\u9a8c\\u5931\\u8d25"}'), id="key"),
        pytest.param(
            (200, b'{"code": 1, "out_trade_no": "PAY-OTHER", "status": 1}'), id="other-order"
        ),
    ],
)
def test_query_failures_reject_without_error(payment, stub, key, answer):
    paid_at_aggregator(stub, payment)
    stub.query_answer = answer
    before = snapshot()
    assert_rejected(send_get(notification(payment, key)), before, "unconfirmed")


def test_without_confirm_by_query_the_signature_alone_pays(payment, stub, key):
    configure(stub, key, confirm_by_query="false")
    trade_no = trade_no_for(payment)

    response = send_post(notification(payment, key))

    assert response.content == b"success"
    assert_delivered(payment, trade_no)
    assert stub.queries == []


def test_confirm_by_query_stays_on_for_unrecognised_values(stub, key):
    configure(stub, key, confirm_by_query="perhaps")
    gateway = build_gateway("epay")
    assert isinstance(gateway, EpayGateway) and gateway.confirm_by_query


@pytest.mark.parametrize("confirm", ["true", "false"])
def test_trade_reused_for_another_order_is_rejected(stub, key, stocked, confirm):
    configure(stub, key, confirm_by_query=confirm)
    first, second = open_epay_payment(stocked), open_epay_payment(stocked)
    trade_no = paid_at_aggregator(stub, first)
    assert send_get(notification(first, key)).content == b"success"
    # The same trade (same event id) now claimed for another order.
    paid_at_aggregator(stub, second, trade_no=trade_no)
    before = snapshot()

    response = send_get(notification(second, key, trade_no=trade_no))

    assert_rejected(response, before, "trade_bound_to_other_payment")
    assert Order.objects.get(pk=second.order_id).status == Order.Status.PENDING


def test_trade_paid_by_query_then_notified_delivers_once(payment, stub, key):
    trade_no = paid_at_aggregator(stub, payment)
    gateway = build_gateway("epay")
    assert gateway is not None
    verified = gateway.query_payment(payment=payment)
    assert verified is not None
    order_services.confirm_payment(gateway_name="epay", verified=verified)
    assert_delivered(payment, trade_no)
    before = snapshot()

    response = send_get(notification(payment, key))

    assert response.content == b"success"
    after = snapshot()
    assert (after["deliveries"], after["keys"]) == (before["deliveries"], before["keys"])


# --- query_payment -----------------------------------------------------------------------------
def test_query_payment_paid(payment, stub, key):
    # money as a JSON number: read as Decimal, never float.
    trade_no = paid_at_aggregator(stub, payment)
    answer = (
        f'{{"code": 1, "trade_no": "{trade_no}", "out_trade_no": "{payment.reference}", '
        f'"pid": "{PID}", "money": 20.00, "status": "1"}}'
    )
    stub.query_answer = (200, answer.encode())
    gateway = build_gateway("epay")
    assert gateway is not None

    verified = gateway.query_payment(payment=payment)

    assert verified is not None
    assert verified.event_id == f"query:{trade_no}"
    assert verified.kind == "paid"
    assert verified.payment_reference == payment.reference
    assert verified.amount == Decimal("20.00") and isinstance(verified.amount, Decimal)
    assert (verified.currency, verified.gateway_trade_id) == ("CNY", trade_no)
    assert stub.queries[0].query["key"] == key


@pytest.mark.parametrize(
    "trade", [{"status": 0}, {"status": 2}, None], ids=["open", "refunded", "none"]
)
def test_query_payment_not_paid_is_none(payment, stub, trade):
    if trade is not None:
        paid_at_aggregator(stub, payment, **trade)
    gateway = build_gateway("epay")
    assert gateway is not None
    assert gateway.query_payment(payment=payment) is None


def test_query_payment_with_a_rejected_key_raises(payment, stub, key):
    config = GatewayConfig.objects.get(gateway="epay")
    config.set_secrets({"key": "not-" + key})
    config.save()
    gateway = build_gateway("epay")
    assert gateway is not None
    with pytest.raises(Unconfirmed) as raised:
        gateway.query_payment(payment=payment)
    assert "not-" not in str(raised.value) and key not in str(raised.value)


def test_reconcile_pays_an_order_whose_notification_was_lost(payment, stub, key):
    from datetime import timedelta

    from django.utils import timezone

    trade_no = paid_at_aggregator(stub, payment)
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    confirmed = order_services.reconcile_pending_payments(now=timezone.now())

    assert confirmed == 1
    assert_delivered(payment, trade_no)


# --- refunds -----------------------------------------------------------------------------------
@pytest.fixture
def delivered(payment, stub, key):
    paid_at_aggregator(stub, payment)
    assert send_get(notification(payment, key)).content == b"success"
    payment.refresh_from_db()
    return payment


@pytest.mark.parametrize("code", [1, 0], ids=["code-1", "code-0"])
def test_refund_through_the_api(delivered, stub, key, code, django_capture_on_commit_callbacks):
    configure(stub, key, supports_refund_api="true")
    stub.refund_code = code

    with django_capture_on_commit_callbacks(execute=True):
        refund = order_services.request_refund(
            request_id="r-1", order_id=delivered.order_id, reason="bad key", source="staff"
        )

    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.gateway_refund_id == "RF20240101000001"
    (request,) = stub.refunds
    assert request.form == {
        "pid": PID,
        "key": key,
        "out_trade_no": delivered.reference,
        "trade_no": delivered.gateway_trade_id,
        "money": "20.00",
        "out_refund_no": request.form["out_refund_no"],
    }
    assert Order.objects.get(pk=delivered.order_id).status == Order.Status.REFUNDED


def test_refund_refused_by_the_aggregator_fails(delivered, stub, key):
    configure(stub, key, supports_refund_api="true")
    stub.refund_code = -1
    refund = order_services.request_refund(
        request_id="r-1", order_id=delivered.order_id, reason="x", source="staff"
    )
    assert refund.status == Refund.Status.FAILED
    assert Order.objects.get(pk=delivered.order_id).status == Order.Status.DELIVERED


def test_without_the_refund_api_refunds_are_manual(delivered, stub):
    gateway = build_gateway("epay")
    assert gateway is not None and gateway.supports_refund is False

    refund = order_services.request_refund(
        request_id="r-1", order_id=delivered.order_id, reason="x", source="staff"
    )

    assert refund.status == Refund.Status.MANUAL
    assert stub.refunds == []
    with pytest.raises(ManualRefundRequired):
        gateway.refund(payment=delivered, amount=Decimal("1.00"), reason="r-2")
    assert stub.refunds == []


def test_supports_refund_reads_the_option(stub, key):
    configure(stub, key, supports_refund_api="yes")
    gateway = build_gateway("epay")
    assert gateway is not None and gateway.supports_refund is True


# --- accepts -----------------------------------------------------------------------------------
def test_accepts_cny_within_limits_only(config):
    gateway = build_gateway("epay")
    assert gateway is not None
    assert gateway.accepts(amount=Decimal("20.00"), currency="CNY")
    assert not gateway.accepts(amount=Decimal("20.00"), currency="USD")
    config.currencies = ["CNY", "USD"]
    config.min_amount = Decimal("1.00")
    config.max_amount = Decimal("100.00")
    config.save()
    gateway = build_gateway("epay")
    assert gateway is not None
    assert not gateway.accepts(amount=Decimal("20.00"), currency="USD")  # money is yuan
    assert not gateway.accepts(amount=Decimal("0.99"), currency="CNY")
    assert not gateway.accepts(amount=Decimal("100.01"), currency="CNY")
    assert gateway.accepts(amount=Decimal("100.00"), currency="CNY")
    config.enabled = False
    config.save()
    gateway = build_gateway("epay")
    assert gateway is not None and not gateway.accepts(amount=Decimal("20"), currency="CNY")


def test_not_enabled_without_key_or_pid(stub, key):
    config = configure(stub, key)
    config.set_secrets({})
    config.save()
    gateway = build_gateway("epay")
    assert gateway is not None and not gateway.is_enabled()
    config = configure(stub, key, pid="")
    gateway = build_gateway("epay")
    assert gateway is not None and not gateway.is_enabled()
