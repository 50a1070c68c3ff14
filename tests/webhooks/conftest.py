"""Webhook tests deliver to a local stub receiver on 127.0.0.1 (``tests/stub_server.py``);
``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is on in the test settings for that."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from orders.models import Order
from shop.models import Product
from tests.conftest import open_payment, place
from tests.stub_server import StubRequest, StubServer
from tests.test_helpers_payments import pay
from webhooks import services
from webhooks.models import WebhookEndpoint


@dataclass
class Receiver:
    """A webhook receiver answering with ``codes`` in turn (then the last one forever)."""

    stub: StubServer
    codes: list[int] = field(default_factory=lambda: [200])
    calls: int = 0

    @property
    def url(self) -> str:
        return f"{self.stub.url}/hook"

    @property
    def requests(self) -> list[StubRequest]:
        return [r for r in self.stub.requests if r.path == "/hook"]

    def events(self) -> list[str]:
        return [json.loads(r.body)["event"] for r in self.requests]

    def handle(self, request: StubRequest) -> tuple[int, dict[str, str], bytes]:
        code = self.codes[min(self.calls, len(self.codes) - 1)]
        self.calls += 1
        return code, {"Content-Type": "text/plain"}, f"answer {self.calls}".encode()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture
def receiver(stub: StubServer) -> Receiver:
    found = Receiver(stub=stub)
    stub.route("POST", "/hook", found.handle)
    return found


@pytest.fixture
def endpoint(merchant, receiver: Receiver) -> WebhookEndpoint:
    return services.create_endpoint(
        merchant=merchant,
        url=receiver.url,
        events=["order.paid", "order.delivered", "order.refunded", "dispute.opened", "stock.low"],
    )


def buy(product: Product, capture, *, quantity: int = 1, language: str = "en") -> Order:
    """Place and pay an order through the signed sandbox callback, running what is queued after
    commit (eager Celery: receipts, notices, webhooks)."""
    order = place(product, quantity=quantity, language=language).order
    payment = open_payment(order)
    with capture(execute=True):
        response = pay(payment)
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    return order
