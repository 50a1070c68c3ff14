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
    if connection.vendor != "postgresql":
        return list(
            free.filter(product_id=product_id).order_by("id").values_list("id", flat=True)[:count]
        )
    # A plan that does not depend on the statistics (issue 7; the EXPLAIN is checked by
    # tests/shop/test_claim_plan.py and by ``make bench``, docs/performance.md). In its plain
    # form, ``product_id = %s ORDER BY id``, stale statistics after a product sold most of its
    # keys made PostgreSQL walk the primary key over every sold row, and a bloated free-stock
    # index made it scan all of ``cardkey_batch_status`` and sort. Here ``product_id = ANY
    # (ARRAY[…])`` forms no equivalence class, so ``ORDER BY product_id, id`` stays a two-column
    # order that only ``cardkey_free_stock`` (product_id, id) delivers without a sort, and sorts
    # are switched off for this one statement (``SET LOCAL``, restored right after): every other
    # access path would have to sort its candidate rows.
    quote = connection.ops.quote_name
    column = f"{quote(CardKey._meta.db_table)}.{quote('product_id')}"
    # Names from the model, the id a bound parameter: nothing from input reaches the SQL.
    any_of = RawSQL(  # noqa: S611  # nosec B611
        f"{column} = ANY (ARRAY[%s]::bigint[])", (product_id,), output_field=BooleanField()
    )
    claim = free.filter(any_of).order_by("product_id", "id").values_list("id", flat=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)"
        )
        row = cursor.fetchone()
        previous = row[0] if row else "on"
        ids = list(claim[:count])
        cursor.execute("SELECT set_config('enable_sort', %s, true)", [previous])
    return ids


def key_ids_still_free(ids: Sequence[int], now: datetime) -> Q:
    return Q(id__in=list(ids)) & free_stock_q(now)
