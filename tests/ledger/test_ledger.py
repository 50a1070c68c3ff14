"""The double-entry ledger: balanced journals, written once, in the same transaction as the
business change; settlement, refunds, 先行赔付 and withdrawals move exactly the right money."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger import accounts, selectors, services
from ledger.exceptions import UnbalancedJournal, WithdrawalNotAllowed
from ledger.models import Journal, Withdrawal
from orders import services as order_services
from orders.models import Order
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def sell(merchant, price: str = "100.00") -> Order:
    product = ProductFactory(merchant=merchant, price=Decimal(price))
    add_keys(product, 1)
    order = place(product).order
    pay(open_payment(order))
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


def balances(merchant, currency="CNY"):
    found = {b.currency: b for b in selectors.merchant_balances(merchant=merchant)}
    b = found.get(currency)
    return (b.pending, b.available, b.withdrawing) if b else (0, 0, 0)


def books_balance():
    assert selectors.unbalanced_journal_ids() == []
    assert all(total == 0 for total in selectors.trial_balance().values())


def settle(order):
    services.settle_due_orders(now=timezone.now() + timedelta(days=30))
    order.refresh_from_db()


def test_a_sale_credits_the_merchant_net_of_the_fee(settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    merchant = MerchantFactory()
    order = sell(merchant, "100.00")
    assert balances(merchant) == (Decimal("95.00"), 0, 0)
    assert selectors.balance(accounts.fees("CNY")) == Decimal("5.00")
    assert selectors.balance(accounts.clearing("CNY")) == Decimal("100.00")
    journal = Journal.objects.get(kind=Journal.Kind.SALE, order=order)
    assert journal.merchant == merchant
    books_balance()


def test_merchant_fee_rate_overrides_the_default():
    merchant = MerchantFactory(fee_rate=Decimal("0.0200"))
    sell(merchant, "50.00")
    assert balances(merchant)[0] == Decimal("49.00")


def test_posting_is_idempotent_and_unbalanced_journals_are_refused():
    merchant = MerchantFactory()
    clearing, fees = accounts.clearing("CNY"), accounts.fees("CNY")
    lines = [services.Line(clearing, Decimal("1")), services.Line(fees, Decimal("-1"))]
    first = services.post(kind="sale", reference="x", currency="CNY", lines=lines)
    again = services.post(kind="sale", reference="x", currency="CNY", lines=lines)
    assert first.pk == again.pk and first.entries.count() == 2
    with pytest.raises(UnbalancedJournal):
        services.post(
            kind="sale",
            reference="y",
            currency="CNY",
            lines=[services.Line(clearing, Decimal("1")), services.Line(fees, Decimal("-0.99"))],
        )
    with pytest.raises(UnbalancedJournal):
        services.post(
            kind="sale",
            reference="z",
            currency="CNY",
            lines=[
                services.Line(clearing, Decimal("1")),
                services.Line(accounts.fees("USD"), Decimal("-1")),
            ],
        )
    assert not Journal.objects.filter(reference__in=["y", "z"]).exists()
    assert merchant.pk


def test_settlement_after_the_hold_unless_disputed(settings):
    from disputes.models import Dispute

    merchant = MerchantFactory()
    order = sell(merchant, "100.00")
    disputed = sell(merchant, "10.00")
    Dispute.objects.create(order=disputed, reason="key_invalid")

    assert services.settle_due_orders() == 0  # still inside the hold
    settle(order)

    assert balances(merchant) == (Decimal("9.50"), Decimal("95.00"), 0)
    assert services.settle_due_orders(now=timezone.now() + timedelta(days=30)) == 0
    books_balance()


def test_refunds_take_the_merchant_share_from_pending_then_available():
    merchant = MerchantFactory()
    order = sell(merchant, "100.00")
    order_services.request_refund(
        request_id="r1", order_id=order.pk, amount=Decimal("40.00"), reason="x", source="t"
    )
    assert balances(merchant) == (Decimal("57.00"), 0, 0)  # 95 - 38
    assert selectors.balance(accounts.fees("CNY")) == Decimal("3.00")  # 5 - 2
    settle(order)
    assert balances(merchant) == (0, Decimal("57.00"), 0)
    order_services.request_refund(request_id="r2", order_id=order.pk, reason="x", source="t")
    assert balances(merchant) == (0, 0, 0)
    assert selectors.balance(accounts.clearing("CNY")) == 0
    books_balance()


def test_platform_pays_first_and_claws_back_even_into_the_negative(settings):
    settings.WITHDRAWAL_MIN_AMOUNT = "10.00"
    merchant = MerchantFactory()
    order = sell(merchant, "100.00")
    settle(order)
    staff = UserFactory(is_staff=True)
    services.request_withdrawal(
        merchant=merchant,
        amount=Decimal("95.00"),
        currency="CNY",
        payout_details="bank 1",
        actor=merchant.owner,
    )
    assert balances(merchant) == (0, 0, Decimal("95.00"))

    order_services.request_refund(
        request_id="pp",
        order_id=order.pk,
        reason="bad keys",
        source="dispute",
        actor=staff,
        funded_by_platform=True,
    )

    assert balances(merchant) == (0, Decimal("-95.00"), Decimal("95.00"))
    assert selectors.balance(accounts.guarantee("CNY")) == 0  # paid, then recovered
    with pytest.raises(WithdrawalNotAllowed):
        services.request_withdrawal(
            merchant=merchant,
            amount=Decimal("100.00"),
            currency="CNY",
            payout_details="bank 1",
            actor=merchant.owner,
        )
    books_balance()


def test_withdrawal_rules(settings):
    settings.WITHDRAWAL_MIN_AMOUNT = "50.00"
    merchant = MerchantFactory()
    settle(sell(merchant, "100.00"))
    staff = UserFactory(is_staff=True)

    def ask(amount, details="alipay: me@example.com"):
        return services.request_withdrawal(
            merchant=merchant,
            amount=Decimal(amount),
            currency="CNY",
            payout_details=details,
            actor=merchant.owner,
        )

    for bad in ("49.99", "95.01", "60.001"):
        with pytest.raises(WithdrawalNotAllowed):
            ask(bad)
    with pytest.raises(WithdrawalNotAllowed):
        ask("60.00", details="  ")
    assert not Withdrawal.objects.exists()

    first = ask("60.00")
    assert balances(merchant) == (0, Decimal("35.00"), Decimal("60.00"))
    with pytest.raises(WithdrawalNotAllowed):
        ask("50.00")  # only 35 left
    services.reject_withdrawal(withdrawal_id=first.pk, note="wrong account", actor=staff)
    assert balances(merchant) == (0, Decimal("95.00"), 0)
    with pytest.raises(WithdrawalNotAllowed):
        services.mark_withdrawal_paid(withdrawal_id=first.pk, payout_reference="x", actor=staff)

    second = ask("95.00")
    with pytest.raises(WithdrawalNotAllowed):
        services.mark_withdrawal_paid(withdrawal_id=second.pk, payout_reference=" ", actor=staff)
    services.mark_withdrawal_paid(withdrawal_id=second.pk, payout_reference="BANK-1", actor=staff)
    assert balances(merchant) == (0, 0, 0)
    assert selectors.balance(accounts.payouts("CNY")) == Decimal("95.00")
    books_balance()


def test_duplicate_payment_is_held_for_the_buyer_then_refunded(
    stocked_product, django_capture_on_commit_callbacks
):
    order = place(stocked_product).order
    first, second = open_payment(order), open_payment(order)
    pay(first)
    with django_capture_on_commit_callbacks(execute=True):
        pay(second)
    assert Journal.objects.filter(kind=Journal.Kind.UNALLOCATED).count() == 1
    assert selectors.balance(accounts.suspense("CNY")) == 0
    assert selectors.balance(accounts.clearing("CNY")) == Decimal("10.00")
    books_balance()


def test_statement_lists_every_entry_of_the_merchant():
    merchant = MerchantFactory()
    other = MerchantFactory()
    order = sell(merchant, "20.00")
    sell(other, "30.00")
    settle(order)
    rows = list(selectors.statement(merchant=merchant))
    assert {row.journal.kind for row in rows} == {"sale", "settlement"}
    assert all(row.account.merchant_id == merchant.pk for row in rows)
    assert next(iter(selectors.statement(merchant=merchant, kind="sale"))).amount == Decimal(
        "-19.00"
    )
