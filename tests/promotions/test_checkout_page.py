"""The coupon field of the product page's form, and the discount on the order page."""

from decimal import Decimal

import pytest
from django.urls import reverse

from orders import tokens
from orders.models import Order, Payment
from promotions.models import CouponRedemption
from shop.models import CardKey
from tests.factories import MerchantFactory
from tests.promotions.conftest import CouponFactory

pytestmark = pytest.mark.django_db


def product_url(product):
    return reverse("shop:product", args=[product.merchant.slug, product.slug])


def buy(client, product, **overrides):
    data = {
        "option": product.pk,
        "quantity": 1,
        "email": "buyer@example.com",
        "query_password": "",
        "gateway": "sandbox",
        **overrides,
    }
    return client.post(product_url(product), data, HTTP_ACCEPT_LANGUAGE="en")


def nothing_written(keys_before) -> bool:
    return (
        Order.objects.count() == 0
        and Payment.objects.count() == 0
        and CouponRedemption.objects.count() == 0
        and list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))
        == keys_before
    )


def test_product_page_has_a_coupon_field(client, stocked_product):
    response = client.get(product_url(stocked_product))

    assert response.status_code == 200
    assert "coupon_code" in response.context["form"].fields
    assert 'name="coupon_code"' in response.content.decode()


def test_valid_code_discounts_the_order_and_its_payment(client, stocked_product, coupon):
    response = buy(client, stocked_product, quantity=2, coupon_code="save10")

    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.discount, order.amount, order.coupon_id) == (
        Decimal("2.00"),
        Decimal("18.00"),
        coupon.pk,
    )
    assert Payment.objects.get().amount == Decimal("18.00")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"code": "OTHER"}, "This coupon code is not valid."),
        ({"code": "SAVE10", "is_active": False}, "This coupon code is not valid."),
        ({"code": "SAVE10", "usage_limit": 0}, "This coupon code has been used up."),
        (
            {"code": "SAVE10", "currency": "CNY", "min_order_amount": Decimal("100")},
            "This coupon code needs an order of at least 100.00 CNY.",
        ),
    ],
)
def test_bad_code_rerenders_the_form_with_the_reason_and_writes_nothing(
    client, stocked_product, setup, expected
):
    CouponFactory(merchant=stocked_product.merchant, **setup)
    keys_before = list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))

    response = buy(client, stocked_product, coupon_code="SAVE10")

    assert response.status_code == 400
    assert [str(m) for m in response.context["form"].errors["coupon_code"]] == [expected]
    assert expected in response.content.decode()
    assert nothing_written(keys_before)


def test_code_from_another_store_is_invalid_on_the_page(client, stocked_product):
    CouponFactory(merchant=MerchantFactory(), code="SAVE10")
    keys_before = list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))

    response = buy(client, stocked_product, coupon_code="SAVE10")

    assert response.status_code == 400
    assert response.context["form"].errors["coupon_code"] == ["This coupon code is not valid."]
    assert nothing_written(keys_before)


def test_order_page_shows_unit_price_discount_and_code(client, stocked_product, coupon):
    buy(client, stocked_product, quantity=3, coupon_code="SAVE10")
    order = Order.objects.get()
    token = tokens.derive_token(number=order.number, nonce=order.token_nonce)

    page = client.get(reverse("orders:detail", args=[token]), HTTP_ACCEPT_LANGUAGE="en")

    text = page.content.decode()
    assert page.status_code == 200
    assert "−3.00 CNY" in text
    assert "coupon SAVE10" in text
    assert "27.00 CNY" in text


def test_order_page_without_discount_shows_no_discount_row(client, stocked_product):
    buy(client, stocked_product)
    order = Order.objects.get()
    token = tokens.derive_token(number=order.number, nonce=order.token_nonce)

    page = client.get(reverse("orders:detail", args=[token]), HTTP_ACCEPT_LANGUAGE="en")

    assert page.status_code == 200
    assert "Discount" not in page.content.decode()


# --- "Check price": the discount shown before buying, nothing written ----------------------------
def test_check_price_shows_the_discount_and_places_nothing(client, stocked_product, coupon):
    keys_before = list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))

    response = buy(client, stocked_product, quantity=2, coupon_code="save10", check_price="1")

    assert response.status_code == 200
    check = response.context["price_check"]
    assert (check.quote.subtotal, check.quote.discount, check.quote.amount) == (
        Decimal("20.00"),
        Decimal("2.00"),
        Decimal("18.00"),
    )
    page = response.content.decode()
    assert 'data-testid="price-check"' in page
    assert "−2.00 CNY" in page
    assert "18.00 CNY" in page
    assert "coupon SAVE10" in page
    assert nothing_written(keys_before)
    coupon.refresh_from_db()
    assert coupon.times_used == 0
    # The form keeps what was typed, so "Buy now" places the order just checked.
    assert 'value="save10"' in page


def test_check_price_without_a_code_shows_the_tier_price(client, stocked_product):
    from tests.promotions.conftest import PriceTierFactory

    PriceTierFactory(product=stocked_product, min_quantity=2, unit_price=Decimal("9.50"))

    response = buy(client, stocked_product, quantity=2, check_price="1")

    assert response.status_code == 200
    quote = response.context["price_check"].quote
    assert (quote.unit_price, quote.discount, quote.amount, quote.coupon) == (
        Decimal("9.50"),
        Decimal("0.00"),
        Decimal("19.00"),
        None,
    )
    assert "Discount" not in response.content.decode().split('data-testid="price-check"')[1]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"coupon_code": "NOPE"}, "coupon_code", "This coupon code is not valid."),
        ({"quantity": 999}, "quantity", "Choose between 1 and"),
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
    ],
)
def test_check_price_shows_why_it_cannot_price(client, stocked_product, overrides, field, message):
    keys_before = list(CardKey.objects.order_by("id").values_list("id", "status", "order_id"))

    response = buy(client, stocked_product, check_price="1", **overrides)

    assert response.status_code == 400
    assert response.context["price_check"] is None
    assert any(message in error for error in response.context["form"].errors[field])
    assert 'data-testid="price-check"' not in response.content.decode()
    assert nothing_written(keys_before)


def test_check_price_counts_the_buyers_own_uses(client, stocked_product):
    CouponFactory(merchant=stocked_product.merchant, code="ONCE", per_buyer_limit=1)
    assert buy(client, stocked_product, coupon_code="ONCE").status_code == 302

    again = buy(
        client, stocked_product, coupon_code="once", email=" BUYER@example.com", check_price="1"
    )
    other = buy(
        client, stocked_product, coupon_code="once", email="other@example.com", check_price="1"
    )

    assert again.status_code == 400
    assert again.context["form"].errors["coupon_code"] == [
        "You have already used this coupon code as often as allowed."
    ]
    assert other.status_code == 200
    assert other.context["price_check"].quote.discount == Decimal("1.00")


def test_order_page_shows_the_wholesale_unit_price_without_a_coupon(client, stocked_product):
    from tests.promotions.conftest import PriceTierFactory

    PriceTierFactory(product=stocked_product, min_quantity=3, unit_price=Decimal("9.00"))
    buy(client, stocked_product, quantity=3)
    order = Order.objects.get()
    token = tokens.derive_token(number=order.number, nonce=order.token_nonce)

    page = client.get(reverse("orders:detail", args=[token]), HTTP_ACCEPT_LANGUAGE="en")

    text = page.content.decode()
    assert '<dd class="unit-price">9.00 CNY</dd>' in text
    assert "27.00 CNY" in text
    assert "Discount" not in text
