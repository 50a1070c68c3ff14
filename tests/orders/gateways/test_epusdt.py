"""USDT (TRC-20) through an epusdt-compatible gateway: the signed create call against a local stub
gateway, JSON notifications through the real callback URL, the optional signed query API, the
hosted pay page, and manual refunds.

The test signs and verifies the way epusdt's Go code does (JSON numbers decoded to float64 and
printed shortest, ``k=v`` pairs sorted), written here independently of the adapter, so a mistake
in the adapter cannot cancel itself out. The API token is generated per test."""

import hashlib
import json
import secrets
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from orders import services as order_services
from orders.exceptions import GatewayUnavailable, InvalidSignature
from orders.gateways.base import CallbackRequest
from orders.gateways.epusdt import EpusdtGateway, OnChainRefundUnsupported, md5_sign
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

CALLBACK = "/pay/callback/epusdt/"
CREATE_PATH = "/api/v1/order/create-transaction"
QUERY_PATH = "/api/v1/order/query"
ADDRESS = "TNEns8t9jbWENbStkQdVQtHMGpbsYsQjZK"
OTHER_ADDRESS = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT_FOR_20_CNY = 2.7778  # what the stub gateway asks for 20.00 CNY


# --- epusdt's rules, written independently of the adapter --------------------------------------
def go_render(value: object) -> str:
    """How epusdt's ``sign.MapToParams`` prints a decoded JSON value."""
    if isinstance(value, bool):
        raise TypeError("signature marshal error")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def epusdt_sign(params: dict[str, object], token: str) -> str:
    pairs = sorted(
        f"{k}={go_render(v)}"
        for k, v in params.items()
        if k != "signature" and v is not None and v != ""
    )
    return hashlib.md5(("&".join(pairs) + token).encode()).hexdigest()  # noqa: S324 - the protocol


def go_json(payload: dict[str, object]) -> bytes:
    """JSON as Go's encoder writes it: a float64 holding 20 is written ``20``."""
    return json.dumps(
        {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in payload.items()}
    ).encode()


@pytest.fixture
def token() -> str:
    return secrets.token_hex(16)


