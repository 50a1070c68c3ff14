"""Payment callbacks: only a genuine, fresh, matching notification changes anything, once."""

import time
from decimal import Decimal

import pytest
from django.test import Client

from orders.models import Delivery, Order, Payment, PaymentEvent, PaymentNotification
from shop.models import CardKey
from tests.conftest import open_payment, place, post_callback, sandbox_notification
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(stocked_product):
    return open_payment(place(stocked_product, quantity=2).order)


def snapshot() -> dict[str, object]:
    """Everything a callback could change, apart from the notification log."""
    return {
        "orders": sorted(Order.objects.values_list("id", "status", "paid_at", "delivered_at")),
        "payments": sorted(Payment.objects.values_list("id", "status", "gateway_trade_id")),
        "events": PaymentEvent.objects.count(),
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_id")),
        "deliveries": Delivery.objects.count(),
    }


def test_genuine_callback_pays_and_delivers(payment):
    response = pay(payment)

    assert response.status_code == 200
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    assert order.paid_at is not None and order.delivered_at is not None
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    sold = CardKey.objects.filter(order=order, status=CardKey.Status.SOLD)
    assert sold.count() == 2
    assert set(Delivery.objects.filter(order=order).values_list("card_key_id", flat=True)) == set(
        sold.values_list("id", flat=True)
    )
    log = PaymentNotification.objects.get()
    assert log.result == PaymentNotification.Result.ACCEPTED


def test_replayed_callback_delivers_nothing_new(payment):
    body, headers = sandbox_notification(payment)
    assert post_callback(Client(), body, headers).status_code == 200
    before = snapshot()

    replay = post_callback(Client(), body, headers)

    assert 400 <= replay.status_code < 500
    assert snapshot() == before
    assert PaymentNotification.objects.filter(result=PaymentNotification.Result.DUPLICATE).exists()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"secret": "not-the-sandbox-secret"}, "invalid_signature", id="forged"),
        pytest.param({"timestamp": int(time.time()) - 3600}, "stale_timestamp", id="stale"),
        pytest.param({"timestamp": int(time.time()) + 3600}, "stale_timestamp", id="future"),
        pytest.param({"amount": "0.01"}, "amount_mismatch", id="wrong-amount"),
        pytest.param({"amount": "20.001"}, "amount_mismatch", id="amount-extra-digits"),
        pytest.param({"currency": "USD"}, "currency_mismatch", id="wrong-currency"),
        pytest.param({"reference": "PAY-DOES-NOT-EXIST"}, "unknown_payment", id="unknown-order"),
    ],
)
def test_bad_callbacks_are_rejected_and_change_nothing(payment, overrides, code):
    before = snapshot()

    response = pay(payment, **overrides)

    assert response.status_code == 400
    assert response.content.decode() == code
    assert snapshot() == before
    log = PaymentNotification.objects.get()
    assert log.result == PaymentNotification.Result.REJECTED
    assert log.detail == code


def test_body_tampered_after_signing_is_rejected(payment):
    body, _headers = sandbox_notification(payment, amount="0.01")
    # Re-use a genuine signature over a different body: the HMAC no longer matches.
    _genuine_body, genuine_headers = sandbox_notification(payment)
    before = snapshot()

    response = post_callback(Client(), body, genuine_headers)

    assert response.status_code == 400
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"status": "paid"}', b'{"status": "weird", "amount": "1"}'],
)
def test_malformed_but_signed_bodies_are_rejected(payment, body):
    from orders.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway

    headers = {SIGNATURE_HEADER: SandboxGateway().sign(body, timestamp=int(time.time()))}
    before = snapshot()

    response = post_callback(Client(), body, headers)

    assert response.status_code == 400
    assert snapshot() == before


def test_missing_signature_header_is_rejected(payment):
    body, _headers = sandbox_notification(payment)
    before = snapshot()
    assert post_callback(Client(), body, {}).status_code == 400
    assert snapshot() == before


