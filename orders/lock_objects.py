"""Every row-locking query of the orders app. Locks are taken in one global order — payment,
then order, then card keys by id — so two transactions never wait on each other in a cycle."""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from orders.models import Delivery, Order, Payment
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


def sell_keys_and_deliver(*, order_id: int, key_ids: Sequence[int], now: datetime) -> int:
    """Mark keys this order holds (locked by ``lock_keys_held_by_order``) sold and write one
    delivery per key sold, in one statement (``UPDATE … RETURNING`` feeding the ``INSERT``);
    returns how many were sold. Only keys still reserved to the order change."""
    if not key_ids:
        return 0
    if connection.vendor != "postgresql":
        sold = CardKey.objects.filter(
            id__in=list(key_ids), order_id=order_id, status=CardKey.Status.RESERVED
        ).update(status=CardKey.Status.SOLD, sold_at=now, reserved_until=None)
        Delivery.objects.bulk_create(
            [Delivery(order_id=order_id, card_key_id=key_id) for key_id in key_ids]
        )
        return sold
    quote = connection.ops.quote_name
    keys = quote(CardKey._meta.db_table)
    deliveries = quote(Delivery._meta.db_table)
    # Table and column names from the models; every value a bound parameter.
    sql = (
        f"WITH sold AS (UPDATE {keys} SET status = %s, sold_at = %s, reserved_until = NULL"  # noqa: S608  # nosec B608
        f" WHERE id = ANY(%s::bigint[]) AND order_id = %s AND status = %s RETURNING id)"
        f" INSERT INTO {deliveries}"
        " (order_id, card_key_id, shared, key_id, nonce, ciphertext, delivered_by_id, created_at)"
        " SELECT %s, sold.id, false, '', NULL, NULL, NULL, %s FROM sold ORDER BY sold.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                CardKey.Status.SOLD,
                now,
                list(key_ids),
                order_id,
                CardKey.Status.RESERVED,
                order_id,
                now,
            ],
        )
        return int(cursor.rowcount)


def sell_held_keys_and_deliver(*, order_id: int, quantity: int, now: datetime) -> int:
    """The common case of a paid order's delivery in one statement: lock the keys the order
    holds (as ``lock_keys_held_by_order``: by id, waiting for claimers), and if they cover
    ``quantity``, mark the first ``quantity`` of them sold and write their deliveries. Returns
    how many were sold: 0 means the order holds too few (nothing written; the caller tops them
    up and uses ``sell_keys_and_deliver``), or this is not PostgreSQL."""
    if connection.vendor != "postgresql" or quantity <= 0:
        return 0
    quote = connection.ops.quote_name
    keys = quote(CardKey._meta.db_table)
    deliveries = quote(Delivery._meta.db_table)
    # Table and column names from the models; every value a bound parameter.
    sql = (
        f"WITH held AS (SELECT id FROM {keys} WHERE order_id = %s AND status = %s"  # noqa: S608  # nosec B608
        " ORDER BY id FOR UPDATE),"
        " pick AS (SELECT id FROM held ORDER BY id LIMIT %s),"
        f" sold AS (UPDATE {keys} SET status = %s, sold_at = %s, reserved_until = NULL"
        " WHERE id IN (SELECT id FROM pick) AND order_id = %s AND status = %s"
        " AND (SELECT count(*) FROM held) >= %s RETURNING id)"
        f" INSERT INTO {deliveries}"
        " (order_id, card_key_id, shared, key_id, nonce, ciphertext, delivered_by_id, created_at)"
        " SELECT %s, sold.id, false, '', NULL, NULL, NULL, %s FROM sold ORDER BY sold.id"
    )
    reserved = CardKey.Status.RESERVED
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                order_id,
                reserved,
                quantity,
                CardKey.Status.SOLD,
                now,
                order_id,
                reserved,
                quantity,
                order_id,
                now,
            ],
        )
        return int(cursor.rowcount)


def key_ids_still_free(ids: Sequence[int], now: datetime) -> Q:
    return Q(id__in=list(ids)) & free_stock_q(now)
