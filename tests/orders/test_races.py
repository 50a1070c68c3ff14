"""Many buyers, one stock: real threads, real PostgreSQL transactions, no wrapping test transaction.

Each race asserts it runs on PostgreSQL in autocommit first, so it can never pass vacuously."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone

from orders.exceptions import OutOfStock
from orders.models import Delivery, Order, Payment, PaymentEvent, PaymentNotification
from shop import selectors as shop_selectors
from shop.models import CardKey, Product
from tests.conftest import assert_real_postgres_transactions, open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; each thread closes its
    own connection. Exceptions are returned, not raised, so the caller can count them."""
    barrier = threading.Barrier(count)

    def runner(i: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return work(i)
        except Exception as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(runner, range(count)))


def buy_and_pay(product_id: int) -> Order:
    """One buyer: reserve, open a payment, pay through the real callback URL."""
    close_old_connections()
    product = Product.objects.select_related("merchant").get(pk=product_id)
    placed = place(product, quantity=1)
    response = pay(open_payment(placed.order), client=Client())
    assert response.status_code == 200, response.content
    return placed.order


def assert_stock_consistent(product, *, sold: int, delivered_orders: int) -> None:
    keys = CardKey.objects.filter(product=product)
    by_status = Counter(keys.values_list("status", flat=True))
    assert by_status[CardKey.Status.SOLD] == sold
    deliveries = Delivery.objects.filter(order__product=product)
    delivered_key_ids = list(deliveries.values_list("card_key_id", flat=True))
    assert len(delivered_key_ids) == len(set(delivered_key_ids)) == sold, "a key went out twice"
    # Every sold key is linked to the order it was delivered to.
    for key in keys.filter(status=CardKey.Status.SOLD):
        assert deliveries.get(card_key=key).order_id == key.order_id
    # No order is delivered in part: each delivered order has exactly its quantity.
    for order in Order.objects.filter(product=product):
        got = deliveries.filter(order=order).count()
        if order.status == Order.Status.DELIVERED:
            assert got == order.quantity
        else:
            assert got == 0, f"order {order.pk} is {order.status} with {got} keys"
    delivered = Order.objects.filter(product=product, status=Order.Status.DELIVERED)
    assert delivered.count() == delivered_orders


@pytest.mark.parametrize("round_number", range(4))
def test_64_buyers_race_for_the_last_40_keys(round_number):
    assert_real_postgres_transactions()
    product = ProductFactory(max_quantity=200)
    # "The last 40": most of the product's stock is already sold (to one big earlier order).
    add_keys(product, 200, prefix=f"OLD{round_number}")
    assert pay(open_payment(place(product, quantity=200).order)).status_code == 200
    add_keys(product, 40, prefix=f"LAST{round_number}")

    results = run_together(64, lambda _i: buy_and_pay(product.pk))

    orders = [r for r in results if isinstance(r, Order)]
    errors = [r for r in results if not isinstance(r, Order)]
    assert len(orders) == 40
    assert len(errors) == 24
    assert all(isinstance(e, OutOfStock) for e in errors), errors
    assert_stock_consistent(product, sold=240, delivered_orders=41)
    assert Order.objects.filter(product=product).count() == 41, "a refused buyer left an order"
    assert shop_selectors.stock_left(product) == 0
    assert CardKey.objects.filter(product=product, status=CardKey.Status.AVAILABLE).count() == 0


def test_orders_of_three_race_on_25_keys_each_gets_three_or_none():
    assert_real_postgres_transactions()
    product = ProductFactory(max_quantity=5)
    add_keys(product, 25)

    def buy_three(_i: int) -> Order:
        close_old_connections()
        placed = place(product, quantity=3)
        assert pay(open_payment(placed.order), client=Client()).status_code == 200
        return placed.order

    results = run_together(24, buy_three)

    orders = [r for r in results if isinstance(r, Order)]
    errors = [r for r in results if not isinstance(r, Order)]
    # Nothing but "out of stock" may fail: a deadlock or serialization error would show up here.
    assert all(isinstance(e, OutOfStock) for e in errors), errors
    assert len(orders) == 8
    assert_stock_consistent(product, sold=24, delivered_orders=8)
    for order in orders:
        assert Delivery.objects.filter(order=order).count() == 3
    assert shop_selectors.stock_left(product) == 1
    assert CardKey.objects.get(product=product, status=CardKey.Status.AVAILABLE).order_id is None


