"""A referred order paid twice: the duplicate payment is refunded automatically (suspense →
clearing, naming no merchant). That refund never belonged to the sale, so it neither voids nor
reverses the affiliate's commission, nor lowers the dashboard's estimate; a later refund of the
sale itself reverses the commission in proportion only."""

from decimal import Decimal

import pytest

from affiliates import selectors, services
from affiliates.models import Referral
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger.models import Journal
from orders import services as order_services
from orders.models import Order, Refund
from tests.affiliates.helpers import books_balance, enable_programme, make_affiliate, settle_all
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def affiliate_balance(affiliate) -> Decimal:
    return ledger_selectors.balance(accounts.affiliate_available(affiliate, "CNY"))


@pytest.fixture
def paid_twice(settings, django_capture_on_commit_callbacks):
    """A referred 100.00 order, both of whose payments were paid; the second refunded."""
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 3)
    enable_programme(product.merchant, "0.1000")
    affiliate = make_affiliate()
    order = place(product, attach=services.referral_attacher(code=affiliate.code)).order
    # Two payments opened before either was paid (two tabs, a retried checkout).
    first, second = open_payment(order), open_payment(order)
    assert first.pk != second.pk
    assert pay(first).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(second).status_code == 200
    duplicate = Refund.objects.get(payment=second)
    assert duplicate.status == Refund.Status.SUCCEEDED
    journal = Journal.objects.get(kind=Journal.Kind.REFUND, order=order)
    assert journal.merchant_id is None  # not a refund of the sale
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order, affiliate


def test_the_duplicate_refund_leaves_estimate_and_commission_intact(paid_twice):
    order, affiliate = paid_twice
    (figures,) = selectors.affiliate_summary(affiliate=affiliate).balances
    assert figures.pending_commission == Decimal("10.00")

    settle_all()

    referral = Referral.objects.get(order=order)
    assert (referral.status, referral.commission) == (Referral.Status.CREDITED, Decimal("10.00"))
    assert affiliate_balance(affiliate) == Decimal("10.00")
    merchant_available = accounts.merchant_available(order.merchant, "CNY")
    assert ledger_selectors.balance(merchant_available) == Decimal("85.00")  # 100 − 5 fee − 10
    books_balance()


def test_refunds_of_the_sale_after_it_reverse_in_proportion(paid_twice):
    order, affiliate = paid_twice
    settle_all()

    order_services.request_refund(
        request_id="part", order_id=order.pk, reason="x", source="staff", amount=Decimal("1.00")
    )

    assert affiliate_balance(affiliate) == Decimal("9.90")
    assert Referral.objects.get(order=order).reversed_amount == Decimal("0.10")
    # The fee share of the sale's refund counts the sale's refunds only.
    assert ledger_selectors.balance(accounts.fees("CNY")) == Decimal("4.95")
    books_balance()

    order_services.request_refund(request_id="rest", order_id=order.pk, reason="x", source="staff")

    referral = Referral.objects.get(order=order)
    assert referral.reversed_amount == referral.commission == Decimal("10.00")
    assert affiliate_balance(affiliate) == 0
    assert ledger_selectors.balance(accounts.merchant_available(order.merchant, "CNY")) == 0
    assert ledger_selectors.balance(accounts.merchant_pending(order.merchant, "CNY")) == 0
    assert ledger_selectors.balance(accounts.fees("CNY")) == 0
    books_balance()


def test_a_partial_refund_before_settlement_lowers_the_commission_only_by_itself(paid_twice):
    order, affiliate = paid_twice
    order_services.request_refund(
        request_id="part", order_id=order.pk, reason="x", source="staff", amount=Decimal("20.00")
    )
    (figures,) = selectors.affiliate_summary(affiliate=affiliate).balances
    assert figures.pending_commission == Decimal("8.00")

    settle_all()

    referral = Referral.objects.get(order=order)
    assert (referral.status, referral.commission) == (Referral.Status.CREDITED, Decimal("8.00"))
    assert affiliate_balance(affiliate) == Decimal("8.00")
    books_balance()
