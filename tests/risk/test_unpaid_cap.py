"""A buyer cannot lock a shop's stock with unpaid orders: past the cap, checkout is blocked
until one of them is paid or expires, even when the orders arrive all at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orders import services as order_services
from orders.models import Order
from risk.exceptions import RiskBlocked
from risk.models import RiskDecision
from shop.models import CardKey, Product
from tests.conftest import assert_real_postgres_transactions, open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.orders.test_races import run_together
from tests.risk.conftest import add_rule
from tests.test_helpers_payments import pay


@pytest.mark.django_db
def test_unpaid_orders_per_email_are_capped_until_paid_or_expired(stocked_product):
    add_rule("unpaid_email", 2, "block")
    first = place(stocked_product, email="hoarder@example.com", buyer_ip="198.51.100.1")
    place(stocked_product, email="Hoarder+2@example.com", buyer_ip="198.51.100.2")

    with pytest.raises(RiskBlocked) as raised:
        place(stocked_product, email="hoarder@example.com", buyer_ip="198.51.100.3")
    assert "too many unpaid orders" in str(raised.value.user_message)
    assert Order.objects.count() == 2
    assert CardKey.objects.filter(status=CardKey.Status.RESERVED).count() == 2

    # Paying one frees a place.
    pay(open_payment(first.order))
    place(stocked_product, email="hoarder@example.com")
    with pytest.raises(RiskBlocked):
        place(stocked_product, email="hoarder@example.com")

    # Lapsed reservations do not count, whether or not the expiry job ran.
    later = timezone.now() + timedelta(minutes=16)
    place(stocked_product, email="hoarder@example.com", now=later)


@pytest.mark.django_db
def test_unpaid_orders_per_ip_are_capped(stocked_product):
    add_rule("unpaid_ip", 1, "block")
    place(stocked_product, email="a@example.com", buyer_ip="198.51.100.1")
    with pytest.raises(RiskBlocked):
        place(stocked_product, email="b@example.com", buyer_ip="198.51.100.1")
    assert [d.outcome for d in RiskDecision.objects.order_by("id")] == ["allow", "block"]


@pytest.mark.django_db(transaction=True)
def test_parallel_checkouts_cannot_pass_the_cap_together():
    assert_real_postgres_transactions()
    add_rule("unpaid_ip", 3, "block")
    product = ProductFactory(delivery_mode=Product.DeliveryMode.AUTO, max_quantity=1)
    add_keys(product, 20)

    def buy(i: int) -> Order:
        return order_services.place_order(
            product=Product.objects.get(pk=product.pk),
            quantity=1,
            email=f"bot{i}@example.com",
            buyer_ip="198.51.100.66",
        ).order

    results = run_together(12, buy)

    placed = [r for r in results if isinstance(r, Order)]
    blocked = [r for r in results if isinstance(r, RiskBlocked)]
    assert (len(placed), len(blocked)) == (3, 9), results
    assert CardKey.objects.filter(status=CardKey.Status.RESERVED).count() == 3
    assert RiskDecision.objects.filter(outcome="block", order__isnull=True).count() == 9
