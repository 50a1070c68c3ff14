"""Imports racing each other: real threads, real PostgreSQL transactions."""

import pytest

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
