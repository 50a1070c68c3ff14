"""Counters moved by other transactions (a coupon's ``times_used``, raised by each redemption;
a reusable product's ``reusable_sold``, raised by fulfilment) survive an admin edit made while
they moved: the edit saves every other column, never the counter as it was read when the
request loaded the row. Otherwise a coupon with a used-up limit becomes usable again."""

import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection
from django.db.models import F
from django.test import Client

from merchants import admin as merchants_admin
from orders.exceptions import InvalidOrderInput
from promotions import admin as promotions_admin
from promotions.models import Coupon, CouponRedemption
from shop import admin as shop_admin
from shop.models import Product
from tests.conftest import place, verify_otp
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.promotions.conftest import CouponFactory
from tests.promotions.test_admin import coupon_post


def merchant_client(merchant) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    return client


def staff_client() -> Client:
    user = UserFactory(is_staff=True, is_superuser=True)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    verify_otp(client, user)
    return client


def while_saving(monkeypatch, admin_class, action) -> None:
    """Run ``action`` in the middle of the admin's POST: after the row was loaded and the form
    validated, before the object is saved."""
    original = admin_class.save_form

    def save_form(self, request, form, change):
        action()
        return original(self, request, form, change)

    monkeypatch.setattr(admin_class, "save_form", save_form)


@pytest.mark.django_db(transaction=True)
def test_a_redemption_during_a_coupon_edit_stays_counted(monkeypatch):
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 5)
    coupon = CouponFactory(merchant=product.merchant, code="ONCE", usage_limit=1)

    def buyer_redeems_it():
        # Another request, on its own connection, commits a redemption meanwhile.
        def buy():
            close_old_connections()
            try:
                place(product, email="first@example.com", coupon_code="ONCE")
            finally:
                connection.close()

        thread = threading.Thread(target=buy)
        thread.start()
        thread.join()

    while_saving(monkeypatch, promotions_admin.MerchantCouponAdmin, buyer_redeems_it)
    response = merchant_client(product.merchant).post(
        f"/merchant/promotions/coupon/{coupon.pk}/change/",
        coupon_post(code="ONCE", usage_limit="1", value="15"),
    )
    monkeypatch.undo()

    assert response.status_code == 302
    coupon.refresh_from_db()
    assert coupon.value == Decimal("15")  # the edit was saved
    assert CouponRedemption.objects.filter(coupon=coupon, released_at__isnull=True).count() == 1
    assert coupon.times_used == 1
    # The limit still holds: a second buyer is refused the used-up code.
    with pytest.raises(InvalidOrderInput):
        place(product, email="second@example.com", coupon_code="ONCE")


@pytest.mark.django_db
def test_staff_coupon_edit_keeps_the_live_count(monkeypatch):
    coupon = CouponFactory(code="TWICE", usage_limit=2)

    def redeemed():
        Coupon.objects.filter(pk=coupon.pk).update(times_used=F("times_used") + 1)

    while_saving(monkeypatch, promotions_admin.CouponAdmin, redeemed)
    response = staff_client().post(
        f"/admin/promotions/coupon/{coupon.pk}/change/",
        {
            **coupon_post(code="TWICE", usage_limit="2", value="12"),
            "merchant": str(coupon.merchant_id),
            "redemptions-TOTAL_FORMS": "0",
            "redemptions-INITIAL_FORMS": "0",
            "redemptions-MIN_NUM_FORMS": "0",
            "redemptions-MAX_NUM_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    coupon.refresh_from_db()
    assert (coupon.value, coupon.times_used) == (Decimal("12"), 1)


def reusable_product(**kwargs) -> Product:
    return ProductFactory(
        title="Shared account",
        slug="shared-account",
        price=Decimal("5.00"),
        delivery_mode=Product.DeliveryMode.REUSABLE,
        reusable_cap=10,
        **kwargs,
    )


def product_post(product: Product, **overrides: str) -> dict[str, str]:
    return {
        "title": product.title,
        "slug": product.slug,
        "variant_of": "",
        "variant_label": "",
        "category": "",
        "description": "",
        "how_to_use": "",
        "price": "6.00",
        "currency": "CNY",
        "is_active": "on",
        "min_quantity": "1",
        "max_quantity": "5",
        "delivery_mode": "reusable",
        "reusable_cap": "10",
        "low_stock_threshold": "",
        "manual_fields": "[]",
        "sort_order": "0",
        **overrides,
    }


def units_sold(product: Product) -> None:
    # What fulfilment does for each delivered unit of a reusable key.
    Product.objects.filter(pk=product.pk).update(reusable_sold=F("reusable_sold") + 3)


@pytest.mark.django_db
def test_a_sale_during_a_merchants_product_edit_stays_counted(monkeypatch):
    product = reusable_product()
    while_saving(monkeypatch, merchants_admin.MerchantProductAdmin, lambda: units_sold(product))

    response = merchant_client(product.merchant).post(
        f"/merchant/shop/product/{product.pk}/change/", product_post(product)
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert (product.price, product.reusable_sold) == (Decimal("6.00"), 3)


@pytest.mark.django_db
def test_a_sale_during_a_staff_product_edit_stays_counted(monkeypatch):
    product = reusable_product()
    while_saving(monkeypatch, shop_admin.ProductAdmin, lambda: units_sold(product))

    response = staff_client().post(
        f"/admin/shop/product/{product.pk}/change/",
        product_post(product, merchant=str(product.merchant_id)),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert (product.price, product.reusable_sold) == (Decimal("6.00"), 3)
