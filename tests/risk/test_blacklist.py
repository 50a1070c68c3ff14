"""Blacklisted buyers are refused at checkout with nothing written but the decision, and a paid
order that matches a blacklist entry is held rather than delivered."""

import pytest
from django.core.exceptions import ValidationError

from orders.models import Order, OrderStatusChange
from risk.exceptions import RiskBlocked
from risk.models import ListEntry, RiskDecision
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.risk.conftest import add_entry
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("kind", "value", "email", "ip"),
    [
        ("email", "Fraud@Example.com", "fraud@example.com", "198.51.100.7"),
        ("email", "fraud@example.com", "Fraud+shop@example.com", "198.51.100.7"),
        ("email_domain", "@Throwaway.test", "anyone@throwaway.test", "198.51.100.7"),
        ("email_domain", "throwaway.test", "anyone@mx.throwaway.test", "198.51.100.7"),
        ("ip", "203.0.113.9", "buyer@example.com", "203.0.113.9"),
        ("cidr", "203.0.113.0/24", "buyer@example.com", "203.0.113.200"),
        ("cidr", "2001:db8::/32", "buyer@example.com", "2001:db8:1::5"),
        ("cidr", "203.0.113.0/24", "buyer@example.com", "::ffff:203.0.113.4"),
    ],
)
def test_a_blacklisted_buyer_is_blocked_and_nothing_is_written(
    stocked_product, kind, value, email, ip
):
    entry = add_entry(kind, value)

    with pytest.raises(RiskBlocked) as raised:
        place(stocked_product, quantity=2, email=email, buyer_ip=ip)

    assert "contact the store" in str(raised.value.user_message)
    assert Order.objects.count() == 0
    assert OrderStatusChange.objects.count() == 0
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE).count() == 10
    decision = RiskDecision.objects.get()
    assert decision.order is None
    assert decision.outcome == RiskDecision.Outcome.BLOCK
    assert decision.list_entry == entry
    assert decision.stage == "create"
    assert decision.email_masked.endswith(email.rpartition("@")[2])
    assert "@" in decision.email_masked and decision.email_masked != email


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email_domain", "example.org"),  # another domain
        ("ip", "203.0.113.10"),
        ("cidr", "203.0.114.0/24"),
        ("email", "other@example.com"),
    ],
)
def test_entries_that_do_not_match_let_the_order_through(stocked_product, kind, value):
    add_entry(kind, value)
    placed = place(stocked_product, email="buyer@example.com", buyer_ip="203.0.113.9")
    assert placed.order.status == Order.Status.PENDING
    decision = RiskDecision.objects.get()
    assert (decision.order, decision.outcome) == (placed.order, RiskDecision.Outcome.ALLOW)


def test_disabled_and_expired_entries_are_ignored(stocked_product):
    from datetime import timedelta

    from django.utils import timezone

    ListEntry.objects.filter(pk=add_entry("ip", "203.0.113.9").pk).update(enabled=False)
    ListEntry.objects.filter(pk=add_entry("email", "buyer@example.com").pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert place(stocked_product, buyer_ip="203.0.113.9").order.pk


def test_entries_are_normalised_and_validated():
    assert add_entry("cidr", "203.0.113.77/24").value == "203.0.113.0/24"
    assert add_entry("ip", "2001:DB8::0001").value == "2001:db8::1"
    assert add_entry("email_domain", "@Mail.Example.").value == "mail.example"
    for kind, bad in [("ip", "203.0.113.300"), ("cidr", "nonsense"), ("email", "no-at-sign")]:
        with pytest.raises(ValidationError):
            add_entry(kind, bad)


def test_an_order_blacklisted_after_checkout_is_held_when_paid(stocked_product):
    placed = place(stocked_product, quantity=2, email="late@example.com", buyer_ip="192.0.2.4")
    add_entry("email", "late@example.com")

    pay(open_payment(placed.order))

    order = Order.objects.get(pk=placed.order.pk)
    assert order.status == Order.Status.HELD
    assert not order.deliveries.exists()
    pay_decision = RiskDecision.objects.get(order=order, stage="pay")
    assert pay_decision.outcome == RiskDecision.Outcome.HOLD
    assert pay_decision.reason == "blacklist email: late@example.com"
