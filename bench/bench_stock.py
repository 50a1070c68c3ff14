"""Benchmarks for the stock path, each measured against a floor in the same run.

Run with ``make bench`` (PostgreSQL and Redis as for ``make test``). Nothing here asserts a time;
the printed table is the evidence:

- import: 100,000 keys through ``import_keys`` (encrypt, fingerprint, dedupe, batched insert)
  against a floor of bulk-inserting 100,000 rows of random bytes of the same shape;
- claim: reserving one key of a product whose 100,000 other keys are sold, against a floor of
  the bare ``SELECT … FOR UPDATE SKIP LOCKED`` on the partial index, and against the same query
  with the partial index dropped (what PostgreSQL would do without it);
- pay → key: a signed callback through the real URL, then the order page showing the key,
  against a floor of a bare Django view served by the same test client.
"""

import os
import statistics
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from orders.selectors import order_page_path
from shop import services as shop_services
from shop.models import CardKey, ImportBatch
from tests.conftest import open_payment, place
from tests.factories import ProductFactory
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db

RESULTS: list[tuple[str, float, str, float]] = []


def _time(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _report(name: str, ours: float, floor_name: str, floor: float) -> None:
    RESULTS.append((name, ours, floor_name, floor))
    print(
        f"\n{name:<38} {ours * 1000:10.2f} ms   floor {floor_name:<34} {floor * 1000:10.2f} ms"
        f"   ×{ours / floor if floor else float('inf'):.1f}"
    )


def _sold_filler(product, order, count: int) -> None:
    CardKey.objects.bulk_create(
        (
            CardKey(
                merchant_id=product.merchant_id,
                product=product,
                status=CardKey.Status.SOLD,
                key_id="k1",
                nonce=os.urandom(12),
                ciphertext=os.urandom(48),
                fingerprint=f"filler-{product.pk}-{i}",
                order=order,
                sold_at=timezone.now(),
            )
            for i in range(count)
        ),
        batch_size=5000,
    )


def test_import_100k_keys():
    product = ProductFactory()
    lines = [f"BENCH-{i:07d}-{os.urandom(6).hex()}" for i in range(100_000)]

    ours = _time(
        lambda: shop_services.import_keys(
            product=product, lines=lines, source=ImportBatch.Source.COMMAND
        )
    )
    assert CardKey.objects.filter(product=product).count() == 100_000

    floor_product = ProductFactory(merchant=product.merchant)
    batch = ImportBatch.objects.create(
        merchant=product.merchant, product=floor_product, source=ImportBatch.Source.COMMAND
    )

    def raw_rows() -> None:
        CardKey.objects.bulk_create(
            (
                CardKey(
                    merchant_id=product.merchant_id,
                    product=floor_product,
                    batch=batch,
                    key_id="k1",
                    nonce=os.urandom(12),
                    ciphertext=os.urandom(48),
                    fingerprint=f"floor-{i}",
                )
                for i in range(100_000)
            ),
            batch_size=2000,
        )

    floor = _time(raw_rows)
    _report("import 100,000 keys", ours, "bulk insert of 100,000 raw rows", floor)


def test_claim_when_most_keys_are_sold():
    product = ProductFactory(max_quantity=1)
    shop_services.import_keys(product=product, lines=["SEED"], source=ImportBatch.Source.COMMAND)
    seed_order = place(product).order
    pay(open_payment(seed_order))
    _sold_filler(product, seed_order, 100_000)
    shop_services.import_keys(
        product=product,
        lines=[f"FREE-{i}" for i in range(200)],
        source=ImportBatch.Source.COMMAND,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_cardkey")

    def ours() -> None:
        place(product)  # each run takes one of the 200 free keys

    raw_sql = (
        "SELECT id FROM shop_cardkey WHERE product_id = %s AND status IN ('available', 'reserved')"
        " AND (status = 'available' OR reserved_until < now()) ORDER BY id LIMIT 1"
        " FOR UPDATE SKIP LOCKED"
    )

    def floor() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(raw_sql, [product.pk])
            cursor.fetchone()

    ours_time = _time(ours, repeat=50)
    floor_time = _time(floor, repeat=50)
    _report("reserve 1 key (100k sold)", ours_time, "raw SKIP LOCKED claim", floor_time)

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX cardkey_free_stock")
            cursor.execute("ANALYZE shop_cardkey")
        no_index = _time(floor, repeat=20)
        transaction.set_rollback(True)
    _report("raw claim WITHOUT the partial index", no_index, "raw claim with it", floor_time)


def bare_view(request):
    return HttpResponse("ok")


urlpatterns = [path("bare/", bare_view)]


def test_pay_to_key_on_the_page(settings):
    product = ProductFactory()
    shop_services.import_keys(
        product=product,
        lines=[f"PAGE-{i}" for i in range(60)],
        source=ImportBatch.Source.COMMAND,
    )
    client = Client()
    orders = [place(product).order for _ in range(50)]
    payments = [open_payment(order) for order in orders]
    samples = []
    for order, payment in zip(orders, payments, strict=True):
        start = time.perf_counter()
        assert pay(payment, client=client).status_code == 200
        page = client.get(order_page_path(order))
        samples.append(time.perf_counter() - start)
        assert b"PAGE-" in page.content

    original_urlconf = settings.ROOT_URLCONF
    settings.ROOT_URLCONF = __name__
    try:
        # Two requests, like the measured path (callback + page).
        floor = _time(lambda: (client.get("/bare/"), client.get("/bare/")), repeat=50)
    finally:
        settings.ROOT_URLCONF = original_urlconf
    _report(
        "paid callback → key on order page",
        statistics.median(samples),
        "two bare Django views",
        floor,
    )