# --- the stub gateway ----------------------------------------------------------------------------
class EpusdtStub:
    """An epusdt server: create-transaction checks our signature the way epusdt does (over the
    decoded JSON); the query path answers from ``trades`` (keyed by order_id), signed."""

    def __init__(self, server: StubServer, token: str) -> None:
        self.server = server
        self.token = token
        self.creates: list[StubRequest] = []
        self.queries: list[StubRequest] = []
        self.create_answer: dict[str, object] | None = None  # overrides the data answered
        self.create_status_code = 200
        self.trades: dict[str, dict[str, object]] = {}
        self.query_signing_token: str | None = None  # sign answers with another token
        server.route("POST", CREATE_PATH, self.create)
        server.route("POST", QUERY_PATH, self.query)

    @property
    def base(self) -> str:
        return self.server.url

    def _json(self, status: int, body: object) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _check(self, request: StubRequest) -> dict[str, object] | None:
        params = json.loads(request.body)
        return params if params.get("signature") == epusdt_sign(params, self.token) else None

    def create(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        self.creates.append(request)
        params = self._check(request)
        if params is None:
            return self._json(401, {"status_code": 401, "message": "signature error"})
        if self.create_status_code != 200:
            return self._json(400, {"status_code": self.create_status_code, "message": "no"})
        trade_id = f"2024{len(self.creates):04d}{secrets.token_hex(4)}"
        data = {
            "trade_id": trade_id,
            "order_id": params["order_id"],
            "amount": params["amount"],
            "actual_amount": USDT_FOR_20_CNY,
            "token": ADDRESS,
            "expiration_time": int(time.time()) + 600,
            "payment_url": f"{self.base}/pay/checkout-counter/{trade_id}",
        }
        data.update(self.create_answer or {})
        return self._json(200, {"status_code": 200, "message": "success", "data": data})

    def query(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        self.queries.append(request)
        params = self._check(request)
        if params is None:
            return self._json(401, {"status_code": 401, "message": "signature error"})
        trade = self.trades.get(str(params["order_id"]))
        if trade is None:
            return self._json(400, {"status_code": 10008, "message": "order not found"})
        data = dict(trade)
        data["signature"] = epusdt_sign(data, self.query_signing_token or self.token)
        return (
            200,
            {"Content-Type": "application/json"},
            (b'{"status_code":200,"message":"success","data":' + go_json(data) + b"}"),
        )


@pytest.fixture
def stub(token):
    with StubServer() as server:
        yield EpusdtStub(server, token)


def configure(stub: EpusdtStub, token: str, **options: str) -> GatewayConfig:
    config, _created = GatewayConfig.objects.update_or_create(
        gateway="epusdt", defaults={"enabled": True, "options": {"api_base": stub.base, **options}}
    )
    config.set_secrets({"api_token": token})
    config.save()
    return config


@pytest.fixture
def config(stub, token):
    return configure(stub, token)


@pytest.fixture
def stocked(merchant):
    product = ProductFactory(merchant=merchant, title="Game key")
    add_keys(product, 10)
    return product


def epusdt() -> EpusdtGateway:
    """The adapter as the registry builds it, around its configuration."""
    gateway = build_gateway("epusdt")
    assert isinstance(gateway, EpusdtGateway)
    return gateway


def open_epusdt_payment(product, quantity: int = 2) -> Payment:
    placed = place(product, quantity=quantity)
    order_services.start_payment(
        order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
    )
    return Payment.objects.filter(order=placed.order).latest("created_at")


@pytest.fixture
def payment(config, stocked):
    return open_epusdt_payment(stocked)  # 2 × 10.00 = 20.00 CNY


def tx_id_for(payment: Payment) -> str:
    return hashlib.sha256(payment.reference.encode()).hexdigest()


def paid_trade(payment: Payment, **overrides: object) -> dict[str, object]:
    """What the gateway knows once the buyer's transfer confirmed: a notification's fields."""
    return {
        "trade_id": payment.gateway_data["trade_id"],
        "order_id": payment.reference,
        "amount": float(payment.amount),
        "actual_amount": float(payment.gateway_data["pay_amount"]),
        "token": ADDRESS,
        "block_transaction_id": tx_id_for(payment),
        "status": 2,
        **overrides,
    }


def notification(
    payment: Payment, api_token: str, /, *, after_signing: dict[str, object] | None = None, **fields
) -> bytes:
    """A notification as epusdt's callback queue sends it; ``after_signing`` changes fields once
    the signature is made (tampering)."""
    payload = paid_trade(payment, **fields)
    payload["signature"] = epusdt_sign(payload, api_token)
    payload.update(after_signing or {})
    return go_json(payload)


def send(body: bytes):
    return Client().post(CALLBACK, data=body, content_type="application/json")


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
    assert (response.status_code, response.content) == (400, b"fail")
    assert snapshot() == before
    log = PaymentNotification.objects.latest("id")
    assert (log.result, log.detail) == (PaymentNotification.Result.REJECTED, code)


def assert_delivered(payment: Payment) -> None:
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.gateway_trade_id == tx_id_for(payment)
    assert Delivery.objects.filter(order=order).count() == order.quantity


# --- signing -------------------------------------------------------------------------------------
def test_signature_matches_the_documented_example():
    """epusdt's wiki/API.md example; the amount signs as Go prints the number (42.00 → 42)."""
    params = {
        "order_id": "20220201030210321",
        "amount": Decimal("42.00"),
        "notify_url": "http://example.com/notify",
        "redirect_url": "http://example.com/redirect",
    }
    assert md5_sign(params, "epusdt_password_xasddawqe") == "1cd4b52df5587cfb1968b0c0c6e156cd"


# --- paying --------------------------------------------------------------------------------------
def test_create_call_is_signed_as_epusdt_verifies_it(payment, stub, token):
    (create,) = stub.creates
    sent = json.loads(create.body)
    # Two decimals on the wire, as a JSON number (never a float in our code)...
    assert b'"amount":20.00' in create.body
    assert sent["order_id"] == payment.reference
    assert sent["notify_url"] == "http://testserver/pay/callback/epusdt/"
    assert sent["redirect_url"].startswith("http://testserver/o/")
    # ...and signed over the decoded value, as the gateway re-signs it ("amount=20").
    assert sent["signature"] == epusdt_sign(sent, token)
    assert create.headers["Content-Type"] == "application/json"
    data = payment.gateway_data
    assert data["address"] == data["qr"] == ADDRESS
    assert data["pay_amount"] == "2.7778"
    assert data["pay_currency"] == "USDT"
    assert data["trade_id"].startswith("2024")
    assert data["expires_at"]


def test_buyer_is_sent_to_our_pay_page(config, stocked, stub):
    placed = place(stocked)
    action = order_services.start_payment(
        order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
    )
    payment = Payment.objects.get(order=placed.order)
    assert action.redirect_url == f"http://testserver/o/{placed.token}/pay/{payment.reference}/"


def test_gateway_cashier_page_on_request(stub, token, stocked):
    configure(stub, token, use_gateway_page="true")
    placed = place(stocked)
    action = order_services.start_payment(
        order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
    )
    trade_id = Payment.objects.get(order=placed.order).gateway_data["trade_id"]
    assert action.redirect_url == f"{stub.base}/pay/checkout-counter/{trade_id}"


def test_bepusdt_shaped_answer_is_read(config, stocked, stub):
    """BEpusdt answers amounts as strings and expiration_time as seconds left."""
    stub.create_answer = {"amount": "20.00", "actual_amount": "10", "expiration_time": 600}
    placed = place(stocked, quantity=2)
    order_services.start_payment(
        order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
    )
    data = Payment.objects.get(order=placed.order).gateway_data
    assert data["pay_amount"] == "10"
    # The earlier of the gateway's 10 minutes and the order's own deadline.
    assert data["expires_at"] <= timezone.localtime(placed.order.expires_at).isoformat(
        sep=" ", timespec="minutes"
    )


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"order_id": "P-SOMEONE-ELSE"}, id="other-order"),
        pytest.param({"amount": 19.99}, id="other-amount"),
        pytest.param({"token": ""}, id="no-address"),
        pytest.param({"actual_amount": "1e3"}, id="exponent"),
    ],
)
def test_unusable_create_answers_open_nothing(config, stocked, stub, answer):
    stub.create_answer = answer
    placed = place(stocked)
    with pytest.raises(GatewayUnavailable):
        order_services.start_payment(
            order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
        )
    assert Payment.objects.get(order=placed.order).gateway_data == {}


