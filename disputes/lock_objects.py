"""Every row-locking query of the disputes app. The global lock order is payment → order →
dispute → card keys (by id): a dispute service that needs the order locks it first, through
``orders.lock_objects``."""

from disputes.models import Dispute
from shop.models import CardKey


def lock_dispute(*, dispute_id: int) -> Dispute:
    return (
        Dispute.objects.select_for_update(of=("self",))
        .select_related("order", "order__merchant", "order__product")
        .get(pk=dispute_id)
    )


def lock_sold_key(*, key_id: int, order_id: int) -> CardKey | None:
    """The key an order bought, locked; None if it is no longer sold to that order."""
    return (
        CardKey.objects.select_for_update(of=("self",))
        .filter(pk=key_id, order_id=order_id, status=CardKey.Status.SOLD)
        .first()
    )
