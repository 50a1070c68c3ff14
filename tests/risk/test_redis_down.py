"""With Redis down, checkouts still go through: counts live in PostgreSQL, the one cache-based
signal (failed look-ups) fails open, and the blacklist (a database query) still blocks."""

import pytest
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError

from orders import throttle
from orders.models import Order
from risk.exceptions import CaptchaRequired, RiskBlocked
from risk.models import RiskDecision
from tests.conftest import place
from tests.risk.conftest import add_entry, add_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(settings):
    """The real Redis cache backend pointed at a port nothing listens on."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "KEY_PREFIX": "down",
        }
    }
    with pytest.raises(RedisConnectionError):
        cache.get("anything")


def test_checkouts_fail_open_for_velocity_when_redis_is_down(stocked_product, redis_down):
    add_rule("lookup_failures", 0, "captcha")  # would ask everyone, if it could count
    add_rule("velocity_ip", 2, "captcha")
    add_rule("unpaid_email", 5, "block")

    for n in range(2):
        place(stocked_product, email=f"b{n}@example.com", buyer_ip="198.51.100.1")
    assert Order.objects.count() == 2
    # Velocity is counted in PostgreSQL, so it still applies.
    with pytest.raises(CaptchaRequired):
        place(stocked_product, email="b2@example.com", buyer_ip="198.51.100.1")
    # Blacklists never fail open.
    add_entry("ip", "198.51.100.9")
    with pytest.raises(RiskBlocked):
        place(stocked_product, email="b3@example.com", buyer_ip="198.51.100.9")
    assert list(RiskDecision.objects.order_by("id").values_list("outcome", flat=True)) == [
        "allow",
        "allow",
        "captcha",
        "block",
    ]


def test_the_lookup_signal_applies_when_redis_is_up(stocked_product):
    add_rule("lookup_failures", 0, "captcha")
    throttle.record_lookup_failure("198.51.100.1")
    with pytest.raises(CaptchaRequired):
        place(stocked_product, buyer_ip="198.51.100.1")
