"""A coupon use is given back when its unpaid order expires or is cancelled, and taken again if a
late payment arrives anyway."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders import services as order_services
from orders.models import Order
from promotions.models import CouponRedemption
from promotions.selectors import quote_order
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.promotions.conftest import CouponFactory
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def limited(stocked_product):
    return CouponFactory(
        merchant=stocked_product.merchant, code="ONE", usage_limit=1, per_buyer_limit=1
    )


def test_expiry_releases_the_redemption_so_the_code_works_again(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order
    limited.refresh_from_db()
    assert limited.times_used == 1

    expired = order_services.expire_pending_orders(now=order.expires_at + timedelta(seconds=1))

    assert expired == 1
    order.refresh_from_db()
    limited.refresh_from_db()
    redemption = CouponRedemption.objects.get(order=order)
    assert order.status == Order.Status.EXPIRED
    assert limited.times_used == 0
    assert redemption.released_at is not None
    # Same buyer, same code: both the total and the per-buyer use came back.
    again = place(stocked_product, coupon_code="ONE").order
    assert again.discount == Decimal("1.00")


def test_expiry_run_twice_releases_once(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order
    later = order.expires_at + timedelta(seconds=1)
    order_services.expire_pending_orders(now=later)

    assert order_services.expire_pending_orders(now=later) == 0

    limited.refresh_from_db()
    assert limited.times_used == 0


def test_cancel_releases_the_redemption(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order

    order_services.cancel_order(order_id=order.pk, source="buyer")

    limited.refresh_from_db()
    assert limited.times_used == 0
    assert CouponRedemption.objects.get(order=order).released_at is not None
    assert CouponRedemption.objects.filter(released_at__isnull=True).count() == 0


def test_paid_order_keeps_its_redemption(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order
    assert pay(open_payment(order)).status_code == 200

    order_services.expire_pending_orders(now=timezone.now() + timedelta(days=1))

    limited.refresh_from_db()
    assert limited.times_used == 1
    assert CouponRedemption.objects.get(order=order).released_at is None


def test_late_payment_after_expiry_counts_the_use_again(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order
    payment = open_payment(order)
    order_services.expire_pending_orders(now=order.expires_at + timedelta(seconds=1))
    limited.refresh_from_db()
    assert limited.times_used == 0

    assert pay(payment).status_code == 200

    order.refresh_from_db()
    limited.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert order.amount == Decimal("9.00")
    assert limited.times_used == 1
    assert CouponRedemption.objects.get(order=order).released_at is None


def test_late_payment_after_cancel_counts_the_use_again(stocked_product, limited):
    order = place(stocked_product, coupon_code="ONE").order
    payment = open_payment(order)
    order_services.cancel_order(order_id=order.pk, source="buyer")
    limited.refresh_from_db()
    assert limited.times_used == 0

    assert pay(payment).status_code == 200
    # The gateway sends its callback again: the use is still counted once.
    assert pay(payment).status_code < 500

    order.refresh_from_db()
    limited.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert (order.discount, order.amount) == (Decimal("1.00"), Decimal("9.00"))
    assert limited.times_used == 1
    assert CouponRedemption.objects.get(order=order).released_at is None


def test_late_payment_counts_even_when_the_limit_filled_meanwhile(stocked_product, limited):
    first = place(stocked_product, coupon_code="ONE").order
    payment = open_payment(first)
    order_services.expire_pending_orders(now=first.expires_at + timedelta(seconds=1))
    # The freed use goes to someone else, who pays in time.
    second = place(stocked_product, email="second@example.com", coupon_code="ONE").order
    assert pay(open_payment(second)).status_code == 200

    assert pay(payment).status_code == 200

    limited.refresh_from_db()
    # Both paid the discounted price: both uses count (documented overrun by late payments).
    assert limited.times_used == 2
    assert CouponRedemption.objects.filter(released_at__isnull=True).count() == 2
    first.refresh_from_db()
    assert first.status == Order.Status.DELIVERED


def test_late_payment_refunded_for_lack_of_stock_does_not_count_the_use(merchant, limited):
    from tests.factories import ProductFactory, add_keys

    product = ProductFactory(merchant=merchant, price=Decimal("10.00"))
    add_keys(product, 1)
    coupon = CouponFactory(merchant=merchant, code="SOLO", usage_limit=1)
    order = place(product, coupon_code="SOLO").order
    payment = open_payment(order)
    order_services.expire_pending_orders(now=order.expires_at + timedelta(seconds=1))
    place(product, email="other@example.com")  # takes the only key

    assert pay(payment).status_code == 200

    order.refresh_from_db()
    coupon.refresh_from_db()
    assert order.status in (Order.Status.UNFULFILLED, Order.Status.REFUNDED)
    assert coupon.times_used == 0
    assert CouponRedemption.objects.get(order=order).released_at is not None


def test_cancel_of_an_order_without_a_coupon_touches_no_coupon(stocked_product, limited):
    order = place(stocked_product).order

    order_services.cancel_order(order_id=order.pk, source="buyer")

    limited.refresh_from_db()
    assert limited.times_used == 0
    assert CouponRedemption.objects.count() == 0


def test_late_payment_refunded_before_the_expiry_job_ran_gives_the_use_back(merchant):
    """Past its deadline but not yet expired by the job, the order's reserved key is free for
    others; a payment arriving then is refunded for lack of stock, and its coupon use (never
    released by an expiry) must come back too."""
    from tests.factories import ProductFactory, add_keys

    product = ProductFactory(merchant=merchant, price=Decimal("10.00"))
    add_keys(product, 1)
    coupon = CouponFactory(merchant=merchant, code="SOLO", usage_limit=1)
    order = place(product, coupon_code="SOLO").order
    payment = open_payment(order)
    # Its deadline passes (the expiry job has not run): the lapsed reservation is free stock
    # again, and another buyer takes it.
    lapsed = timezone.now() - timedelta(seconds=1)
    Order.objects.filter(pk=order.pk).update(expires_at=lapsed)
    CardKey.objects.filter(order=order).update(reserved_until=lapsed)
    place(product, email="other@example.com")
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING

    assert pay(payment).status_code == 200

    order.refresh_from_db()
    coupon.refresh_from_db()
    assert order.status in (Order.Status.UNFULFILLED, Order.Status.REFUNDED)
    assert coupon.times_used == 0
    assert CouponRedemption.objects.get(order=order).released_at is not None
    # And the code works again for someone else.
    quote = quote_order(
        product=product, quantity=1, coupon_code="solo", email="third@example.com", now=lapsed
    )
    assert quote.discount == Decimal("1.00")