def test_late_payments_and_new_buyers_race_for_lapsed_reservations():
    """Buyers whose reservations lapsed pay late while new buyers claim those same keys: every
    paid order ends delivered or unfulfilled (never in part), and no key is sold twice."""
    assert_real_postgres_transactions()
    product = ProductFactory(max_quantity=5)
    add_keys(product, 30)
    long_ago = timezone.now() - timedelta(hours=1)
    late = [place(product, quantity=2, now=long_ago).order for _ in range(10)]  # 20 keys, lapsed
    late_payments = [open_payment_ignoring_expiry(order) for order in late]
    assert shop_selectors.stock_left(product) == 30

    def work(i: int) -> Any:
        close_old_connections()
        if i < 10:
            assert pay(late_payments[i], client=Client()).status_code == 200
            return "late"
        return buy_and_pay(product.pk)

    results = run_together(30, work)

    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, OutOfStock) for e in errors), errors
    new_orders = [r for r in results if isinstance(r, Order)]
    for order in late:
        order.refresh_from_db()
        # A late payment stock cannot cover is refunded automatically (after commit).
        assert order.status in (Order.Status.DELIVERED, Order.Status.REFUNDED)
        if order.status == Order.Status.REFUNDED:
            assert not CardKey.objects.filter(order=order).exists()
    delivered = Order.objects.filter(product=product, status=Order.Status.DELIVERED)
    sold_keys = sum(o.quantity for o in delivered)
    assert sold_keys <= 30
    assert_stock_consistent(product, sold=sold_keys, delivered_orders=delivered.count())
    free = CardKey.objects.filter(product=product, order__isnull=True).count()
    held_total = CardKey.objects.filter(product=product, status=CardKey.Status.RESERVED).count()
    assert sold_keys + held_total + free == 30
    assert len(new_orders) + len(errors) == 20


def open_payment_ignoring_expiry(order: Order):
    """Open a payment as if the buyer had started paying before the order lapsed."""
    real_expiry = order.expires_at
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    order.refresh_from_db()
    payment = open_payment(order)
    Order.objects.filter(pk=order.pk).update(expires_at=real_expiry)
    CardKey.objects.filter(order=order).update(reserved_until=real_expiry)
    return payment


def test_32_identical_paid_callbacks_at_once_deliver_once():
    assert_real_postgres_transactions()
    product = ProductFactory(max_quantity=5)
    add_keys(product, 10)
    order = place(product, quantity=3).order
    payment = open_payment(order)
    from tests.conftest import post_callback, sandbox_notification

    body, headers = sandbox_notification(payment)

    def post(_i: int) -> int:
        return post_callback(Client(), body, headers).status_code

    statuses = run_together(32, post)

    assert sorted(statuses, key=str).count(200) == 1, statuses
    assert all(s in (200, 409) for s in statuses), statuses
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 3
    assert PaymentEvent.objects.filter(payment=payment).count() == 1
    assert PaymentNotification.objects.count() == 32
    assert CardKey.objects.filter(product=product, status=CardKey.Status.SOLD).count() == 3


def test_two_reconcile_jobs_and_a_late_callback_deliver_once():
    from orders import services
    from tests.conftest import post_callback, sandbox_notification

    assert_real_postgres_transactions()
    product = ProductFactory(max_quantity=5)
    add_keys(product, 10)
    orders = [place(product, quantity=2).order for _ in range(4)]
    payments = [open_payment(order) for order in orders]
    notifications = [sandbox_notification(payment) for payment in payments]  # paid at gateway
    Payment.objects.filter(pk__in=[p.pk for p in payments]).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )

    def work(i: int) -> Any:
        close_old_connections()
        if i < 2:
            return services.reconcile_pending_payments()
        body, headers = notifications[i - 2]
        return post_callback(Client(), body, headers).status_code

    for _round in range(2):
        results = run_together(6, work)
        assert not [r for r in results if isinstance(r, Exception)], results

    for order in orders:
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert Delivery.objects.filter(order=order).count() == 2
    assert_stock_consistent(product, sold=8, delivered_orders=4)
    # Exactly one applied "paid" event per payment; the rest were recognised as repeats.
    for payment in payments:
        applied = PaymentEvent.objects.filter(
            payment=payment, outcome=PaymentEvent.Outcome.DELIVERED
        )
        assert applied.count() == 1