def test_create_refused_by_the_gateway(config, stocked, stub):
    stub.create_status_code = 10003  # no wallet address available
    placed = place(stocked)
    with pytest.raises(GatewayUnavailable):
        order_services.start_payment(
            order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
        )


def test_create_with_the_wrong_token_is_refused(stub, stocked):
    configure(stub, "not-the-gateways-token")
    placed = place(stocked)
    with pytest.raises(GatewayUnavailable):
        order_services.start_payment(
            order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
        )


# --- notifications -------------------------------------------------------------------------------
def test_genuine_notification_delivers(payment, token):
    response = send(notification(payment, token))

    assert (response.status_code, response.content) == (200, b"ok")
    assert_delivered(payment)
    event = PaymentEvent.objects.get()
    assert event.event_id == f"{payment.gateway_data['trade_id']}:2"
    assert (event.amount, event.currency) == (Decimal("20.00"), "CNY")
    assert PaymentNotification.objects.get().result == PaymentNotification.Result.ACCEPTED


def test_replayed_eight_times_delivers_once(payment, token, django_capture_on_commit_callbacks):
    body = notification(payment, token)

    with django_capture_on_commit_callbacks(execute=True):
        replies = [send(body) for _ in range(8)]

    assert [(r.status_code, r.content) for r in replies] == [(200, b"ok")] * 8
    assert_delivered(payment)
    assert PaymentEvent.objects.count() == 1
    assert len(mail.outbox) == 1
    results = list(PaymentNotification.objects.order_by("id").values_list("result", flat=True))
    assert (
        results
        == [PaymentNotification.Result.ACCEPTED] + [PaymentNotification.Result.DUPLICATE] * 7
    )


def test_bepusdt_notification_with_string_amount_verifies(payment, token):
    # BEpusdt sends actual_amount as a JSON string and signs it as such.
    assert send(notification(payment, token, actual_amount="2.7778")).content == b"ok"
    assert_delivered(payment)


