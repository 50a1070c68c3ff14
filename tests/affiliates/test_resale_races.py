"""Resellers and direct buyers racing for one supplier's stock: real threads, real PostgreSQL
transactions. No key is ever reserved or sold twice, and every order got whole stock or none."""

from collections import Counter
from decimal import Decimal

import pytest
from django.db import close_old_connections

from affiliates import services
from affiliates.models import ResaleListing, ResaleSale
from orders.exceptions import OutOfStock
from orders.models import Delivery, Order
from shop.models import CardKey, Product
from tests.affiliates.helpers import listing, offer
from tests.conftest import assert_real_postgres_transactions, open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys
from tests.orders.test_races import run_together
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db(transaction=True)

STOCK = 6
BUYERS = 16


def test_resellers_and_direct_buyers_never_share_a_key():
    assert_real_postgres_transactions()
    supply = ProductFactory(price=Decimal("10.00"))
    add_keys(supply, STOCK)
    resale_offer = offer(supply, "8.00")
    listing_ids = [listing(MerchantFactory(), resale_offer, f"{12 + i}.00").pk for i in range(3)]

    def buy(i: int) -> Order:
        close_old_connections()
        if i % 4 == 0:
            product = Product.objects.select_related("merchant").get(pk=supply.pk)
            order = place(product, email=f"direct{i}@example.com").order
        else:
            item = ResaleListing.objects.select_related("offer__product__merchant").get(
                pk=listing_ids[i % 3]
            )
            order = services.checkout_resale(
                listing=item,
                quantity=1,
                email=f"resale{i}@example.com",
                gateway_name="sandbox",
                base_url="http://testserver/",
            ).order
        response = pay(open_payment(order))
        assert response.status_code == 200, response.content
        return order

    results = run_together(BUYERS, buy)

    orders = [r for r in results if isinstance(r, Order)]
    failures = [r for r in results if not isinstance(r, Order)]
    assert len(orders) == STOCK
    assert all(isinstance(f, OutOfStock) for f in failures), failures
    assert Order.objects.count() == STOCK
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == STOCK
    statuses = Counter(CardKey.objects.filter(product=supply).values_list("status", flat=True))
    assert statuses == {CardKey.Status.SOLD: STOCK}
    key_ids = list(Delivery.objects.values_list("card_key_id", flat=True))
    assert len(key_ids) == len(set(key_ids)) == STOCK
    # Every resale order has its sale record; no orphan records from rolled-back attempts.
    assert ResaleSale.objects.count() == Order.objects.filter(resale_sale__isnull=False).count()
    assert not ResaleSale.objects.exclude(order__in=Order.objects.all()).exists()
