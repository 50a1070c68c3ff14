"""The checkout's counts written out in SQL (PostgreSQL) give what the ORM form gives, over a
mix of decisions: every identity, outcome, stage, age, and orders pending, expired and paid."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from orders.models import Order
from risk import services
from risk.models import RiskDecision, RiskRule, Stage
from risk.screening import Buyer
from tests.conftest import place
from tests.factories import ProductFactory, add_keys
from tests.risk.conftest import add_rule

pytestmark = pytest.mark.django_db

IPS = ("203.0.113.7", "2001:db8::7", "198.51.100.1")
DEVICES = ("dev-a", "", "dev-b")


@pytest.fixture
def history(merchant):
    """Decisions of three buyers over the last two hours, some with orders."""
    product = ProductFactory(merchant=merchant)
    add_keys(product, 12)
    now = timezone.now()
    orders = []
    for status, expires in (
        (Order.Status.PENDING, now + timedelta(minutes=5)),
        (Order.Status.PENDING, now - timedelta(minutes=1)),  # lapsed, not expired yet by job
        (Order.Status.EXPIRED, now - timedelta(minutes=30)),
    ):
        order = place(product).order
        Order.objects.filter(pk=order.pk).update(status=status, expires_at=expires)
        orders.append(order)
    hashes = [services.email_hash(f"buyer{i}@example.com") for i in range(3)]
    outcomes = [
        RiskDecision.Outcome.ALLOW,
        RiskDecision.Outcome.CAPTCHA_PASSED,
        RiskDecision.Outcome.BLOCK,
    ]
    combos = itertools.product(range(3), outcomes, (3, 25, 70, 130), (None, *orders))
    decisions = [
        RiskDecision(
            stage=Stage.CREATE if minutes != 25 or who != 2 else Stage.PAY,
            outcome=outcome,
            ip=IPS[who],
            email_hash=hashes[who],
            device_id=DEVICES[who],
            order=order,
            created_at=now - timedelta(minutes=minutes),
        )
        for who, outcome, minutes, order in combos
    ]
    RiskDecision.objects.bulk_create(decisions)
    return now, hashes


@pytest.mark.parametrize("who", [0, 1, 2])
@pytest.mark.parametrize("with_ip", [True, False])
def test_sql_counts_equal_the_orm_counts(history, who, with_ip):
    now, hashes = history
    windows = (10, 30, 90)
    for kind, window in itertools.product(
        [
            RiskRule.Kind.VELOCITY_IP,
            RiskRule.Kind.VELOCITY_EMAIL,
            RiskRule.Kind.VELOCITY_DEVICE,
            RiskRule.Kind.UNPAID_IP,
            RiskRule.Kind.UNPAID_EMAIL,
        ],
        windows,
    ):
        add_rule(kind, 3, "block", window_minutes=window)
    rules = services.applicable_rules(merchant_id=None, stage=Stage.CREATE)
    counted = [r for r in rules if r.kind in services._COUNT_DIMENSIONS]
    buyer = Buyer(
        ip=IPS[who] if with_ip else None,
        email=f"buyer{who}@example.com",
        device_id=DEVICES[who],
        user_agent="",
    )
    kwargs = {"rules": counted, "buyer": buyer, "hashed_email": hashes[who], "now": now}

    in_sql = services._counts_in_sql(**kwargs)
    through_orm = services._counts_through_orm(**kwargs)

    assert in_sql == through_orm
    assert any(in_sql.values())  # the history is not empty for this buyer


def test_no_count_rules_no_query(history, django_assert_num_queries):
    now, hashes = history
    buyer = Buyer(ip=None, email="x@example.com", device_id="", user_agent="")
    with django_assert_num_queries(0):
        assert services._counts_in_sql(rules=[], buyer=buyer, hashed_email=hashes[0], now=now) == {}