def test_signer_that_signs_the_number_as_written_verifies(payment, token):
    """A signer that signs "amount=20.00" and writes 20.00 (not Go's rendering) is accepted too:
    the text as sent is also what it signed."""
    fields = paid_trade(payment)
    content = "&".join(
        f"{k}={'20.00' if k == 'amount' else go_render(v)}" for k, v in sorted(fields.items())
    )
    signature = hashlib.md5((content + token).encode()).hexdigest()  # noqa: S324
    body = go_json({**fields, "signature": signature}).replace(
        b'"amount": 20,', b'"amount": 20.00,'
    )
    assert b'"amount": 20.00,' in body
    assert send(body).content == b"ok"
    assert_delivered(payment)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(
            lambda p, t: notification(p, t, after_signing={"amount": 0.01}),
            "invalid_signature",
            id="tampered-amount",
        ),
        pytest.param(
            lambda p, t: notification(p, t, after_signing={"actual_amount": 100}),
            "invalid_signature",
            id="tampered-usdt",
        ),
        pytest.param(
            lambda p, t: notification(p, t, after_signing={"order_id": "P0000OTHER"}),
            "invalid_signature",
            id="tampered-reference",
        ),
        pytest.param(
            lambda p, t: notification(p, t, after_signing={"block_transaction_id": "ab" * 32}),
            "invalid_signature",
            id="tampered-tx",
        ),
        pytest.param(
            lambda p, t: notification(p, secrets.token_hex(16)),
            "invalid_signature",
            id="wrong-token",
        ),
        pytest.param(
            lambda p, t: notification(p, t, after_signing={"signature": None}),
            "invalid_signature",
            id="unsigned",
        ),
        pytest.param(
            lambda p, t: notification(p, t, amount=0.01), "amount_mismatch", id="wrong-amount"
        ),
        pytest.param(
            lambda p, t: notification(p, t, amount=20.001),
            "amount_mismatch",
            id="amount-extra-digits",
        ),
        pytest.param(
            lambda p, t: notification(p, t, token=OTHER_ADDRESS),
            "address_mismatch",
            id="other-address",
        ),
        pytest.param(
            lambda p, t: notification(p, t, order_id="P0000000000000000000000000"),
            "unknown_payment",
            id="unknown-order",
        ),
        pytest.param(lambda p, t: notification(p, t, status=7), "malformed", id="status"),
        pytest.param(
            lambda p, t: notification(p, t, block_transaction_id=""), "malformed", id="no-tx"
        ),
        pytest.param(lambda p, t: b"not json", "malformed", id="not-json"),
        pytest.param(
            lambda p, t: notification(p, t)[:-1] + b', "amount": 0.01}',
            "malformed",
            id="duplicate-key",
        ),
    ],
)
def test_bad_notifications_are_rejected_and_change_nothing(payment, token, make, code):
    before = snapshot()

    response = send(make(payment, token))

    assert_rejected(response, before, code)


def test_amount_mismatch_flags_the_order(payment, token):
    before = snapshot()
    assert_rejected(send(notification(payment, token, amount=0.01)), before, "amount_mismatch")
    assert Order.objects.get(pk=payment.order_id).needs_attention


def test_underpaid_beyond_tolerance_is_rejected(payment, token):
    before = snapshot()
    short = float(Decimal(payment.gateway_data["pay_amount"]) - Decimal("0.0101"))
    assert_rejected(
        send(notification(payment, token, actual_amount=short)), before, "amount_mismatch"
    )


def test_underpaid_within_tolerance_delivers(payment, token):
    short = float(Decimal(payment.gateway_data["pay_amount"]) - Decimal("0.01"))
    assert send(notification(payment, token, actual_amount=short)).content == b"ok"
    assert_delivered(payment)


def test_tolerance_is_configurable(stub, token, stocked):
    configure(stub, token, amount_tolerance_usdt="0")
    payment = open_epusdt_payment(stocked)
    before = snapshot()
    short = float(Decimal(payment.gateway_data["pay_amount"]) - Decimal("0.0001"))
    assert_rejected(
        send(notification(payment, token, actual_amount=short)), before, "amount_mismatch"
    )
    # Overpaying is fine.
    assert send(notification(payment, token, actual_amount=3)).content == b"ok"
    assert_delivered(payment)


