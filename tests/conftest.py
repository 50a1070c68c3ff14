import json
import os
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from orders import services as order_services
from orders.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway
from orders.models import Order, Payment
from tests.factories import MerchantFactory, ProductFactory, add_keys


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Give each test run its own database, so two runs on one machine (a developer's and CI's)
    never drop each other's test database. pytest-django destroys it at the end of the run."""
    from django.conf import settings

    suffix = os.environ.get("CARDVAULT_TEST_DB_SUFFIX", str(os.getpid()))
    test_settings = settings.DATABASES["default"].setdefault("TEST", {})
    test_settings["NAME"] = f"test_{settings.DATABASES['default']['NAME']}_{suffix}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The default risk rules (``risk/migrations/0002``) protect real shops; tests that place
    many orders for one buyer must not trip them. ``tests/risk`` sets up the rules it tests."""
    from risk.models import RiskRule

    with django_db_blocker.unblock():
        RiskRule.objects.all().delete()


@pytest.fixture(autouse=True)
def _clear_cache():
    clear_this_runs_cache()
    yield
    clear_this_runs_cache()


def clear_this_runs_cache() -> None:
    """Delete this run's cache keys only (``cache.clear()`` would flush the whole Redis database,
    other runs' keys included)."""
    import redis
    from django.conf import settings
    from django.core.cache import cache

    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        cache.clear()
        return
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant)


@pytest.fixture
def stocked_product(product):
    add_keys(product, 10)
    return product


def place(product, quantity=1, email="buyer@example.com", **kwargs):
    return order_services.place_order(product=product, quantity=quantity, email=email, **kwargs)


def open_payment(order: Order) -> Payment:
    order_services.start_payment(order=order, gateway_name="sandbox", base_url="http://testserver/")
    return Payment.objects.filter(order=order).latest("created_at")


def sandbox_notification(
    payment: Payment,
    *,
    status: str = "paid",
    amount: Decimal | str | None = None,
    currency: str | None = None,
    event_id: str | None = None,
    reference: str | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A sandbox callback body and headers, signed like the sandbox gateway signs them, with any
    field overridable to forge, replay or mismatch it."""
    trade_id = f"T{payment.reference}"
    payload = {
        "event_id": event_id or f"{trade_id}:{status}",
        "payment_reference": reference or payment.reference,
        "status": status,
        "amount": str(amount if amount is not None else f"{payment.amount:.2f}"),
        "currency": currency or payment.currency,
        "trade_id": trade_id,
    }
    body = json.dumps(payload).encode()
    gateway = SandboxGateway(secret=secret)
    genuine = secret is None and reference is None and amount is None and currency is None
    if genuine:
        # The sandbox's "remote" side records the trade, as its pay page does, so query and
        # refund behave like a real gateway's afterwards.
        from django.core.cache import cache

        cache.set(
            f"sandbox:trade:{payment.reference}",
            {"status": status, "trade_id": trade_id, "event": payload},
            3600,
        )
    stamp = int(time.time()) if timestamp is None else timestamp
    return body, {SIGNATURE_HEADER: gateway.sign(body, timestamp=stamp)}


def post_callback(client: Client, body: bytes, headers: dict[str, str]):
    return client.post(
        "/pay/callback/sandbox/",
        data=body,
        content_type="application/json",
        headers=headers,
    )


def assert_real_postgres_transactions():
    """Race tests must run on PostgreSQL, in autocommit (no wrapping test transaction), or they
    would pass vacuously."""
    assert connection.vendor == "postgresql"
    assert connection.get_autocommit(), "race test runs inside a wrapping transaction"
    assert not connection.in_atomic_block


def verify_otp(client: Client, user) -> None:
    """Give ``user`` a confirmed TOTP device and mark ``client``'s session as having entered a
    code, as the two-factor step at /account/2fa/verify/ does (staff must, to reach /admin/).
    Call after ``client.force_login(user)``."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