def test_callback_for_another_gateway_name_is_rejected(payment):
    body, headers = sandbox_notification(payment)
    response = Client().post(
        "/pay/callback/alipay/", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code in (400, 404)
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING


def test_unsigned_get_on_callback_url_changes_nothing(payment):
    before = snapshot()
    assert Client().get("/pay/callback/sandbox/").status_code == 400
    assert snapshot() == before


def test_failed_then_paid_events(payment):
    assert pay(payment, status="failed").status_code == 200
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.PENDING

    # The buyer retries at the gateway and succeeds: a new event id, the order is paid.
    assert pay(payment).status_code == 200
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_second_event_id_for_same_paid_trade_delivers_nothing_new(payment):
    assert pay(payment).status_code == 200
    before = snapshot()

    response = pay(payment, event_id="another-event-for-the-same-trade")

    assert response.status_code == 200
    after = snapshot()
    assert after["deliveries"] == before["deliveries"]
    assert after["keys"] == before["keys"]
    assert PaymentEvent.objects.filter(outcome=PaymentEvent.Outcome.ALREADY_PAID).count() == 1


def test_second_payment_for_a_delivered_order_is_refunded_automatically(
    stocked_product, django_capture_on_commit_callbacks
):
    from orders.models import Refund

    order = place(stocked_product).order
    first, second = open_payment(order), open_payment(order)
    assert pay(first).status_code == 200
    keys_before = sorted(CardKey.objects.values_list("id", "status", "order_id"))

    with django_capture_on_commit_callbacks(execute=True):
        assert pay(second).status_code == 200

    assert sorted(CardKey.objects.values_list("id", "status", "order_id")) == keys_before
    assert Delivery.objects.filter(order=order).count() == 1
    second.refresh_from_db()
    assert second.status == Payment.Status.SUCCEEDED
    assert second.events.get().outcome == PaymentEvent.Outcome.DUPLICATE_PAYMENT
    refund = Refund.objects.get(payment=second)
    assert (refund.status, refund.amount) == (Refund.Status.SUCCEEDED, second.amount)
    # The order itself stays delivered: it was paid (once) by the first payment.
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED


def test_amounts_compare_as_decimals_not_strings(merchant):
    product = ProductFactory(merchant=merchant, price=Decimal("9.90"))
    add_keys(product, 1)
    payment = open_payment(place(product).order)
    assert pay(payment, amount="9.9").status_code == 200
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_callbacks_work_while_redis_is_down(payment, settings):
    """Nothing on the callback path fails closed when the cache is unreachable."""
    body, headers = sandbox_notification(payment)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    from django.core.cache import cache

    with pytest.raises(Exception):  # noqa: B017 - proves the cache really is down
        cache.get("anything")

    assert post_callback(Client(), body, headers).status_code == 200
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED


def test_an_event_id_replayed_for_another_payment_is_rejected(stocked_product, payment):
    assert pay(payment).status_code == 200
    other = open_payment(place(stocked_product).order)
    before = snapshot()

    # Genuinely signed, matching amount and currency, but the event id is the first payment's.
    response = pay(other, event_id=PaymentEvent.objects.get().event_id)

    assert response.status_code == 400
    assert response.content.decode() == "trade_bound_to_other_payment"
    assert snapshot() == before
    assert Order.objects.get(pk=other.order_id).status == Order.Status.PENDING


def test_a_stored_event_replayed_with_another_amount_is_still_a_duplicate(payment):
    """The stored event answers first: a replay is a duplicate whatever its amount says, and
    nothing is flagged or written."""
    assert pay(payment).status_code == 200
    before = snapshot()

    response = pay(payment, amount="0.01")

    assert 400 <= response.status_code < 500
    assert snapshot() == before
    assert PaymentEvent.objects.get().outcome == PaymentEvent.Outcome.DELIVERED
    assert Order.objects.get(pk=payment.order_id).needs_attention == ""
    assert PaymentNotification.objects.filter(result=PaymentNotification.Result.DUPLICATE).exists()


def test_the_sale_journal_is_balanced_and_posted_once(payment):
    from django.db.models import Sum

    from ledger import services as ledger_services
    from ledger.models import Entry, Journal

    assert pay(payment).status_code == 200
    order = Order.objects.select_related("merchant").get(pk=payment.order_id)
    journal = Journal.objects.get(kind=Journal.Kind.SALE, reference=f"order:{order.pk}")
    assert journal.order_id == order.pk and journal.merchant_id == order.merchant_id
    entries = Entry.objects.filter(journal=journal)
    assert entries.count() == 3
    assert entries.aggregate(total=Sum("amount"))["total"] == 0
    assert entries.filter(amount__gt=0).get().amount == payment.amount

    again = ledger_services.record_sale(
        order_id=order.pk, merchant=order.merchant, amount=payment.amount, currency=payment.currency
    )

    assert again.pk == journal.pk
    assert Entry.objects.filter(journal=journal).count() == 3
    assert Journal.objects.filter(reference=f"order:{order.pk}").count() == 1


# Queries of a paid callback once the ledger accounts exist (issue 7, ``python -m bench.profile``):
# gateway config, payment lock, event insert (ON CONFLICT), payment update, order lock, order
# paid with its audit row (one statement), resale check, the three sale accounts in one query,
# journal (ON CONFLICT) + entries, risk rules + blacklist + decision, the order's keys locked +
# sold + delivered in one statement, order delivered with its audit row (one statement), event
# outcome, notification log (in the same transaction); plus the test transaction's
# SAVEPOINT/RELEASE around the service's own transaction. It was 31 before issue 7, then 21.
CALLBACK_QUERIES = 19


def test_paid_callback_query_count(stocked_product, payment, django_assert_max_num_queries):
    warm = open_payment(place(stocked_product).order)
    assert pay(warm).status_code == 200  # creates the ledger accounts (first sale only)

    with django_assert_max_num_queries(CALLBACK_QUERIES):
        response = pay(payment)

    assert response.status_code == 200
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order_id=payment.order_id).count() == 2
