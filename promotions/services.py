"""Writes of the promotions app: redeeming a coupon for an order, releasing and reinstating it.

These run inside the caller's transaction (``orders.services.place_order``, ``cancel_order``,
``_expire_one``, ``confirm_payment``), which owns it; the coupon row is locked last, after the
order and its card keys, in the global lock order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from orders.models import Order
from promotions import lock_objects, selectors
from promotions.exceptions import CouponRejected
from promotions.models import Coupon, CouponRedemption
from shop.models import Product


def redeem_coupon(
    *,
    coupon_id: int,
    order: Order,
    product: Product,
    subtotal: Decimal,
    email: str,
    expected_discount: Decimal,
    now: datetime,
) -> CouponRedemption:
    """Count one use of a coupon for a new order, inside the caller's transaction.

    Locks the coupon row (``SELECT … FOR UPDATE``), then repeats every check of the quote on the
    locked row: total and per-buyer limits cannot be overrun by buyers checking out at the same
    time, because they queue on that lock and each sees the previous one's count. Raises
    ``CouponRejected`` (which rolls the caller's order back) when the coupon no longer applies or
    now gives another discount than the buyer was quoted (``changed``)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("redeem_coupon must run inside the order's transaction")
    coupon = lock_objects.lock_coupon(coupon_id=coupon_id)
    if coupon is None:
        raise CouponRejected("invalid", _("This coupon code is not valid."))
    buyer = selectors.buyer_key(email)
    discount = selectors.coupon_discount(
        coupon=coupon, product=product, subtotal=subtotal, buyer=buyer, now=now
    )
    if discount != expected_discount:
        raise CouponRejected(
            "changed", _("This coupon code has just changed. Please check the price and retry.")
        )
    redemption = CouponRedemption(coupon=coupon, order=order, buyer_key=buyer, discount=discount)
    redemption.full_clean(exclude=["order"])
    redemption.save()
    Coupon.objects.filter(pk=coupon.pk).update(times_used=F("times_used") + 1)
    return redemption


def release_redemption(*, order: Order, now: datetime) -> bool:
    """The order will not be paid (expired, cancelled): give its coupon use back. Runs in the
    caller's transaction with the order locked; idempotent (a conditional update on the
    redemption decides, so a second release changes nothing). Returns whether it released."""
    if order.coupon_id is None:
        return False
    released = CouponRedemption.objects.filter(order=order, released_at__isnull=True).update(
        released_at=now
    )
    if released:
        Coupon.objects.filter(pk=order.coupon_id, times_used__gt=0).update(
            times_used=F("times_used") - 1
        )
    return bool(released)


def reinstate_redemption(*, order: Order) -> bool:
    """A late payment arrived for an expired or cancelled order that had a coupon: the buyer
    paid the discounted price, so the use counts again, even if the limit filled up meanwhile
    (the money is in; refusing the coupon now would mean charging more after the fact).
    Idempotent; returns whether it reinstated."""
    if order.coupon_id is None:
        return False
    reinstated = CouponRedemption.objects.filter(order=order, released_at__isnull=False).update(
        released_at=None
    )
    if reinstated:
        Coupon.objects.filter(pk=order.coupon_id).update(times_used=F("times_used") + 1)
    return bool(reinstated)
