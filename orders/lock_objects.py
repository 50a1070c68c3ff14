"""Every row-locking query of the orders app. Locks are taken in one global order — payment,
then order, then card keys by id — so two transactions never wait on each other in a cycle."""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

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
    """The order, locked; its product and merchant come in the same query (not locked: ``of``),
    which saves a paid callback two round trips (``python -m bench.profile``)."""
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("product", "merchant")
        .get(pk=order_id)
    )


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
    free = CardKey.objects.select_for_update(skip_locked=True, of=("self",)).filter(
        free_stock_q(now)
    )
    if connection.vendor == "postgresql":
        # A plan that does not depend on the statistics: ``product_id = ANY(ARRAY[…])`` forms no
        # equivalence class, so ``ORDER BY product_id, id`` stays a two-column order that only
        # the ``cardkey_free_stock`` index (product_id, id) delivers; walking the primary key (or
        # any other index) would need a sort of every candidate row. With ``product_id = %s``
        # and ``ORDER BY id``, stale statistics after a product sold most of its keys made
        # PostgreSQL walk the primary key over every sold row (issue 7; the EXPLAIN is checked
        # by tests/shop/test_claim_plan.py and by ``make bench``, docs/performance.md).
        scoped = free.filter(
            RawSQL(
                f"{connection.ops.quote_name(CardKey._meta.db_table)}"
                f".{connection.ops.quote_name('product_id')} = ANY (ARRAY[%s]::bigint[])",
                (product_id,),
                output_field=BooleanField(),
            )
        ).order_by("product_id", "id")
    else:
        scoped = free.filter(product_id=product_id).order_by("id")
    return list(scoped.values_list("id", flat=True)[:count])


def key_ids_still_free(ids: Sequence[int], now: datetime) -> Q:
    return Q(id__in=list(ids)) & free_stock_q(now)
