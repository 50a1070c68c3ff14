"""Wholesale tiers: the unit price by quantity bracket, at checkout and on the product page."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import place
from tests.factories import ProductFactory, add_keys
from tests.pages import find_all, texts
from tests.promotions.conftest import CouponFactory, PriceTierFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiered(merchant):
    product = ProductFactory(merchant=merchant, price=Decimal("10.00"), max_quantity=50)
    add_keys(product, 40)
    PriceTierFactory(product=product, min_quantity=5, unit_price=Decimal("9.00"))
    PriceTierFactory(product=product, min_quantity=20, unit_price=Decimal("8.00"))
    return product


def product_url(product):
    return reverse("shop:product", args=[product.merchant.slug, product.slug])


@pytest.mark.parametrize(
    ("quantity", "unit_price", "amount"),
    [
        (1, "10.00", "10.00"),
        (4, "10.00", "40.00"),
        (5, "9.00", "45.00"),
        (19, "9.00", "171.00"),
        (20, "8.00", "160.00"),
        (30, "8.00", "240.00"),
    ],
)
def test_unit_price_follows_the_quantity_bracket(tiered, quantity, unit_price, amount):
    order = place(tiered, quantity=quantity).order

    assert (order.unit_price, order.amount) == (Decimal(unit_price), Decimal(amount))


def test_coupon_applies_after_the_tier_price(tiered):
    CouponFactory(
        merchant=tiered.merchant,
        code="MIN40",
        value=Decimal("10"),
        currency="CNY",
        min_order_amount=Decimal("45.00"),
    )

    order = place(tiered, quantity=5, coupon_code="MIN40").order

    # 5 × 9.00 = 45.00 meets the minimum; 10% of it off.
    assert (order.unit_price, order.discount, order.amount) == (
        Decimal("9.00"),
        Decimal("4.50"),
        Decimal("40.50"),
    )


def test_tiers_of_another_product_do_not_apply(tiered, merchant):
    plain = ProductFactory(merchant=merchant, price=Decimal("10.00"), max_quantity=50)
    add_keys(plain, 10)

    assert place(plain, quantity=10).order.unit_price == Decimal("10.00")


def test_product_page_shows_the_tiers_table(client, tiered):
    response = client.get(product_url(tiered), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    [table] = find_all(response.content, "table", cls="tiers")
    assert table.attrs["data-product"] == str(tiered.pk)
    assert texts(response.content, "td") == [
        "1–4",
        "10.00 CNY",
        "5–19",
        "9.00 CNY",
        "20–50",
        "8.00 CNY",
    ]
    assert "Wholesale prices" in response.content.decode()


def test_product_page_without_tiers_has_no_table(client, stocked_product):
    response = client.get(product_url(stocked_product), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert "Wholesale prices" not in response.content.decode()


def listing_with_options(merchant, *, options: int, tiers: tuple[int, ...]):
    listing = ProductFactory(merchant=merchant, max_quantity=50)
    variants = [
        ProductFactory(merchant=merchant, variant_of=listing, max_quantity=50)
        for _ in range(options)
    ]
    for product in (listing, *variants):
        add_keys(product, 2)
        for minimum in tiers:
            PriceTierFactory(product=product, min_quantity=minimum, unit_price=Decimal("9.00"))
    return listing


def test_tiers_cost_the_product_page_no_query_per_option_or_tier(
    client, merchant, django_assert_max_num_queries
):
    plain = listing_with_options(merchant, options=5, tiers=())
    with CaptureQueriesContext(connection) as baseline:
        assert client.get(product_url(plain)).status_code == 200
    tiered = listing_with_options(merchant, options=5, tiers=(5, 10, 20))

    # One query reads every option's tiers, whether there are any or not.
    assert sum("promotions_pricetier" in q["sql"] for q in baseline.captured_queries) == 1
    with django_assert_max_num_queries(len(baseline)):
        response = client.get(product_url(tiered))

    assert response.status_code == 200
    assert len(response.context["price_tiers"]) == 6
    assert [len(table.rows) for table in response.context["price_tiers"]] == [4] * 6


def test_table_starts_at_the_minimum_order_at_the_price_charged_there(client, merchant):
    product = ProductFactory(
        merchant=merchant, price=Decimal("10.00"), min_quantity=5, max_quantity=30
    )
    add_keys(product, 5 + 9 + 10 + 30)
    # The 3+ tier already applies to the smallest order (5); the 31+ tier can never apply.
    PriceTierFactory(product=product, min_quantity=3, unit_price=Decimal("9.50"))
    PriceTierFactory(product=product, min_quantity=10, unit_price=Decimal("9.00"))
    PriceTierFactory(product=product, min_quantity=31, unit_price=Decimal("1.00"))

    response = client.get(product_url(product), HTTP_ACCEPT_LANGUAGE="en")

    assert texts(response.content, "td") == ["5–9", "9.50 CNY", "10–30", "9.00 CNY"]
    # What the table says is what an order costs, at each edge.
    for quantity, unit_price in ((5, "9.50"), (9, "9.50"), (10, "9.00"), (30, "9.00")):
        assert place(product, quantity=quantity).order.unit_price == Decimal(unit_price)


def test_a_tier_at_the_maximum_quantity_is_a_one_quantity_row(client, merchant):
    product = ProductFactory(merchant=merchant, price=Decimal("10.00"), max_quantity=10)
    add_keys(product, 19)
    PriceTierFactory(product=product, min_quantity=10, unit_price=Decimal("8.00"))

    response = client.get(product_url(product), HTTP_ACCEPT_LANGUAGE="en")

    assert texts(response.content, "td") == ["1–9", "10.00 CNY", "10", "8.00 CNY"]
    assert place(product, quantity=10).order.amount == Decimal("80.00")
    assert place(product, quantity=9).order.amount == Decimal("90.00")
