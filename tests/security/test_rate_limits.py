"""Per-IP rate limits: checkout, order lookup, login POSTs; never payment callbacks; checkout
keeps selling when Redis is down."""

import pytest
from django.core.cache import caches
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError

from orders.models import Order
from tests.conftest import open_payment, place, post_callback, sandbox_notification
from tests.factories import UserFactory
from tests.security.helpers import english_client
from tests.shop.test_product_page import buy

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_checkout_over_the_rate_gets_429_and_writes_nothing(settings, stocked_product):
    settings.RATE_LIMIT_CHECKOUT = "2/m"
    client = english_client()
    assert buy(client, stocked_product).status_code == 302
    assert buy(client, stocked_product).status_code == 302

    limited = buy(client, stocked_product)

    assert limited.status_code == 429
    assert "Too many requests" in limited.content.decode()
    assert "Nothing was saved" in limited.content.decode()
    assert limited["Retry-After"] == "60"
    assert Order.objects.count() == 2
    # Browsing the product page is not limited.
    assert client.get(limited.request["PATH_INFO"]).status_code == 200
    # Another client IP still buys.
    other = english_client(REMOTE_ADDR="198.51.100.9")
    assert buy(other, stocked_product).status_code == 302
    assert Order.objects.count() == 3


def test_429_page_is_translated(settings, stocked_product):
    settings.RATE_LIMIT_CHECKOUT = "1/m"
    client = english_client()
    buy(client, stocked_product)
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    limited = buy(chinese, stocked_product)
    assert limited.status_code == 429
    # Rendered in the buyer's language; its strings are {% translate %}d (the catalogue entries
    # come with the project's translation pass).
    assert '<html lang="zh-hans">' in limited.content.decode()


def test_checkout_fails_open_when_redis_is_down(settings, stocked_product):
    """The limiter's Redis is unreachable (a real connection refused, not a mock): checkout still
    sells. (Only the limiter's cache is pointed at the dead port: the sandbox test gateway keeps
    its fake trades in the cache and would fail on its own.)"""
    settings.RATE_LIMIT_CHECKOUT = "1/m"
    settings.CACHES = {
        **settings.CACHES,
        "dead": {**settings.CACHES["default"], "LOCATION": DEAD_REDIS},
    }
    settings.RATELIMIT_USE_CACHE = "dead"
    with pytest.raises(RedisConnectionError):
        caches["dead"].add("anything", 1)

    client = english_client()
    first = buy(client, stocked_product)
    second = buy(client, stocked_product)

    assert (first.status_code, second.status_code) == (302, 302)
    assert Order.objects.count() == 2


def test_order_lookup_over_the_rate_gets_429(settings):
    settings.RATE_LIMIT_LOOKUP = "3/m"
    client = english_client()
    data = {"number": "X", "email": "a@example.com", "query_password": ""}
    statuses = [client.post("/lookup/", data).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert client.get("/lookup/").status_code == 200


@pytest.mark.parametrize("url", ["/admin/login/", "/merchant/login/"])
def test_login_posts_over_the_rate_get_429(settings, url):
    settings.RATE_LIMIT_LOGIN = "2/m"
    settings.AXES_FAILURE_LIMIT = 100
    UserFactory(username="someone")
    client = english_client()
    statuses = [
        client.post(url, {"username": f"guess{n}", "password": "x"}).status_code for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert client.get(url).status_code == 200


def test_payment_callbacks_are_never_limited(settings, stocked_product):
    for name in ("RATE_LIMIT_CHECKOUT", "RATE_LIMIT_LOOKUP", "RATE_LIMIT_LOGIN"):
        setattr(settings, name, "1/m")
    client = english_client()
    orders = [place(stocked_product).order for _ in range(3)]
    for order in orders:
        body, headers = sandbox_notification(open_payment(order))
        assert post_callback(client, body, headers).status_code == 200
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 3


def test_dispute_creation_over_the_rate_gets_429_and_writes_nothing(settings, stocked_product):
    from disputes.models import Dispute
    from tests.disputes.factories import delivered_order

    settings.RATE_LIMIT_DISPUTE = "2/m"
    delivered = delivered_order(stocked_product)
    url = f"/o/{delivered.token}/problem/"
    client = english_client()
    for _ in range(2):
        assert client.post(url, {"reason": "key_invalid", "message": ""}).status_code in (200, 400)

    limited = client.post(url, {"reason": "key_invalid", "message": "The code is invalid."})

    assert limited.status_code == 429
    assert Dispute.objects.count() == 0
    assert client.get(url).status_code == 200
