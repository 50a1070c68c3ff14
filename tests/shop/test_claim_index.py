"""The stock claim stays fast when most keys are sold: PostgreSQL plans it on the partial index of
free keys instead of walking the primary key over every sold row."""

import os

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders import lock_objects
from shop.models import CardKey
from shop.selectors import stock_left
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def _sell_many(product, count: int) -> None:
    """``count`` sold keys, cheaply: a real order owns them, the rows are bulk-written."""
    add_keys(product, 1, prefix="SEED")
    order = place(product).order
    pay(open_payment(order))
    batch = product.import_batches.get()
    CardKey.objects.bulk_create(
        CardKey(
            merchant_id=product.merchant_id,
            product=product,
            batch=batch,
            status=CardKey.Status.SOLD,
            key_id="k1",
            nonce=os.urandom(12),
            ciphertext=os.urandom(40),
            fingerprint=f"sold-{product.pk}-{i}",
            order=order,
            sold_at=timezone.now(),
        )
        for i in range(count)
    )


def test_claim_query_uses_the_free_stock_partial_index():
    assert connection.vendor == "postgresql"
    product = ProductFactory()
    _sell_many(product, 5_000)
    add_keys(product, 20, prefix="FREE")
    other = ProductFactory(merchant=product.merchant)
    add_keys(other, 50, prefix="OTHER")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_cardkey")

    # The claim exactly as sent (a hand-built copy of it once drifted from the real one).
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            lock_objects.lock_free_key_ids(product_id=product.pk, count=5, now=timezone.now())
        plan = ""
        with connection.cursor() as cursor:  # replayed with its planner settings, claim explained
            for query in captured.captured_queries:
                if "SKIP LOCKED" in query["sql"]:
                    cursor.execute(f"EXPLAIN {query['sql']}")
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                else:
                    cursor.execute(query["sql"])
        transaction.set_rollback(True)

    assert "cardkey_free_stock" in plan, plan
    assert stock_left(product) == 20
