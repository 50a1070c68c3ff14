import pytest
from django.test import Client
from django.utils import timezone

from orders.models import Order
from tests.conftest import place, verify_otp
from tests.factories import ProductFactory, UserFactory, add_keys


@pytest.fixture
def product(merchant):
    """Enough stock for every order a test places."""
    product = ProductFactory(merchant=merchant)
    add_keys(product, 40)
    return product


@pytest.fixture
def staff_client(db):
    staff = UserFactory(username="moderator", is_staff=True, is_superuser=True)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(staff)
    verify_otp(client, staff)
    return client


def delivered(product, email="buyer@example.com"):
    """A placed order marked delivered directly (the payment flow is tested elsewhere)."""
    placed = place(product, email=email)
    now = timezone.now()
    Order.objects.filter(pk=placed.order.pk).update(
        status=Order.Status.DELIVERED, paid_at=now, delivered_at=now
    )
    placed.order.refresh_from_db()
    return placed