def test_same_transfer_cannot_pay_a_second_order(payment, token, stocked):
    assert send(notification(payment, token)).content == b"ok"
    second = open_epusdt_payment(stocked)
    before = snapshot()

    # Genuinely signed (a gateway bug, or a leaked token), naming the first order's transfer.
    response = send(notification(second, token, block_transaction_id=tx_id_for(payment)))

    assert_rejected(response, before, "trade_bound_to_other_payment")
    assert Order.objects.get(pk=second.order_id).status == Order.Status.PENDING


@pytest.mark.parametrize("status", [1, 3], ids=["waiting", "expired"])
def test_waiting_and_expired_notifications_change_nothing(payment, token, status):
    before = snapshot()

    response = send(notification(payment, token, status=status, block_transaction_id=""))

    assert (response.status_code, response.content) == (200, b"ok")
    assert snapshot() == before
    assert PaymentNotification.objects.get().result == PaymentNotification.Result.IGNORED


def test_empty_token_configured_rejects_everything(payment, stub):
    config = GatewayConfig.objects.get(gateway="epusdt")
    config.set_secrets({"api_token": ""})
    config.save()
    before = snapshot()

    # Signed with the empty token: exactly what a forger would do.
    response = send(notification(payment, ""))

    assert response.status_code in (400, 404)  # disabled (404) or refused (400)
    assert snapshot() == before
    # Even when called directly, with the gateway object built around that config.
    with pytest.raises(InvalidSignature):
        EpusdtGateway(config).verify_callback(
            CallbackRequest(method="POST", body=notification(payment, ""), headers={})
        )


def test_unsigned_get_on_callback_url_changes_nothing(payment):
    before = snapshot()
    assert Client().get(CALLBACK).status_code == 400
    assert snapshot() == before


# --- confirmation through the query API ----------------------------------------------------------
@pytest.fixture
def confirming(stub, token):
    return configure(stub, token, confirm_by_query="true", query_path=QUERY_PATH)


def test_confirmed_by_query_delivers(confirming, stocked, stub, token):
    payment = open_epusdt_payment(stocked)
    stub.trades[payment.reference] = paid_trade(payment)

    assert send(notification(payment, token)).content == b"ok"

    assert_delivered(payment)
    (query,) = stub.queries
    asked = json.loads(query.body)
    assert asked["order_id"] == payment.reference
    assert asked["trade_id"] == payment.gateway_data["trade_id"]
    assert asked["signature"] == epusdt_sign(asked, token)
    # A repeat of the applied event is a duplicate; nobody is asked again.
    assert send(notification(payment, token)).content == b"ok"
    assert len(stub.queries) == 1


@pytest.mark.parametrize(
    "remote",
    [
        pytest.param(None, id="unknown-to-gateway"),
        pytest.param({"status": 1, "block_transaction_id": ""}, id="waiting"),
        pytest.param({"status": 3, "block_transaction_id": ""}, id="expired"),
        pytest.param({"block_transaction_id": "cd" * 32}, id="other-transfer"),
        pytest.param({"amount": 19.99}, id="other-amount"),
    ],
)
def test_not_confirmed_by_query_is_rejected(confirming, stocked, stub, token, remote):
    payment = open_epusdt_payment(stocked)
    if remote is not None:
        stub.trades[payment.reference] = paid_trade(payment, **remote)
    before = snapshot()

    response = send(notification(payment, token))

    assert_rejected(response, before, "unconfirmed")
    assert len(stub.queries) == 1


def test_query_answer_signed_with_another_token_confirms_nothing(confirming, stocked, stub, token):
    payment = open_epusdt_payment(stocked)
    stub.trades[payment.reference] = paid_trade(payment)
    stub.query_signing_token = secrets.token_hex(16)
    before = snapshot()
    assert_rejected(send(notification(payment, token)), before, "unconfirmed")


def test_confirm_by_query_without_a_query_path_fails_closed(stub, token, stocked):
    configure(stub, token, confirm_by_query="true")
    payment = open_epusdt_payment(stocked)
    before = snapshot()
    assert_rejected(send(notification(payment, token)), before, "unconfirmed")
    assert stub.queries == []


# --- query_payment -------------------------------------------------------------------------------
def test_query_payment_without_query_path_is_none(payment, stub):
    assert epusdt().query_payment(payment=payment) is None
    assert stub.queries == []


