"""Coupons at place_order: what they take off, and every reason a code is turned down (with the
buyer's message), each leaving nothing written."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import translation

from ledger.models import Journal
from orders.models import Order
from promotions.exceptions import CouponRejected
from promotions.models import Coupon, CouponRedemption
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys
from tests.promotions.conftest import CouponFactory, window
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def reject(product, code, *, quantity=1, email="buyer@example.com") -> CouponRejected:
    """Place an order with ``code``, expect the refusal, and check it wrote nothing."""
    keys = CardKey.objects.order_by("id").values_list("id", "status", "order_id")
    before = (Order.objects.count(), CouponRedemption.objects.count(), list(keys))
    with translation.override("en"), pytest.raises(CouponRejected) as caught:
        place(product, quantity=quantity, email=email, coupon_code=code)
    assert (Order.objects.count(), CouponRedemption.objects.count(), list(keys)) == before
    return caught.value


def message(exc: CouponRejected) -> str:
    return exc.errors["coupon_code"][0]


# --- discounts ------------------------------------------------------------------------------------
def test_percent_coupon_takes_its_share_off_and_is_stored_on_the_order(stocked_product, coupon):
    placed = place(stocked_product, quantity=3, coupon_code="save10")

    order = Order.objects.get(pk=placed.order.pk)
    assert (order.unit_price, order.discount, order.amount) == (
        Decimal("10.00"),
        Decimal("3.00"),
        Decimal("27.00"),
    )
    assert order.coupon_id == coupon.pk
    redemption = CouponRedemption.objects.get()
    assert (redemption.order_id, redemption.discount, redemption.released_at) == (
        order.pk,
        Decimal("3.00"),
        None,
    )
    coupon.refresh_from_db()
    assert coupon.times_used == 1


def test_percent_discount_is_rounded_down_to_the_cent(merchant):
    product = ProductFactory(merchant=merchant, price=Decimal("3.33"))
    add_keys(product, 1)
    CouponFactory(merchant=merchant, code="P15", value=Decimal("15"))

    order = place(product, coupon_code="P15").order

    # 15% of 3.33 = 0.4995 → 0.49 off.
    assert (order.discount, order.amount) == (Decimal("0.49"), Decimal("2.84"))


def test_fixed_coupon_takes_its_amount_off(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="FIVE",
        kind=Coupon.Kind.FIXED,
        value=Decimal("5.00"),
        currency="CNY",
    )

    order = place(stocked_product, quantity=2, coupon_code=" five ").order

    assert (order.discount, order.amount) == (Decimal("5.00"), Decimal("15.00"))


def test_fixed_coupon_larger_than_the_order_leaves_one_cent(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="BIG",
        kind=Coupon.Kind.FIXED,
        value=Decimal("50.00"),
        currency="CNY",
    )

    order = place(stocked_product, coupon_code="BIG").order

    assert (order.discount, order.amount) == (Decimal("9.99"), Decimal("0.01"))


def test_no_code_means_no_discount(stocked_product, coupon):
    order = place(stocked_product, quantity=2).order

    assert (order.discount, order.amount, order.coupon_id) == (
        Decimal("0.00"),
        Decimal("20.00"),
        None,
    )
    assert CouponRedemption.objects.count() == 0


def test_ledger_records_the_discounted_amount_and_the_fee_on_it(stocked_product, coupon):
    stocked_product.merchant.fee_rate = Decimal("0.05")
    stocked_product.merchant.save(update_fields=["fee_rate"])
    order = place(stocked_product, quantity=3, coupon_code="SAVE10").order
    payment = open_payment(order)
    assert payment.amount == Decimal("27.00")

    assert pay(payment).status_code == 200

    journal = Journal.objects.get(kind=Journal.Kind.SALE, order_id=order.pk)
    # Clearing takes what the buyer paid; the 5% fee is on that, not on the 30.00 list price.
    assert sorted(journal.entries.values_list("amount", flat=True)) == [
        Decimal("-25.65"),
        Decimal("-1.35"),
        Decimal("27.00"),
    ]
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED


# --- scope ----------------------------------------------------------------------------------------
def test_product_scoped_coupon_applies_to_its_products_and_their_options(merchant):
    listing = ProductFactory(merchant=merchant)
    option = ProductFactory(merchant=merchant, variant_of=listing)
    other = ProductFactory(merchant=merchant)
    for product in (listing, option, other):
        add_keys(product, 2)
    CouponFactory(merchant=merchant, code="ONLY", scope=Coupon.Scope.PRODUCTS, products=[listing])

    assert place(listing, coupon_code="ONLY").order.discount == Decimal("1.00")
    assert place(option, coupon_code="ONLY").order.discount == Decimal("1.00")
    exc = reject(other, "ONLY")
    assert exc.reason == "not_applicable"
    assert message(exc) == "This coupon code does not apply to this product."


def test_coupon_in_another_currency_does_not_apply(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="USD5",
        kind=Coupon.Kind.FIXED,
        value=Decimal("5"),
        currency="USD",
    )

    assert reject(stocked_product, "USD5").reason == "not_applicable"


def test_code_of_another_store_is_invalid(stocked_product):
    CouponFactory(merchant=MerchantFactory(), code="ELSEWHERE")

    exc = reject(stocked_product, "ELSEWHERE")

    assert exc.reason == "invalid"
    assert message(exc) == "This coupon code is not valid."


def test_unknown_and_inactive_codes_are_invalid(stocked_product):
    CouponFactory(merchant=stocked_product.merchant, code="OFF", is_active=False)

    assert reject(stocked_product, "NOPE").reason == "invalid"
    assert reject(stocked_product, "OFF").reason == "invalid"


# --- minimum, window, limits ----------------------------------------------------------------------
def test_minimum_order_amount_counts_before_the_discount(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="MIN30",
        currency="CNY",
        min_order_amount=Decimal("30.00"),
    )

    exc = reject(stocked_product, "MIN30", quantity=2)
    assert exc.reason == "minimum"
    assert message(exc) == "This coupon code needs an order of at least 30.00 CNY."

    order = place(stocked_product, quantity=3, coupon_code="MIN30").order
    assert (order.discount, order.amount) == (Decimal("3.00"), Decimal("27.00"))


def test_expired_coupon_is_refused(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="OLD",
        **window(starts_in=timedelta(days=-10), ends_in=timedelta(seconds=-1)),
    )

    exc = reject(stocked_product, "OLD")

    assert exc.reason == "expired"
    assert message(exc) == "This coupon code has expired."


def test_coupon_not_yet_valid_is_refused(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant, code="SOON", **window(starts_in=timedelta(hours=1))
    )

    exc = reject(stocked_product, "SOON")

    assert exc.reason == "not_yet_valid"
    assert message(exc) == "This coupon code is not valid yet."


def test_coupon_inside_its_window_applies(stocked_product):
    CouponFactory(
        merchant=stocked_product.merchant,
        code="NOW",
        **window(starts_in=timedelta(hours=-1), ends_in=timedelta(hours=1)),
    )

    assert place(stocked_product, coupon_code="NOW").order.discount == Decimal("1.00")


def test_used_up_coupon_is_refused(stocked_product):
    coupon = CouponFactory(merchant=stocked_product.merchant, code="TWICE", usage_limit=2)
    place(stocked_product, email="a@example.com", coupon_code="TWICE")
    place(stocked_product, email="b@example.com", coupon_code="TWICE")

    exc = reject(stocked_product, "TWICE", email="c@example.com")

    assert exc.reason == "used_up"
    assert message(exc) == "This coupon code has been used up."
    coupon.refresh_from_db()
    assert coupon.times_used == 2
    assert CouponRedemption.objects.filter(coupon=coupon).count() == 2


def test_per_buyer_limit_counts_the_email_case_insensitively(stocked_product):
    CouponFactory(merchant=stocked_product.merchant, code="ONCE", per_buyer_limit=1)
    place(stocked_product, email="Buyer@Example.com", coupon_code="ONCE")

    exc = reject(stocked_product, "ONCE", email=" buyer@EXAMPLE.com")

    assert exc.reason == "buyer_limit"
    assert message(exc) == "You have already used this coupon code as often as allowed."
    # Another buyer still may.
    assert place(stocked_product, email="other@example.com", coupon_code="ONCE").order.coupon_id


def test_rejection_message_is_translated(stocked_product):
    with translation.override("zh-hans"), pytest.raises(CouponRejected) as caught:
        place(stocked_product, coupon_code="NOPE")
    # The message goes through gettext (the catalogue may not carry it yet): it is a str
    # produced under the active language, never a lazy object.
    assert isinstance(caught.value.errors["coupon_code"][0], str)


# --- reseller listings: the supplier's coupons and tiers do not reach the reseller's price ------
def test_a_coupon_is_refused_on_a_resellers_price_and_nothing_is_written(stocked_product):
    CouponFactory(merchant=stocked_product.merchant, code="SUPPLIER50", value=Decimal("50"))
    keys = list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))

    with translation.override("en"), pytest.raises(CouponRejected) as caught:
        place(stocked_product, unit_price=Decimal("12.00"), coupon_code="SUPPLIER50")

    assert caught.value.reason == "not_applicable"
    assert message(caught.value) == "This coupon code does not apply to this product."
    assert Order.objects.count() == 0
    assert list(CardKey.objects.order_by("id").values_list("id", "status", "order_id")) == keys


def test_resale_checkout_pays_the_resellers_price_whatever_the_suppliers_promotions(
    stocked_product, client
):
    from django.urls import reverse

    from affiliates import services as affiliate_services
    from promotions.models import PriceTier
    from tests.affiliates.helpers import listing, offer

    CouponFactory(merchant=stocked_product.merchant, code="SUPPLIER50", value=Decimal("50"))
    PriceTier.objects.create(product=stocked_product, min_quantity=2, unit_price=Decimal("1.00"))
    reseller = MerchantFactory()
    item = listing(reseller, offer(stocked_product, "8.00"), "12.00")

    result = affiliate_services.checkout_resale(
        listing=item,
        quantity=2,
        email="buyer@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )

    order = result.order
    assert (order.unit_price, order.discount, order.amount, order.coupon_id) == (
        Decimal("12.00"),
        Decimal("0.00"),
        Decimal("24.00"),
        None,
    )
    page = client.get(reverse("affiliates:resale_product", args=[reseller.slug, item.pk]))
    assert page.status_code == 200
    assert 'name="coupon_code"' not in page.content.decode()
