"""The storefront cache (shop/cache.py) switched on: a repeat view of a store or product page
is served from Redis without the catalogue queries, every change of the catalogue or stock
shows on the next view, per-buyer parts (the CSRF token) are never cached, and a Redis that is
down only costs the cache, never the page."""

import re
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import translation

from orders import services as order_services
from promotions.models import PriceTier
from shop import services as shop_services
from shop.models import CardKey
from tests.conftest import place
from tests.factories import CategoryFactory, ProductFactory, add_keys
from tests.pages import texts

# Long enough that nothing in a test expires by time: what is tested is the invalidation.
pytestmark = pytest.mark.usefixtures("storefront_cache_on")

CACHED_STORE_QUERIES = 1  # the merchant; the catalogue comes from the cache
CACHED_PRODUCT_QUERIES = 1  # the merchant (the view counter is a Redis HINCRBY)


@pytest.fixture
def storefront_cache_on(settings):
    settings.STOREFRONT_CACHE_SECONDS = 300


def store_url(merchant):
    return reverse("shop:store", args=[merchant.slug])


def product_url(product):
    return reverse("shop:product", args=[product.merchant.slug, product.slug])


def stock_badges(response):
    return texts(response.content, "span", cls="stock")


def price_line(response):
    return texts(response.content, "p", cls="price")


def test_a_repeat_store_view_comes_from_the_cache(
    client, stocked_product, django_assert_max_num_queries
):
    first = client.get(store_url(stocked_product.merchant))
    assert "sections" in first.context  # rendered

    with django_assert_max_num_queries(CACHED_STORE_QUERIES):
        second = client.get(store_url(stocked_product.merchant))

    assert second.status_code == 200
    assert "sections" not in second.context  # from the cache
    assert stock_badges(second) == stock_badges(first) == ["10 left"]
    assert stocked_product.title in second.content.decode()


def test_a_repeat_product_view_comes_from_the_cache(
    client, stocked_product, django_assert_max_num_queries
):
    first = client.get(product_url(stocked_product))
    assert "form" in first.context

    with django_assert_max_num_queries(CACHED_PRODUCT_QUERIES):
        second = client.get(product_url(stocked_product))

    assert second.status_code == 200
    assert "form" not in second.context
    assert price_line(second) == price_line(first)
    assert "10 left" in price_line(second)[0]
    assert 'name="email"' in second.content.decode()


def test_claims_sales_and_releases_show_at_once(client, stocked_product):
    merchant = stocked_product.merchant
    client.get(store_url(merchant))
    client.get(product_url(stocked_product))

    reserved = place(stocked_product, quantity=3)
    assert stock_badges(client.get(store_url(merchant))) == ["7 left"]
    assert "7 left" in price_line(client.get(product_url(stocked_product)))[0]

    order_services.cancel_order(order_id=reserved.order.pk, source="buyer")
    assert stock_badges(client.get(store_url(merchant))) == ["10 left"]
    assert "10 left" in price_line(client.get(product_url(stocked_product)))[0]


def test_imports_and_voids_show_at_once(client, stocked_product):
    merchant = stocked_product.merchant
    client.get(store_url(merchant))

    add_keys(stocked_product, 5, prefix="MORE")
    assert stock_badges(client.get(store_url(merchant))) == ["15 left"]

    voided = CardKey.objects.filter(product=stocked_product).values_list("id", flat=True)[:4]
    shop_services.void_keys(merchant_id=merchant.pk, key_ids=list(voided))
    assert stock_badges(client.get(store_url(merchant))) == ["11 left"]
    assert "11 left" in price_line(client.get(product_url(stocked_product)))[0]


def test_product_category_and_price_tier_edits_show_at_once(client, stocked_product):
    merchant = stocked_product.merchant
    category = CategoryFactory(merchant=merchant, name="Streaming")
    client.get(store_url(merchant))
    client.get(product_url(stocked_product))

    stocked_product.title = "Renamed listing"
    stocked_product.category = category
    stocked_product.save()
    body = client.get(store_url(merchant)).content.decode()
    assert "Renamed listing" in body and "Streaming" in body

    category.name = "Music"
    category.save()
    assert "Music" in client.get(store_url(merchant)).content.decode()

    PriceTier.objects.create(
        product=stocked_product,
        min_quantity=stocked_product.min_quantity + 1,
        unit_price=Decimal("1.50"),
    )
    page = client.get(product_url(stocked_product)).content.decode()
    assert "Renamed listing" in page and "1.50" in page

    stocked_product.is_active = False
    stocked_product.save()
    assert client.get(product_url(stocked_product)).status_code == 404
    assert "Renamed listing" not in client.get(store_url(merchant)).content.decode()


