"""The public storefront: which stores and products a buyer can see, what the pages show, and
that each page costs a fixed number of queries however much is on sale."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from merchants.models import Merchant
from tests.conftest import open_payment, place
from tests.factories import CategoryFactory, MerchantFactory, ProductFactory, add_keys
from tests.pages import find_all, texts
from tests.test_helpers_payments import pay

# Query budgets: each page is a fixed number of queries, independent of how many products,
# variants, categories or keys there are.
HOME_QUERIES = 1  # merchants
SEARCH_QUERIES = 1  # products with merchant and stock
STORE_QUERIES = 3 + 1 + 1  # merchant, products with stock, categories; + reviews (one query)
# + resale listings (affiliates)
PRODUCT_QUERIES = 4 + 1  # merchant, listing options with stock, enabled gateways, price tiers
# + the analytics view counter (one upsert)


def store_url(merchant):
    return reverse("shop:store", args=[merchant.slug])


def product_url(product):
    return reverse("shop:product", args=[product.merchant.slug, product.slug])


def listing_stock(response, product):
    """The stock the storefront computed for a product's listing."""
    for _category, listings in response.context["sections"]:
        for listing in listings:
            if listing.product.pk == product.pk:
                return listing.stock
    raise AssertionError(f"{product} is not listed")


def shown_stock_numbers(response):
    """The numbers printed in the stock badges of the storefront, in page order."""
    numbers = []
    for text in texts(response.content, "span", cls="stock"):
        digits = "".join(ch if ch.isdigit() else " " for ch in text).split()
        numbers.append(int(digits[0]) if digits else None)
    return numbers


# --- home ----------------------------------------------------------------------------------
def test_home_lists_only_active_storefronts(client, db):
    open_store = MerchantFactory(name="Open Store", status=Merchant.Status.ACTIVE)
    pending = MerchantFactory(name="Pending Store", status=Merchant.Status.PENDING)
    suspended = MerchantFactory(name="Suspended Store", status=Merchant.Status.SUSPENDED)

    response = client.get(reverse("shop:home"))

    assert response.status_code == 200
    assert list(response.context["merchants"]) == [open_store]
    links = {a.attrs["href"] for a in find_all(response.content, "a")}
    assert store_url(open_store) in links
    assert store_url(pending) not in links
    assert store_url(suspended) not in links
    body = response.content.decode()
    assert "Open Store" in body
    assert "Pending Store" not in body
    assert "Suspended Store" not in body


@pytest.mark.parametrize("stores", [2, 12])
def test_home_query_count_does_not_grow_with_stores(
    client, db, django_assert_max_num_queries, stores
):
    for _ in range(stores):
        merchant = MerchantFactory(announcement="Open daily")
        add_keys(ProductFactory(merchant=merchant), 1)

    with django_assert_max_num_queries(HOME_QUERIES):
        response = client.get(reverse("shop:home"))

    assert len(response.context["merchants"]) == stores


# --- search --------------------------------------------------------------------------------
def test_search_finds_products_by_title_across_stores(client, db):
    store_a = MerchantFactory(name="Alpha")
    store_b = MerchantFactory(name="Beta")
    netflix_a = ProductFactory(merchant=store_a, title="Netflix 1 month")
    netflix_b = ProductFactory(merchant=store_b, title="NETFLIX Premium")
    ProductFactory(merchant=store_a, title="Spotify Family")
    ProductFactory(merchant=store_a, title="Netflix retired", is_active=False)
    for status in (Merchant.Status.SUSPENDED, Merchant.Status.PENDING):
        closed = MerchantFactory(status=status)
        ProductFactory(merchant=closed, title=f"Netflix from a {status} store")
    # A variant is reached through its listing, never listed on its own.
    ProductFactory(merchant=store_a, title="Netflix 1 month", variant_of=netflix_a, slug="nf-12")

    response = client.get(reverse("shop:search"), {"q": "netflix"})

    assert response.status_code == 200
    assert {p.pk for p in response.context["products"]} == {netflix_a.pk, netflix_b.pk}
    links = {a.attrs["href"] for a in find_all(response.content, "a")}
    assert {product_url(netflix_a), product_url(netflix_b)} <= links
    body = response.content.decode()
    assert "Spotify" not in body
    assert "retired" not in body
    assert "suspended store" not in body
    assert "pending store" not in body
    # Each hit names its store.
    assert "Alpha" in body and "Beta" in body


def test_search_without_query_lists_nothing(client, stocked_product):
    response = client.get(reverse("shop:search"), {"q": "   "})

    assert response.status_code == 200
    assert response.context["products"] == []


