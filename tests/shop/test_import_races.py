"""Imports racing each other and batch deletes: real threads, real PostgreSQL transactions."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from shop import services
from shop.models import CardKey, ImportBatch
from tests.conftest import assert_real_postgres_transactions
from tests.factories import ProductFactory
from tests.orders.test_races import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_overlapping_imports_of_one_merchant_store_each_key_once():
    """Every import of a merchant takes the same advisory lock, so the second sees the first's
    keys once it commits: no unique-constraint error, no deadlock, exact counts."""
    assert_real_postgres_transactions()
    product = ProductFactory()
    other = ProductFactory(merchant=product.merchant)
    files = [
        [f"K-{i}" for i in range(0, 3000)],
        [f"K-{i}" for i in range(2999, -1, -1)] + [f"L-{i}" for i in range(500)],
        [f"K-{i}" for i in range(1500, 4000)],
        [f"L-{i}" for i in range(400, 600)],
    ]

    results = run_together(
        len(files),
        lambda i: services.import_keys(
            product=product if i % 2 == 0 else other,
            lines=files[i],
            source=ImportBatch.Source.COMMAND,
        ),
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.imported for r in results) == 4000 + 600
    assert sum(r.imported + r.duplicates for r in results) == sum(len(f) for f in files)
    assert CardKey.objects.filter(merchant=product.merchant).count() == 4600
    for result in results:
        assert CardKey.objects.filter(batch=result.batch).count() == result.imported


def _connect():
    """A connection of its own to the test database, outside Django's."""
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
    )


_KEY = (
    "INSERT INTO shop_cardkey (merchant_id, product_id, batch_id, status, key_id, nonce,"
    " ciphertext, fingerprint, created_at)"
    " VALUES (%s, %s, %s, 'void', 'k1', '\\x00', '\\x00', %s, now())"
)


def _batch_with_a_key():
    product = ProductFactory()
    batch = services.import_keys(
        product=product, lines=["FIRST"], source=ImportBatch.Source.COMMAND
    ).batch
    return product, batch


def test_the_database_refuses_keys_of_no_batch_and_batches_that_still_have_keys():
    """Migration 0006's triggers stand for the composite foreign key: inserted keys, updated
    references, deleted or re-pointed batches."""
    assert_real_postgres_transactions()
    product, batch = _batch_with_a_key()
    stranger, foreign = _batch_with_a_key()
    with _connect() as conn:
        for merchant, product_id, batch_id in (
            (stranger.merchant_id, product.pk, batch.pk),
            (product.merchant_id, stranger.pk, batch.pk),
            (product.merchant_id, product.pk, foreign.pk),
            (product.merchant_id, product.pk, 10**12),
        ):
            # Two rows in one statement, one of them bad: the statement is refused.
            with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
                good = (product.merchant_id, product.pk, batch.pk, "ok-1")
                bad = (merchant, product_id, batch_id, "bad-1")
                conn.execute(
                    _KEY + ", (%s, %s, %s, 'void', 'k1', '\\x00', '\\x00', %s, now())",
                    (*good, *bad),
                )
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("DELETE FROM shop_importbatch WHERE id = %s", (batch.pk,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(
                "UPDATE shop_importbatch SET product_id = %s, merchant_id = %s WHERE id = %s",
                (stranger.pk, stranger.merchant_id, batch.pk),
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute(
                "UPDATE shop_cardkey SET batch_id = %s WHERE batch_id = %s", (foreign.pk, batch.pk)
            )
        with conn.transaction():  # a batch without keys can go
            conn.execute("DELETE FROM shop_cardkey WHERE batch_id = %s", (batch.pk,))
            conn.execute("DELETE FROM shop_importbatch WHERE id = %s", (batch.pk,))
    assert CardKey.objects.filter(product=product).count() == 0
    assert CardKey.objects.filter(product=stranger).count() == 1


def _race(first_sql, first_args, second_sql, second_args):
    """``first`` runs and stays uncommitted; ``second`` starts on another connection (and must
    wait for ``first``'s locks); ``first`` commits; returns ``second``'s error, if any."""
    outcome: list[BaseException | None] = []
    started = threading.Event()
    with _connect() as first, _connect() as second:
        first.execute(first_sql, first_args)

        def run_second():
            try:
                with second.transaction():
                    started.set()
                    second.execute(second_sql, second_args)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run_second)
        thread.start()
        started.wait(5)
        time.sleep(0.5)
        assert thread.is_alive(), "the second statement did not wait for the first's locks"
        first.commit()
        thread.join(10)
    return outcome[0]


def test_a_batch_delete_waits_for_an_import_of_its_keys_and_then_is_refused():
    assert_real_postgres_transactions()
    product, batch = _batch_with_a_key()
    CardKey.objects.filter(batch=batch).delete()  # an empty batch, about to get keys

    error = _race(
        _KEY,
        (product.merchant_id, product.pk, batch.pk, "racing-1"),
        "DELETE FROM shop_importbatch WHERE id = %s",
        (batch.pk,),
    )

    assert isinstance(error, psycopg.errors.ForeignKeyViolation)
    assert CardKey.objects.filter(batch=batch).count() == 1


def test_an_import_waits_for_a_batch_delete_and_then_is_refused():
    assert_real_postgres_transactions()
    product, batch = _batch_with_a_key()
    CardKey.objects.filter(batch=batch).delete()

    error = _race(
        "DELETE FROM shop_importbatch WHERE id = %s",
        (batch.pk,),
        _KEY,
        (product.merchant_id, product.pk, batch.pk, "racing-1"),
    )

    assert isinstance(error, psycopg.errors.ForeignKeyViolation)
    assert not ImportBatch.objects.filter(pk=batch.pk).exists()
    assert not CardKey.objects.filter(product=product).exists()