def test_other_stores_are_cached_apart(client, stocked_product):
    other = ProductFactory(title="Someone else's")
    add_keys(other, 2)
    client.get(store_url(stocked_product.merchant))

    body = client.get(store_url(other.merchant)).content.decode()

    assert "Someone else&#x27;s" in body or "Someone else's" in body
    assert stocked_product.title not in body


def test_each_language_has_its_own_fragment(stocked_product):
    sold_out = ProductFactory(merchant=stocked_product.merchant, title="Gone")
    url = store_url(stocked_product.merchant)
    english = Client(HTTP_ACCEPT_LANGUAGE="en").get(url).content.decode()
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-CN").get(url).content.decode()
    english_again = Client(HTTP_ACCEPT_LANGUAGE="en").get(url).content.decode()

    with translation.override("zh-hans"):
        zh_sold_out = translation.gettext("Sold out")
    assert sold_out.title in chinese
    assert zh_sold_out != "Sold out" and zh_sold_out in chinese
    assert "Sold out" in english and "Sold out" in english_again
    assert zh_sold_out not in english_again


def test_a_variant_slug_still_redirects_and_an_unknown_one_is_not_found(client, merchant):
    monthly = ProductFactory(merchant=merchant, title="Music", variant_label="1 month")
    yearly = ProductFactory(merchant=merchant, variant_label="12 months", variant_of=monthly)
    for _ in range(2):
        response = client.get(product_url(yearly))
        assert response.status_code == 302
        assert response["Location"] == product_url(monthly)
        missing = reverse("shop:product", args=[merchant.slug, "no-such-product"])
        assert client.get(missing).status_code == 404


def test_a_cached_product_page_carries_each_buyers_own_working_csrf_token(stocked_product):
    url = product_url(stocked_product)
    Client().get(url)  # fills the cache
    buyer = Client(enforce_csrf_checks=True)

    page = buyer.get(url)

    assert "form" not in page.context  # served from the cache
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert tokens
    token = tokens[-1]  # the Buy form's (the language switcher has one too)
    response = buyer.post(
        url,
        {
            "csrfmiddlewaretoken": token,
            "option": stocked_product.pk,
            "quantity": 1,
            "email": "buyer@example.com",
            "query_password": "",
            "gateway": "sandbox",
        },
    )
    assert response.status_code == 302
    assert CardKey.objects.filter(product=stocked_product, status="reserved").count() == 1
    # ... and the next view shows the reservation.
    assert "9 left" in price_line(buyer.get(url))[0]


def test_a_post_with_errors_is_rendered_fresh_with_the_buyers_input(client, stocked_product):
    url = product_url(stocked_product)
    client.get(url)

    response = client.post(
        url,
        {
            "option": stocked_product.pk,
            "quantity": 1,
            "email": "not-an-email",
            "gateway": "sandbox",
        },
    )

    assert response.status_code == 400
    assert "not-an-email" in response.content.decode()
    assert response.context["form"].errors["email"]
    assert "not-an-email" not in Client().get(url).content.decode()


@override_settings(
    CACHES={
        "default": {
            # A real Redis client against a port nothing listens on: every cache call fails.
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
)
def test_with_redis_down_the_pages_render_without_the_cache(client, stocked_product, caplog):
    store = client.get(store_url(stocked_product.merchant))
    page = client.get(product_url(stocked_product))

    assert store.status_code == 200 and page.status_code == 200
    assert stock_badges(store) == ["10 left"]
    assert "10 left" in price_line(page)[0]
    assert "storefront cache unavailable" in caplog.text
    place(stocked_product, quantity=1)  # the version bump fails quietly too
    assert stock_badges(client.get(store_url(stocked_product.merchant))) == ["9 left"]


def test_switched_off_the_cache_stores_nothing(client, stocked_product, settings):
    settings.STOREFRONT_CACHE_SECONDS = 0
    client.get(store_url(stocked_product.merchant))

    assert "sections" in client.get(store_url(stocked_product.merchant)).context
    assert "form" in client.get(product_url(stocked_product)).context


def test_the_version_bump_costs_a_buy_no_query(client, stocked_product, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = product_url(stocked_product)

    def buy_queries(email):
        data = {"option": stocked_product.pk, "quantity": 1, "email": email, "gateway": "sandbox"}
        with CaptureQueriesContext(connection) as queries:
            assert client.post(url, {**data, "query_password": ""}).status_code == 302
        return len(queries.captured_queries)

    settings.STOREFRONT_CACHE_SECONDS = 0
    without_cache = buy_queries("first@example.com")
    settings.STOREFRONT_CACHE_SECONDS = 300
    client.get(url)

    assert buy_queries("second@example.com") == without_cache
    assert "8 left" in price_line(client.get(url))[0]
