"""Pay an order the way a gateway would: a signed sandbox callback through the real URL."""

from django.test import Client

from orders.models import Payment
from tests.conftest import post_callback, sandbox_notification


def pay(payment: Payment, client: Client | None = None, **overrides):
    body, headers = sandbox_notification(payment, **overrides)
    return post_callback(client or Client(), body, headers)
