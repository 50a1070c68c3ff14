"""Property: any sequence of referred sales, resold sales, settlements, refunds (merchant- or
platform-funded) and affiliate withdrawals keeps every journal at zero, every account owned as
its code says, and the affiliate's and reseller's money equal to a simple model of it."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affiliates import services
from affiliates.exceptions import AffiliateWithdrawalNotAllowed
from affiliates.models import Referral
from ledger import accounts, selectors
from ledger import services as ledger_services
from ledger.models import Entry
from tests.affiliates.helpers import enable_programme, listing, make_affiliate, offer, pay_order
from tests.conftest import place
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.ledger.helpers import refund_share_of_what_is_left

pytestmark = pytest.mark.django_db

CENT = Decimal("0.01")
RATE = Decimal("0.1000")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("referred_sale"), st.integers(min_value=1, max_value=3)),
        st.tuples(st.just("resale"), st.integers(min_value=1, max_value=3)),
        st.tuples(st.just("settle"), st.just(0)),
        st.tuples(st.just("refund"), st.integers(min_value=1, max_value=100)),
        st.tuples(st.just("platform_refund"), st.integers(min_value=1, max_value=100)),
        st.tuples(st.just("withdraw"), st.integers(min_value=1, max_value=30)),
    ),
    min_size=1,
    max_size=8,
)


def q(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, capped=st.booleans())
def test_any_sequence_keeps_affiliate_and_reseller_books_straight(fee_settings, ops, capped):
    # capped: the supplier pays a 60% fee and offers 50% commission, so the commission is
    # capped at the 40% the merchant keeps.
    rate = Decimal("0.5000") if capped else RATE
    supplier = MerchantFactory(fee_rate=Decimal("0.6000") if capped else None)
    reseller = MerchantFactory()
    enable_programme(supplier, str(rate))
    affiliate = make_affiliate(f"aff-{supplier.pk}@example.com")
    product = ProductFactory(merchant=supplier, price=Decimal("20.00"))
    add_keys(product, 30)
    item = listing(reseller, offer(product, "15.00"), "25.00")
    staff = UserFactory(is_staff=True)
    far_future = timezone.now() + timedelta(days=365)
    orders: dict[int, dict[str, Decimal | bool]] = {}
    model_margin = Decimal(0)  # the reseller's pending + available

    for op, value in ops:
        if op == "referred_sale":
            order = place(
                product, quantity=value, attach=services.referral_attacher(code=affiliate.code)
            ).order
            pay_order(order)
            orders[order.pk] = {"amount": order.amount, "refunded": Decimal(0), "resale": False}
        elif op == "resale":
            order = services.checkout_resale(
                listing=item,
                quantity=value,
                email="b@example.com",
                gateway_name="sandbox",
                base_url="http://testserver/",
            ).order
            pay_order(order)
            orders[order.pk] = {"amount": order.amount, "refunded": Decimal(0), "resale": True}
            model_margin += Decimal("9.50") * value  # a margin of 10, less the 5% fee
        elif op == "settle":
            ledger_services.settle_due_orders(now=far_future)
        elif op in ("refund", "platform_refund") and orders:
            refund = refund_share_of_what_is_left(op=op, orders=orders, value=value, staff=staff)
            if refund is None:
                continue
            info, amount = refund
            info["refunded"] += amount
            if info["resale"]:
                # The reseller kept 9.50 of every 25 paid: it gives back that share.
                model_margin -= q(amount * Decimal("9.5") / Decimal("25"))
        elif op == "withdraw":
            try:
                services.request_affiliate_withdrawal(
                    affiliate=affiliate,
                    amount=Decimal(value),
                    currency="CNY",
                    payout_details="bank",
                )
            except AffiliateWithdrawalNotAllowed:
                available = selectors.balance(accounts.affiliate_available(affiliate, "CNY"))
                assert Decimal(value) > available
                continue

        assert selectors.unbalanced_journal_ids() == []
        assert all(total == 0 for total in selectors.trial_balance().values())
        assert selectors.misowned_account_ids() == []
        credited = sum(
            (r.commission - r.reversed_amount for r in affiliate.referrals.all()), Decimal(0)
        )
        held = selectors.balance(
            accounts.affiliate_available(affiliate, "CNY")
        ) + selectors.balance(accounts.affiliate_withdrawing(affiliate, "CNY"))
        assert held == credited, (op, value)
        for referral in affiliate.referrals.select_related("order"):
            refunded = orders[referral.order_id]["refunded"]
            if referral.status == Referral.Status.CREDITED:
                held_now = referral.commission - referral.reversed_amount
                merchant_net = services._merchant_net_of_order(supplier, referral.order_id, "CNY")
                assert referral.commission <= q(referral.order.amount * rate)
                assert 0 <= held_now <= merchant_net
                expected_left = min(q((referral.order.amount - refunded) * rate), merchant_net)
                assert abs(held_now - expected_left) <= CENT
            elif referral.status == Referral.Status.VOID:
                assert referral.commission == 0 and refunded == referral.order.amount
        # What the supplier is owed never goes below zero on any order.
        for order_id in orders:
            owed = -sum(
                (
                    e.amount
                    for e in Entry.objects.filter(
                        account=accounts.merchant_pending(supplier, "CNY"),
                        journal__order_id=order_id,
                    )
                ),
                Decimal(0),
            )
            assert owed >= 0, (op, value, order_id)
        margin = selectors.balance(accounts.merchant_pending(reseller, "CNY")) + selectors.balance(
            accounts.merchant_available(reseller, "CNY")
        )
        assert abs(margin - model_margin) <= CENT * len(orders), (op, value)


@pytest.fixture
def fee_settings(settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    settings.WITHDRAWAL_MIN_AMOUNT = "1.00"
    return settings