def test_query_payment_paid_open_and_unknown(stub, token, stocked):
    configure(stub, token, query_path=QUERY_PATH)
    payment = open_epusdt_payment(stocked)
    gateway = epusdt()

    assert gateway.query_payment(payment=payment) is None  # 10008: not at the gateway
    stub.trades[payment.reference] = paid_trade(payment, status=1, block_transaction_id="")
    assert gateway.query_payment(payment=payment) is None  # waiting
    stub.trades[payment.reference] = paid_trade(payment)
    event = gateway.query_payment(payment=payment)

    assert event is not None
    assert (event.kind, event.payment_reference) == ("paid", payment.reference)
    assert (event.amount, event.currency) == (Decimal("20"), "CNY")
    assert event.gateway_trade_id == tx_id_for(payment)
    assert event.event_id == f"{payment.gateway_data['trade_id']}:2"
    for request in stub.queries:
        asked = json.loads(request.body)
        assert asked["signature"] == epusdt_sign(asked, token)


def test_query_payment_refuses_an_answer_signed_with_another_token(stub, token, stocked):
    configure(stub, token, query_path=QUERY_PATH)
    payment = open_epusdt_payment(stocked)
    stub.trades[payment.reference] = paid_trade(payment)
    stub.query_signing_token = secrets.token_hex(16)
    with pytest.raises(InvalidSignature):
        epusdt().query_payment(payment=payment)


def test_reconcile_job_delivers_a_payment_the_query_reports_paid(stub, token, stocked):
    configure(stub, token, query_path=QUERY_PATH)
    payment = open_epusdt_payment(stocked)
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    stub.trades[payment.reference] = paid_trade(payment)

    assert order_services.reconcile_pending_payments() == 1

    assert_delivered(payment)
    # The callback arriving afterwards is the same event: acknowledged, nothing new.
    before = snapshot()
    assert send(notification(payment, token)).content == b"ok"
    assert snapshot() == before


# --- refunds -------------------------------------------------------------------------------------
def test_refunds_are_recorded_for_staff_to_pay_out(payment, token, stub):
    assert send(notification(payment, token)).content == b"ok"
    requests_before = len(stub.server.requests)

    refund = order_services.request_refund(
        request_id="staff:1", order_id=payment.order_id, reason="buyer asked", source="staff"
    )

    assert (refund.status, refund.amount) == (Refund.Status.MANUAL, Decimal("20.00"))
    assert len(stub.server.requests) == requests_before  # the gateway was never asked
    gateway = epusdt()
    assert gateway.supports_refund is False
    with pytest.raises(OnChainRefundUnsupported):
        gateway.refund(payment=payment, amount=Decimal("20.00"), reason="staff:1")


# --- availability --------------------------------------------------------------------------------
def test_accepts_cny_within_limits_only(stub, token):
    config = configure(stub, token)
    config.min_amount, config.max_amount = Decimal("5.00"), Decimal("500.00")
    config.currencies = ["CNY", "USD"]  # staff mistake: the gateway still takes yuan only
    config.save()
    gateway = epusdt()
    assert gateway.accepts(amount=Decimal("20.00"), currency="CNY")
    assert not gateway.accepts(amount=Decimal("20.00"), currency="USD")
    assert not gateway.accepts(amount=Decimal("4.99"), currency="CNY")
    assert not gateway.accepts(amount=Decimal("500.01"), currency="CNY")
    config.enabled = False
    config.save()
    assert not epusdt().accepts(amount=Decimal("20.00"), currency="CNY")


def test_not_configured_without_url_or_token(stub):
    GatewayConfig.objects.create(gateway="epusdt", enabled=True, options={"api_base": stub.base})
    assert not epusdt().is_enabled()


# --- the pay page --------------------------------------------------------------------------------
def test_hosted_pay_page_shows_address_amount_and_qr(config, stocked, stub):
    placed = place(stocked, quantity=2)
    order_services.start_payment(
        order=placed.order, gateway_name="epusdt", base_url="http://testserver/"
    )
    payment = Payment.objects.get(order=placed.order)

    response = Client().get(f"/o/{placed.token}/pay/{payment.reference}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert ADDRESS in page
    assert "2.7778" in page and "USDT" in page
    assert "TRC-20" in page
    assert "<svg" in page  # the QR code, rendered on the server
    assert 'data-copy-target="pay-address"' in page
    assert "Send exactly 2.7778 USDT" in page
