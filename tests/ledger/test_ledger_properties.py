"""Property: any sequence of sales, fees, settlements, refunds (merchant- or platform-funded),
claw-backs and withdrawals keeps every journal at zero, the books balanced, the merchant's
balances equal to a simple model of them, and no withdrawal above the available balance."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import selectors, services
from ledger.exceptions import WithdrawalNotAllowed
from ledger.models import Withdrawal
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.ledger.helpers import refund_share_of_what_is_left
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db

CENT = Decimal("0.01")
FEE = Decimal("0.05")

amounts = st.decimals(min_value=Decimal("1.00"), max_value=Decimal("500.00"), places=2)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), amounts),
        st.tuples(st.just("settle"), st.just(Decimal(0))),
        st.tuples(st.just("refund"), st.integers(min_value=1, max_value=100)),
        st.tuples(st.just("platform_refund"), st.integers(min_value=1, max_value=100)),
        st.tuples(st.just("withdraw"), amounts),
        st.tuples(st.just("pay_out"), st.just(Decimal(0))),
        st.tuples(st.just("reject"), st.just(Decimal(0))),
    ),
    min_size=1,
    max_size=8,
)


class Model:
    """The merchant's money as a person would work it out."""

    def __init__(self) -> None:
        self.pending = Decimal(0)
        self.available = Decimal(0)
        self.withdrawing = Decimal(0)
        self.orders: dict[int, dict[str, Decimal | bool]] = {}


def fee_of(amount: Decimal) -> Decimal:
    return (amount * FEE).quantize(CENT, rounding=ROUND_HALF_UP)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_any_sequence_keeps_the_books_balanced(django_settings_override, ops):
    merchant = MerchantFactory()
    staff = UserFactory(is_staff=True)
    model = Model()
    far_future = timezone.now() + timedelta(days=365)

    for op, value in ops:
        if op == "sale":
            product = ProductFactory(merchant=merchant, price=value)
            add_keys(product, 1)
            order = place(product).order
            pay(open_payment(order))
            net = value - fee_of(value)
            model.pending += net
            model.orders[order.pk] = {
                "amount": value,
                "fee": fee_of(value),
                "refunded": Decimal(0),
                "fee_back": Decimal(0),
                "settled": False,
                "net_left": net,
            }
        elif op == "settle":
            services.settle_due_orders(now=far_future)
            for info in model.orders.values():
                if not info["settled"] and info["net_left"] > 0:
                    model.pending -= info["net_left"]
                    model.available += info["net_left"]
                info["settled"] = True
        elif op in ("refund", "platform_refund") and model.orders:
            refund = refund_share_of_what_is_left(
                op=op, orders=model.orders, value=value, staff=staff
            )
            if refund is None:
                continue
            info, amount = refund
            # Cumulative: the fee share of everything refunded so far, less what was given back.
            fee_share = (info["fee"] * (info["refunded"] + amount) / info["amount"]).quantize(
                CENT, rounding=ROUND_HALF_UP
            ) - info["fee_back"]
            info["fee_back"] += fee_share
            share = amount - fee_share
            info["refunded"] += amount
            if info["settled"]:
                model.available -= share
            else:
                model.pending -= share
                info["net_left"] -= share
        elif op == "withdraw":
            before = (model.pending, model.available, model.withdrawing)
            try:
                services.request_withdrawal(
                    merchant=merchant,
                    amount=value,
                    currency="CNY",
                    payout_details="bank",
                    actor=merchant.owner,
                )
            except WithdrawalNotAllowed:
                # Refused only when it would overdraw (or is below the minimum).
                assert value > model.available or value < Decimal("1.00")
                assert (model.pending, model.available, model.withdrawing) == before
                continue
            assert value <= model.available, "withdrew more than was available"
            model.available -= value
            model.withdrawing += value
        elif op in ("pay_out", "reject"):
            withdrawal = Withdrawal.objects.filter(
                merchant=merchant, status=Withdrawal.Status.REQUESTED
            ).first()
            if withdrawal is None:
                continue
            if op == "pay_out":
                services.mark_withdrawal_paid(
                    withdrawal_id=withdrawal.pk, payout_reference="P", actor=staff
                )
                model.withdrawing -= withdrawal.amount
            else:
                services.reject_withdrawal(withdrawal_id=withdrawal.pk, note="n", actor=staff)
                model.withdrawing -= withdrawal.amount
                model.available += withdrawal.amount

        assert selectors.unbalanced_journal_ids() == []
        assert all(total == 0 for total in selectors.trial_balance().values())
        found = {b.currency: b for b in selectors.merchant_balances(merchant=merchant)}
        actual = found.get("CNY")
        got = (actual.pending, actual.available, actual.withdrawing) if actual else (0, 0, 0)
        assert got == (model.pending, model.available, model.withdrawing), (op, value)


@pytest.fixture
def django_settings_override(settings):
    settings.PLATFORM_FEE_RATE = str(FEE)
    settings.WITHDRAWAL_MIN_AMOUNT = "1.00"
    return settings
