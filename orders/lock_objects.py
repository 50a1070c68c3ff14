"""Every row-locking query of the orders app. Locks are taken in one global order — payment,
then order, then card keys by id — so two transactions never wait on each other in a cycle."""

from collections.abc import Sequence
from datetime import datetime

from django.db.models import Q

from orders.models import Order, Payment
from shop.models import CardKey


def free_stock_q(now: datetime) -> Q:
    """Free stock: available, or reserved by an order whose reservation has lapsed. The explicit
    status filter keeps the predicate provably inside the ``cardkey_free_stock`` partial index."""
    return Q(status__in=[CardKey.Status.AVAILABLE, CardKey.Status.RESERVED]) & (
        Q(status=CardKey.Status.AVAILABLE)
        | Q(status=CardKey.Status.RESERVED, reserved_until__lt=now)
    )


def lock_payment(*, reference: str) -> Payment | None:
    return Payment.objects.select_for_update(of=("self",)).filter(reference=reference).first()


def lock_order(*, order_id: int) -> Order:
    return Order.objects.select_for_update(of=("self",)).get(pk=order_id)


def lock_keys_held_by_order(*, order_id: int) -> list[int]:
    """The keys this order still holds (reserved, even if the reservation lapsed and nobody took
    them). Waits for claimers that locked them; a claimer that took one changed its order."""
    return list(
        CardKey.objects.select_for_update(of=("self",))
        .filter(order_id=order_id, status=CardKey.Status.RESERVED)
        .order_by("id")
        .values_list("id", flat=True)
    )


def lock_free_key_ids(*, product_id: int, count: int, now: datetime) -> list[int]:
    """Up to ``count`` free keys of a product, locked, skipping rows other buyers hold right now.

    ``SKIP LOCKED`` turns a queue of buyers into parallel claims instead of a convoy; on SQLite
    (the demo) it is a no-op and the caller's conditional update re-checks freeness instead.
    """
    return list(
        CardKey.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(free_stock_q(now), product_id=product_id)
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )


def key_ids_still_free(ids: Sequence[int], now: datetime) -> Q:
    return Q(id__in=list(ids)) & free_stock_q(now)
