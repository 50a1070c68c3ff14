import json
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from orders import services as order_services
from orders.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway
from orders.models import Order, Payment
from tests.factories import MerchantFactory, ProductFactory, add_keys


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


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