@pytest.mark.parametrize("hits", [5, 30])
def test_search_query_count_does_not_grow_with_hits(
    client, db, django_assert_max_num_queries, hits
):
    for index in range(hits):
        product = ProductFactory(merchant=MerchantFactory(), title=f"Gift card {index}")
        add_keys(product, 2)

    with django_assert_max_num_queries(SEARCH_QUERIES):
        response = client.get(reverse("shop:search"), {"q": "gift card"})

    assert len(response.context["products"]) == hits


# --- storefront ----------------------------------------------------------------------------
def test_storefront_shows_store_details_categories_prices_and_stock(client, db):
    merchant = MerchantFactory(
        name="Key Corner", announcement="Restocked every Monday.", contact="tg: @keycorner"
    )
    streaming = CategoryFactory(merchant=merchant, name="Streaming", sort_order=1)
    games = CategoryFactory(merchant=merchant, name="Games", sort_order=2)
    CategoryFactory(merchant=merchant, name="Empty shelf", sort_order=3)
    netflix = ProductFactory(
        merchant=merchant, category=streaming, title="Netflix", price=Decimal("35.50")
    )
    steam = ProductFactory(merchant=merchant, category=games, title="Steam", price=Decimal("99.00"))
    loose = ProductFactory(merchant=merchant, title="Mystery box", price=Decimal("5.00"))
    ProductFactory(merchant=merchant, category=games, title="Hidden game", is_active=False)
    add_keys(netflix, 3)
    add_keys(steam, 7)

    response = client.get(store_url(merchant))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Key Corner" in body
    assert "Restocked every Monday." in body
    assert "tg: @keycorner" in body
    sections = [
        (category.name if category else None, [entry.product.title for entry in listings])
        for category, listings in response.context["sections"]
    ]
    assert sections == [("Streaming", ["Netflix"]), ("Games", ["Steam"]), (None, ["Mystery box"])]
    headings = texts(response.content, "h2")
    assert headings[:2] == ["Streaming", "Games"]
    assert "Empty shelf" not in body
    assert "Hidden game" not in body
    assert "35.50 CNY" in body and "99.00 CNY" in body and "5.00 CNY" in body
    for product in (netflix, steam, loose):
        assert product_url(product) in body
    assert shown_stock_numbers(response) == [3, 7, None]  # the box is sold out
    assert (listing_stock(response, netflix), listing_stock(response, loose)) == (3, 0)


def test_storefront_stock_is_live(client, product):
    add_keys(product, 5)
    url = store_url(product.merchant)
    assert listing_stock(client.get(url), product) == 5

    reserved = place(product, quantity=2)
    response = client.get(url)
    assert listing_stock(response, product) == 3
    assert shown_stock_numbers(response) == [3]

    pay(open_payment(reserved.order))
    reserved.order.refresh_from_db()
    assert reserved.order.status == "delivered"
    assert listing_stock(client.get(url), product) == 3  # sold keys stay gone

    # An unpaid order whose reservation lapsed holds nothing: its key counts as free again.
    place(product, quantity=1, now=timezone.now() - timedelta(hours=1))
    assert listing_stock(client.get(url), product) == 3

    place(product, quantity=3)
    response = client.get(url)
    assert listing_stock(response, product) == 0
    assert shown_stock_numbers(response) == [None]


def test_storefront_stock_of_reusable_and_manual_products(client, merchant):
    capped = ProductFactory(
        merchant=merchant, title="Shared VPN", delivery_mode="reusable", reusable_cap=4
    )
    add_keys(capped, 1)
    unlimited = ProductFactory(merchant=merchant, title="Shared wifi", delivery_mode="reusable")
    add_keys(unlimited, 1)
    manual = ProductFactory(merchant=merchant, title="Top-up", delivery_mode="manual")

    response = client.get(store_url(merchant))

    assert listing_stock(response, capped) == 4
    assert listing_stock(response, unlimited) is None
    assert listing_stock(response, manual) is None


