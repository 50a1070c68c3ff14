"""A paid order the rules hold delivers nothing, keeps its keys without expiry, and waits for
staff: released, it is fulfilled exactly like a callback would (once); refunded, its keys go
back to stock."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from orders import services
from orders.exceptions import NotHeld, OutOfStock
from orders.models import Delivery, Order, PaymentEvent, Refund
from risk.models import RiskDecision
from shop.models import CardKey, Product
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.risk.conftest import add_rule
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(product, django_capture_on_commit_callbacks):
    """A 30.00 CNY order over a 25.00 CNY hold threshold, paid; 3 of 4 keys reserved to it."""
    add_keys(product, 4)
    add_rule("amount", "25.00", "hold", stage="pay", currency="CNY")
    order = place(product, quantity=3, buyer_ip="198.51.100.1").order
    payment = open_payment(order)
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(payment).status_code == 200
    order.refresh_from_db()
    return order


def test_a_held_order_delivers_nothing_and_keeps_its_keys(held, product):
    assert held.status == Order.Status.HELD
    assert not Delivery.objects.filter(order=held).exists()
    assert held.needs_attention.startswith("held for risk review: amount 30.00 > 25.00")
    assert PaymentEvent.objects.get(payment__order=held).outcome == PaymentEvent.Outcome.HELD
    keys = CardKey.objects.filter(order=held)
    assert [(k.status, k.reserved_until) for k in keys] == [(CardKey.Status.RESERVED, None)] * 3
    assert len(mail.outbox) == 0, "no receipt for an undelivered order"
    decision = RiskDecision.objects.get(order=held, stage="pay")
    assert decision.outcome == RiskDecision.Outcome.HOLD
    assert decision.amount == held.amount

    # Nothing lapses: not the expiry job, not the repair job, not another buyer.
    later = timezone.now() + timedelta(hours=2)
    services.expire_pending_orders(now=later)
    services.repair_paid_orders(now=later)
    with pytest.raises(OutOfStock):
        place(product, quantity=2, now=later)
    assert Order.objects.get(pk=held.pk).status == Order.Status.HELD
    assert CardKey.objects.filter(order=held, status=CardKey.Status.RESERVED).count() == 3


def test_released_it_is_delivered_once(held, django_capture_on_commit_callbacks):
    staff = UserFactory(is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.release_held_order(order_id=held.pk, actor=staff)

    held.refresh_from_db()
    assert held.status == Order.Status.DELIVERED
    assert held.needs_attention == ""
    assert Delivery.objects.filter(order=held).count() == 3
    assert CardKey.objects.filter(order=held, status=CardKey.Status.SOLD).count() == 3
    assert len(mail.outbox) == 1
    trail = list(held.status_changes.values_list("from_status", "to_status", "source", "actor"))
    assert trail[-3:] == [
        ("paid", "held", "risk", None),
        ("held", "paid", "risk:release", staff.pk),
        ("paid", "delivered", "fulfilment", None),
    ]
    with pytest.raises(NotHeld):
        services.release_held_order(order_id=held.pk, actor=staff)
    assert Delivery.objects.filter(order=held).count() == 3


def test_refunded_it_releases_its_keys(held):
    services.request_refund(
        request_id=f"risk-hold:{held.pk}", order_id=held.pk, reason="fraud", source="risk"
    )
    held.refresh_from_db()
    assert held.status == Order.Status.REFUNDED
    assert Refund.objects.get(order=held).status == Refund.Status.SUCCEEDED
    assert not CardKey.objects.filter(order=held).exists()
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE).count() == 4
    assert not Delivery.objects.filter(order=held).exists()
    with pytest.raises(NotHeld):
        services.release_held_order(order_id=held.pk, actor=None)


def test_a_second_payment_does_not_release_a_held_order(held, django_capture_on_commit_callbacks):
    from tests.orders.test_refunds import open_payment_on_closed

    second = open_payment_on_closed(held)
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(second).status_code == 200
    held.refresh_from_db()
    assert held.status == Order.Status.HELD
    assert not Delivery.objects.filter(order=held).exists()
    assert Refund.objects.get(payment=second).status == Refund.Status.SUCCEEDED


def test_below_the_threshold_or_in_another_currency_it_is_delivered(product):
    add_keys(product, 2)
    add_rule("amount", "25.00", "hold", stage="pay", currency="USD")
    add_rule("amount", "50.00", "hold", stage="pay", currency="CNY")
    order = place(product, quantity=2).order
    pay(open_payment(order))
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED
    assert RiskDecision.objects.get(order=order, stage="pay").outcome == "allow"


def test_a_held_manual_order_goes_to_the_merchant_once_released(merchant):
    add_rule("amount", "5.00", "hold", stage="pay")
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.MANUAL)
    order = place(product).order
    pay(open_payment(order))
    assert Order.objects.get(pk=order.pk).status == Order.Status.HELD

    services.release_held_order(order_id=order.pk, actor=None)
    order.refresh_from_db()
    assert order.status == Order.Status.PAID  # awaiting the merchant's delivery
    services.deliver_manually(order=order, content="code-123", actor=merchant.owner)
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED


def test_released_without_enough_stock_it_is_unfulfilled(held, product):
    CardKey.objects.filter(order=held).update(
        status=CardKey.Status.AVAILABLE, order=None, reserved_until=None
    )
    CardKey.objects.all().update(status=CardKey.Status.VOID)
    services.release_held_order(order_id=held.pk, actor=None)
    held.refresh_from_db()
    assert held.status == Order.Status.UNFULFILLED
    assert held.needs_attention == "released after review, but not enough stock"
