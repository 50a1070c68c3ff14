"""Partial refunds share out cumulatively: each refund's fee share (and, for a resale, the
reseller's part of the seller share) is that share of everything refunded so far less what
earlier refunds already gave back, so no rounding is left behind: once the sale is refunded in
full, every account it credited is back at exactly zero, however many parts it took."""

from decimal import Decimal

import pytest

from affiliates import services as affiliate_services
from ledger import accounts, selectors, services
from ledger.models import Entry, Journal
from orders import services as order_services
from orders.models import Order, Refund
from tests.affiliates.helpers import books_balance, listing, offer, pay_order, settle_all
from tests.conftest import place
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db

PARTS = [Decimal("0.07")] * 10  # and the rest


def refund_in_parts(order: Order, *, funded_by_platform: bool = False, settle_after: int = -1):
    for index, part in enumerate([*PARTS, order.amount - sum(PARTS)]):
        order_services.request_refund(
            request_id=f"part-{index}",
            order_id=order.pk,
            reason="parts",
            source="staff",
            amount=part,
            funded_by_platform=funded_by_platform,
        )
        books_balance()
        if index == settle_after:
            settle_all()
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED


def balance(account) -> Decimal:
    return selectors.balance(account)


@pytest.mark.parametrize("funded_by_platform", [False, True])
def test_an_order_refunded_in_many_parts_gives_the_whole_fee_back(settings, funded_by_platform):
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("10.01"))
    add_keys(product, 1)
    order = pay_order(place(product).order)
    merchant = order.merchant
    assert balance(accounts.fees("CNY")) == Decimal("0.50")

    refund_in_parts(order, funded_by_platform=funded_by_platform)

    assert balance(accounts.fees("CNY")) == 0
    assert balance(accounts.merchant_pending(merchant, "CNY")) == 0
    assert balance(accounts.merchant_available(merchant, "CNY")) == 0
    assert balance(accounts.guarantee("CNY")) == 0
    fee_back = [
        entry.amount
        for entry in Entry.objects.filter(
            account=accounts.fees("CNY"), journal__kind__in=services.SALE_REFUND_KINDS
        ).order_by("journal_id")
    ]
    # Each part gives some of the fee back (never takes), and together they give all of it.
    assert sum(fee_back) == Decimal("0.50")
    assert all(amount >= 0 for amount in fee_back)


@pytest.mark.parametrize(
    ("funded_by_platform", "settle_after"),
    [(False, -1), (True, -1), (False, 4), (True, 4)],
    ids=["merchant-funded", "platform-funded", "settled-midway", "platform-funded-settled-midway"],
)
def test_a_resale_refunded_in_many_parts_leaves_nothing_behind(
    settings, funded_by_platform, settle_after
):
    settings.PLATFORM_FEE_RATE = "0.05"
    supply = ProductFactory(price=Decimal("10.00"))
    add_keys(supply, 5)
    reseller = MerchantFactory()
    item = listing(reseller, offer(supply, "3.33"), "10.01")
    result = affiliate_services.checkout_resale(
        listing=item,
        quantity=3,
        email="buyer@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )
    order = pay_order(result.order)
    assert order.amount == Decimal("30.03")
    supplier = supply.merchant
    # Sale: the supplier is owed 9.99 − 0.50, the reseller 20.04 − 1.00, the platform 1.50.
    assert balance(accounts.merchant_pending(supplier, "CNY")) == Decimal("9.49")
    assert balance(accounts.merchant_pending(reseller, "CNY")) == Decimal("19.04")

    refund_in_parts(order, funded_by_platform=funded_by_platform, settle_after=settle_after)

    for merchant in (supplier, reseller):
        assert balance(accounts.merchant_pending(merchant, "CNY")) == 0
        assert balance(accounts.merchant_available(merchant, "CNY")) == 0
    assert balance(accounts.fees("CNY")) == 0
    assert balance(accounts.guarantee("CNY")) == 0
    books_balance()


def test_recording_a_refund_again_writes_nothing(settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("10.01"))
    add_keys(product, 1)
    order = pay_order(place(product).order)
    refund_in_parts(order)
    refund = Refund.objects.get(request_id="part-3")
    entries = Entry.objects.count()

    again = services.record_refund(
        refund_id=refund.pk,
        order_id=order.pk,
        merchant=order.merchant,
        amount=refund.amount,
        currency=order.currency,
        of_sale=True,
    )

    assert again == Journal.objects.get(kind=Journal.Kind.REFUND, reference=f"refund:{refund.pk}")
    assert Entry.objects.count() == entries
    books_balance()