def test_variants_are_grouped_into_one_listing(client, merchant):
    monthly = ProductFactory(
        merchant=merchant, title="Music", variant_label="1 month", price=Decimal("15.00")
    )
    yearly = ProductFactory(
        merchant=merchant,
        title="Music",
        variant_label="12 months",
        price=Decimal("150.00"),
        variant_of=monthly,
    )
    retired = ProductFactory(
        merchant=merchant,
        title="Music",
        variant_label="Lifetime",
        variant_of=monthly,
        is_active=False,
    )
    add_keys(monthly, 2)
    add_keys(yearly, 3)

    store = client.get(store_url(merchant))

    [(_category, listings)] = store.context["sections"]
    assert len(listings) == 1
    assert [option.pk for option in listings[0].options] == [monthly.pk, yearly.pk]
    assert listings[0].stock == 5
    assert len(find_all(store.content, "li", cls="product")) == 1
    assert product_url(yearly) not in store.content.decode()

    page = client.get(product_url(monthly))

    assert page.status_code == 200
    radios = find_all(page.content, "input", type="radio", name="option")
    assert sorted(int(radio.attrs["value"]) for radio in radios) == sorted([monthly.pk, yearly.pk])
    body = page.content.decode()
    assert "1 month" in body and "12 months" in body
    assert "15.00" in body and "150.00" in body
    assert "Lifetime" not in body
    assert str(retired.pk) not in {radio.attrs["value"] for radio in radios}


def test_variant_slug_redirects_to_its_listing(client, merchant):
    monthly = ProductFactory(merchant=merchant, title="Music", variant_label="1 month")
    yearly = ProductFactory(
        merchant=merchant, title="Music", variant_label="12 months", variant_of=monthly
    )

    response = client.get(product_url(yearly))

    assert response.status_code == 302
    assert response["Location"] == product_url(monthly)


def test_active_variant_of_inactive_listing_is_not_on_sale(client, merchant):
    parent = ProductFactory(merchant=merchant, is_active=False)
    variant = ProductFactory(merchant=merchant, variant_of=parent)
    add_keys(variant, 2)

    assert client.get(product_url(parent)).status_code == 404
    assert client.get(product_url(variant)).status_code == 404
    assert client.get(store_url(merchant)).context["sections"] == []


# --- not found -----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [Merchant.Status.SUSPENDED, Merchant.Status.PENDING])
def test_closed_store_and_its_products_are_not_found(client, db, status):
    product = ProductFactory(merchant=MerchantFactory(status=status))
    add_keys(product, 1)

    assert client.get(store_url(product.merchant)).status_code == 404
    assert client.get(product_url(product)).status_code == 404


def test_inactive_product_is_not_found(client, merchant):
    product = ProductFactory(merchant=merchant, is_active=False)
    add_keys(product, 1)

    assert client.get(product_url(product)).status_code == 404


def test_unknown_store_or_product_or_another_stores_product_is_not_found(client, product):
    other = ProductFactory()

    assert client.get(reverse("shop:store", args=["no-such-store"])).status_code == 404
    assert (
        client.get(reverse("shop:product", args=[product.merchant.slug, "nope"])).status_code == 404
    )
    cross = reverse("shop:product", args=[product.merchant.slug, other.slug])
    assert client.get(cross).status_code == 404


# --- query budgets ---------------------------------------------------------------------------
def build_store(product_count):
    """A store with ``product_count`` listings across categories and uncategorised, some with
    variants, some reusable or manual, each auto product with stock."""
    merchant = MerchantFactory(announcement="Hello", contact="mail@example.com")
    categories = [CategoryFactory(merchant=merchant) for _ in range(3)]
    listings = []
    for index in range(product_count):
        mode = ["auto", "auto", "reusable", "manual"][index % 4]
        product = ProductFactory(
            merchant=merchant,
            category=categories[index % 3] if index % 5 else None,
            delivery_mode=mode,
            reusable_cap=10 if mode == "reusable" else None,
        )
        if mode != "manual":
            add_keys(product, 2)
        if index % 3 == 0:
            variant = ProductFactory(
                merchant=merchant, variant_of=product, category=product.category, variant_label="XL"
            )
            add_keys(variant, 1)
        listings.append(product)
    return merchant, listings


@pytest.mark.parametrize("products", [5, 30])
def test_storefront_query_count_does_not_grow_with_products(
    client, db, django_assert_max_num_queries, products
):
    merchant, listings = build_store(products)
    place(listings[0], quantity=1)

    with django_assert_max_num_queries(STORE_QUERIES):
        response = client.get(store_url(merchant))

    assert sum(len(entries) for _c, entries in response.context["sections"]) == products


@pytest.mark.parametrize("variants", [0, 8])
def test_product_page_query_count_does_not_grow_with_variants(
    client, merchant, django_assert_max_num_queries, variants
):
    product = ProductFactory(merchant=merchant, variant_label="base")
    add_keys(product, 3)
    for index in range(variants):
        variant = ProductFactory(merchant=merchant, variant_of=product, variant_label=f"v{index}")
        add_keys(variant, 2)

    with django_assert_max_num_queries(PRODUCT_QUERIES):
        response = client.get(product_url(product))

    assert response.status_code == 200
    assert len(response.context["listing"].options) == variants + 1
