"""A dispute opened after ``settle_due_orders`` selected an order, before it locked it, still
holds the settlement (and the affiliate's commission) back: the open-dispute check is made
again under the order's lock, the lock opening a dispute takes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

import disputes.selectors
from affiliates import services as affiliate_services
from affiliates.models import Referral
from disputes import services as dispute_services
from ledger import accounts, selectors, services
from ledger.models import Journal
from tests.affiliates.helpers import books_balance, enable_programme, make_affiliate, pay_order
from tests.conftest import place
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def referred_order(settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 1)
    enable_programme(product.merchant, "0.1000")
    affiliate = make_affiliate()
    attach = affiliate_services.referral_attacher(code=affiliate.code)
    return pay_order(place(product, attach=attach).order)


def due_time():
    return timezone.now() + timedelta(days=4)


def assert_not_settled(order):
    assert not Journal.objects.filter(
        order=order, kind__in=[Journal.Kind.SETTLEMENT, Journal.Kind.COMMISSION]
    ).exists()
    assert Referral.objects.get(order=order).status == Referral.Status.PENDING
    assert selectors.balance(accounts.merchant_available(order.merchant, "CNY")) == 0
    books_balance()


def test_a_dispute_opened_after_selection_holds_the_order(monkeypatch, referred_order):
    order = referred_order
    first_pass = disputes.selectors.order_ids_with_open_disputes
    calls = []

    def dispute_opened_in_the_gap(*, order_ids):
        found = first_pass(order_ids=order_ids)
        if not calls:
            # The batch's first pass has just found no dispute; the buyer opens one now.
            dispute_services.open_dispute(order_id=order.pk, reason="other", message="broken")
        calls.append(list(order_ids))
        return found

    monkeypatch.setattr(
        disputes.selectors, "order_ids_with_open_disputes", dispute_opened_in_the_gap
    )

    assert services.settle_due_orders(now=due_time()) == 0

    assert calls == [[order.pk], [order.pk]]  # the batch's pass, then under the lock
    assert_not_settled(order)


def test_settling_one_order_checks_for_an_open_dispute(referred_order):
    order = referred_order
    dispute_services.open_dispute(order_id=order.pk, reason="other", message="broken")

    assert services.settle_order(order_id=order.pk, now=due_time()) is False

    assert_not_settled(order)


def test_settling_one_order_without_a_dispute(referred_order):
    order = referred_order

    services.settle_order(order_id=order.pk, now=due_time())

    referral = Referral.objects.get(order=order)
    assert (referral.status, referral.commission) == (Referral.Status.CREDITED, Decimal("10.00"))
    assert Journal.objects.filter(order=order, kind=Journal.Kind.SETTLEMENT).exists()
    # 100 − the 5 % fee − the 10 % commission.
    assert selectors.balance(accounts.merchant_available(order.merchant, "CNY")) == Decimal("85.00")
    books_balance()
