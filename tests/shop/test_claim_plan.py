"""The claim's plan on an aged stock table: the very SQL ``lock_free_key_ids`` sends is planned on
the ``cardkey_free_stock`` partial index, never as a walk of the primary key over sold rows.

``make bench`` measured why it matters (docs/performance.md, issue 7): when one product owns most
rows of the table, PostgreSQL may claim through the primary key and step over every key already
sold, and the claim falls from thousands of transactions a second to a few dozen. The table here
is aged the way sales age it: one product's keys sold by an UPDATE (dead index entries, stale
statistics until autovacuum comes by) and a handful of free keys left; the plan is checked at
that worst moment and again after VACUUM ANALYZE.

A transactional test: the rows are committed (as a real sale's are) so that VACUUM can run, and
the flush at the end empties the table, so its 50,000 rows leave no bloat behind that would change
the plans other tests see.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders import lock_objects
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db(transaction=True)

SOLD = 50_000
FREE = 20


def _claim_plan(product_id: int) -> str:
    """EXPLAIN of the claim exactly as sent, in the planner settings it is sent with: the claim's
    statements are captured, then replayed with the claim explained (and rolled back)."""
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            lock_objects.lock_free_key_ids(product_id=product_id, count=1, now=timezone.now())
        plan = ""
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                if "SKIP LOCKED" in query["sql"]:
                    cursor.execute(f"EXPLAIN (COSTS OFF) {query['sql']}")
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                else:
                    cursor.execute(query["sql"])
        transaction.set_rollback(True)
    assert plan, captured.captured_queries
    return plan


def _age(product) -> None:
    """``SOLD`` keys of ``product``, analysed while still available, then all sold at once to
    one real order: the planner's statistics still say they are free."""
    add_keys(product, 1, prefix="SEED")
    order = place(product).order
    pay(open_payment(order))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO shop_cardkey (merchant_id, product_id, batch_id, status, key_id, nonce,"
            " ciphertext, fingerprint, created_at)"
            " SELECT %s, %s, %s, 'available', 'k1', decode(md5(g::text), 'hex')::bytea,"
            " decode(md5(g::text) || md5(g::text), 'hex'), 'aged-' || g, now()"
            " FROM generate_series(1, %s) g",
            [product.merchant_id, product.pk, product.import_batches.get().pk, SOLD],
        )
        cursor.execute("ANALYZE shop_cardkey")
        cursor.execute(
            "UPDATE shop_cardkey SET status = 'sold', order_id = %s, sold_at = now()"
            " WHERE product_id = %s AND status = 'available'",
            [order.pk, product.pk],
        )


def test_claim_on_an_aged_table_uses_the_free_stock_partial_index():
    assert connection.vendor == "postgresql"
    product = ProductFactory()
    _age(product)
    add_keys(product, FREE, prefix="FREE")
    other = ProductFactory(merchant=product.merchant)
    add_keys(other, 50, prefix="OTHER")
    assert CardKey.objects.filter(product=product, status=CardKey.Status.SOLD).count() > SOLD

    # The worst moment: every sold key still in the statistics as available, nothing vacuumed.
    before = _claim_plan(product.pk)
    assert "Index Scan using cardkey_free_stock on shop_cardkey" in before, before

    # After autovacuum: dead entries gone, statistics say the product is sold out but for FREE.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) shop_cardkey")
    after = _claim_plan(product.pk)
    assert "Index Scan using cardkey_free_stock on shop_cardkey" in after, after
    assert "shop_cardkey_pkey" not in after, after

    # And the claim finds the free keys, in id order, not a sold one.
    with transaction.atomic():
        now = timezone.now()
        ids = lock_objects.lock_free_key_ids(product_id=product.pk, count=FREE + 5, now=now)
    assert len(ids) == FREE
    assert set(CardKey.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"available"}


def test_the_stock_table_has_its_own_autovacuum_settings():
    """Sales leave dead rows in the free-stock index; shop_cardkey is vacuumed and analysed
    after ~1% of it changed, not PostgreSQL's default 20% (shop migration 0002)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'shop_cardkey'")
        options = set(cursor.fetchone()[0] or [])
    assert "autovacuum_vacuum_scale_factor=0.01" in options, options
    assert "autovacuum_analyze_scale_factor=0.02" in options, options
