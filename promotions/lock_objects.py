"""Every row-locking query of the promotions app. The coupon row is always the last lock a
transaction takes (after payment, order and card keys), so it never closes a cycle."""

from promotions.models import Coupon


def lock_coupon(*, coupon_id: int) -> Coupon | None:
    return Coupon.objects.select_for_update(of=("self",)).filter(pk=coupon_id).first()
