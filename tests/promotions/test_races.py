"""Many buyers, one coupon: real threads on real PostgreSQL transactions. The limit holds
exactly, and every order that got the discount has a live redemption (and vice versa)."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import close_old_connections, connection

from orders import services as order_services
from orders.models import Order
from promotions.exceptions import CouponRejected
from promotions.models import Coupon, CouponRedemption
from shop.models import Product
from tests.conftest import assert_real_postgres_transactions, place
from tests.factories import ProductFactory, add_keys
from tests.promotions.conftest import CouponFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)

    def runner(i: int) -> Any:
        try:
            close_old_connections()
            barrier.wait(timeout=30)
            return work(i)
        except Exception as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(runner, range(count)))


def assert_counts_consistent(coupon: Coupon, *, used: int) -> None:
    coupon.refresh_from_db()
    live = CouponRedemption.objects.filter(coupon=coupon, released_at__isnull=True)
    assert coupon.times_used == used
    assert live.count() == used
    assert Order.objects.filter(coupon=coupon).count() == used
    assert set(live.values_list("order_id", flat=True)) == set(
        Order.objects.filter(coupon=coupon).values_list("id", flat=True)
    )


@pytest.mark.parametrize("round_number", range(3))
def test_limit_of_5_shared_by_32_buyers_gives_exactly_5_discounts(round_number):
    assert_real_postgres_transactions()
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 40)  # every checkout in flight holds a key until it commits or rolls back
    coupon = CouponFactory(merchant=product.merchant, code="FIRST5", usage_limit=5)

    def buy(i: int) -> Order:
        item = Product.objects.select_related("merchant").get(pk=product.pk)
        return place(item, email=f"buyer{i}@example.com", coupon_code="FIRST5").order

    results = run_together(32, buy)

    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, CouponRejected)]
    others = [r for r in results if not isinstance(r, Order | CouponRejected)]
    assert others == []
    assert len(orders) == 5
    assert len(refused) == 27
    assert {r.reason for r in refused} == {"used_up"}
    assert all(order.discount == Decimal("1.00") for order in orders)
    assert_counts_consistent(coupon, used=5)
    # Refused checkouts wrote nothing: only the five orders hold keys.
    assert Order.objects.filter(product=product).count() == 5


def test_one_buyer_racing_themselves_gets_the_per_buyer_limit_once():
    assert_real_postgres_transactions()
    product = ProductFactory()
    add_keys(product, 20)
    coupon = CouponFactory(merchant=product.merchant, code="ONCE", per_buyer_limit=1)

    def buy(i: int) -> Order:
        item = Product.objects.select_related("merchant").get(pk=product.pk)
        email = "Same@Example.com" if i % 2 else "same@example.COM"
        return place(item, email=email, coupon_code="once").order

    results = run_together(12, buy)

    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, CouponRejected)]
    assert len(orders) == 1
    assert len(refused) == 11
    assert {r.reason for r in refused} == {"buyer_limit"}
    assert_counts_consistent(coupon, used=1)


def test_total_and_per_buyer_limits_hold_together_under_32_checkouts():
    """8 buyers try 4 times each (their email spelt differently), 2 uses each, 10 in all: the
    total fills exactly (8 × 2 > 10) and no buyer gets more than 2."""
    assert_real_postgres_transactions()
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 40)
    coupon = CouponFactory(merchant=product.merchant, code="TEN", usage_limit=10, per_buyer_limit=2)
    spellings = [
        "buyer{n}@example.com",
        "Buyer{n}@Example.com",
        " BUYER{n}@EXAMPLE.COM",
        "buyer{n}@example.com ",
    ]

    def buy(i: int) -> Order:
        item = Product.objects.select_related("merchant").get(pk=product.pk)
        email = spellings[i % 4].format(n=i // 4)
        return place(item, email=email, coupon_code="ten").order

    results = run_together(32, buy)

    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, CouponRejected)]
    assert [r for r in results if not isinstance(r, Order | CouponRejected)] == []
    assert len(orders) == 10
    assert {r.reason for r in refused} <= {"used_up", "buyer_limit"}
    per_buyer = Counter(order.email.strip().lower() for order in orders)
    assert max(per_buyer.values()) <= 2
    assert_counts_consistent(coupon, used=10)


def test_releases_racing_new_checkouts_keep_the_count_exact():
    """16 unpaid orders expire while 16 new buyers check out with the same coupon (limit 16):
    every use given back can be taken again, never twice, and the count matches the live
    redemptions at the end."""
    assert_real_postgres_transactions()
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 40)
    coupon = CouponFactory(merchant=product.merchant, code="SIXTEEN", usage_limit=16)
    first = [
        place(product, email=f"early{i}@example.com", coupon_code="SIXTEEN").order
        for i in range(16)
    ]
    coupon.refresh_from_db()
    assert coupon.times_used == 16
    later = max(order.expires_at for order in first) + timedelta(seconds=1)

    def work(i: int) -> Any:
        if i % 2:
            return order_services._expire_one(order_id=first[i // 2].pk, now=later)
        item = Product.objects.select_related("merchant").get(pk=product.pk)
        return place(item, email=f"late{i}@example.com", coupon_code="SIXTEEN").order

    results = run_together(32, work)

    assert [
        r for r in results if isinstance(r, Exception) and not isinstance(r, CouponRejected)
    ] == []
    assert sum(1 for r in results if r == 1) == 16  # every early order expired once
    new_orders = [r for r in results if isinstance(r, Order)]
    coupon.refresh_from_db()
    live = CouponRedemption.objects.filter(coupon=coupon, released_at__isnull=True)
    assert coupon.times_used == live.count() == len(new_orders) <= 16
    assert set(live.values_list("order_id", flat=True)) == {o.pk for o in new_orders}
