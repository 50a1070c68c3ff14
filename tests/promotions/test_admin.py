"""Coupons and tiers in the merchant centre: each store sees and changes only its own."""

from decimal import Decimal

import pytest
from django.test import Client

from promotions.models import Coupon, PriceTier
from tests.conftest import place, verify_otp
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.promotions.conftest import CouponFactory, PriceTierFactory

pytestmark = pytest.mark.django_db

COUPONS = "/merchant/promotions/coupon/"
TIERS = "/merchant/promotions/pricetier/"


@pytest.fixture
def stores():
    alpha = MerchantFactory(name="Alpha Store", slug="alpha")
    bravo = MerchantFactory(name="Bravo Store", slug="bravo")
    alpha_product = ProductFactory(merchant=alpha, title="Alpha Widget")
    alpha_option = ProductFactory(merchant=alpha, title="Alpha Widget XL", variant_of=alpha_product)
    bravo_product = ProductFactory(merchant=bravo, title="Bravo Widget")
    return {
        "alpha": alpha,
        "bravo": bravo,
        "alpha_product": alpha_product,
        "alpha_option": alpha_option,
        "bravo_product": bravo_product,
        "alpha_coupon": CouponFactory(merchant=alpha, code="ALPHA10"),
        "bravo_coupon": CouponFactory(merchant=bravo, code="BRAVO10"),
        "alpha_tier": PriceTierFactory(product=alpha_product, min_quantity=5),
        "bravo_tier": PriceTierFactory(product=bravo_product, min_quantity=7),
    }


@pytest.fixture
def alice(stores) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(stores["alpha"].owner)
    return client


def coupon_post(**overrides):
    return {
        "code": "NEW5",
        "kind": "percent",
        "value": "5",
        "currency": "",
        "scope": "store",
        "min_order_amount": "",
        "usage_limit": "",
        "per_buyer_limit": "",
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
        "is_active": "on",
        **overrides,
    }


def test_coupon_list_shows_only_own_coupons(alice, stores):
    response = alice.get(COUPONS)

    assert response.status_code == 200
    text = response.content.decode()
    assert "ALPHA10" in text
    assert "BRAVO10" not in text


def test_other_stores_coupon_and_tier_cannot_be_opened_or_changed(alice, stores):
    bravo_coupon, bravo_tier = stores["bravo_coupon"], stores["bravo_tier"]

    for url in (
        f"{COUPONS}{bravo_coupon.pk}/change/",
        f"{TIERS}{bravo_tier.pk}/change/",
        f"{TIERS}{bravo_tier.pk}/delete/",
    ):
        page = alice.get(url)
        assert page.status_code == 302, url  # the admin's "does not exist" redirect
        assert alice.post(url, {**coupon_post(code="HIJACK"), "post": "yes"}).status_code == 302

    bravo_coupon.refresh_from_db()
    assert bravo_coupon.code == "BRAVO10"
    assert PriceTier.objects.filter(pk=bravo_tier.pk).exists()


def test_new_coupon_belongs_to_the_store_and_code_is_upper_cased(alice, stores):
    response = alice.post(f"{COUPONS}add/", coupon_post(code="spring5"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    coupon = Coupon.objects.get(code="SPRING5")
    assert coupon.merchant == stores["alpha"]
    assert coupon.times_used == 0


def test_duplicate_code_in_any_case_is_a_form_error(alice, stores):
    response = alice.post(f"{COUPONS}add/", coupon_post(code="alpha10"))

    assert response.status_code == 200
    assert "already has a coupon with this code" in response.content.decode()
    assert Coupon.objects.filter(merchant=stores["alpha"]).count() == 1


def test_same_code_as_another_store_is_fine(alice, stores):
    response = alice.post(f"{COUPONS}add/", coupon_post(code="BRAVO10"))

    assert response.status_code == 302
    assert Coupon.objects.filter(code="BRAVO10").count() == 2


def test_coupon_products_are_limited_to_own_products(alice, stores):
    form_page = alice.get(f"{COUPONS}add/")
    choices = set(form_page.context["adminform"].form.fields["products"].queryset)
    assert choices == {stores["alpha_product"], stores["alpha_option"]}

    response = alice.post(
        f"{COUPONS}add/",
        coupon_post(scope="products", products=[str(stores["bravo_product"].pk)]),
    )

    assert response.status_code == 200
    assert "products" in response.context["adminform"].form.errors
    assert not Coupon.objects.filter(code="NEW5").exists()


def test_product_scope_needs_products(alice):
    response = alice.post(f"{COUPONS}add/", coupon_post(scope="products"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["products"] == [
        "Choose at least one product for this coupon."
    ]


def test_fixed_coupon_needs_a_currency(alice):
    response = alice.post(f"{COUPONS}add/", coupon_post(kind="fixed", value="5"))

    assert response.status_code == 200
    assert "currency" in response.context["adminform"].form.errors


def test_tiers_list_and_choices_are_own_products_only(alice, stores):
    listing = alice.get(TIERS)
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset) == [stores["alpha_tier"]]

    form_page = alice.get(f"{TIERS}add/")
    choices = set(form_page.context["adminform"].form.fields["product"].queryset)
    assert choices == {stores["alpha_product"], stores["alpha_option"]}

    foreign = alice.post(
        f"{TIERS}add/",
        {"product": stores["bravo_product"].pk, "min_quantity": 3, "unit_price": "1.00"},
    )
    assert foreign.status_code == 200
    assert not PriceTier.objects.filter(product=stores["bravo_product"], min_quantity=3).exists()

    own = alice.post(
        f"{TIERS}add/",
        {"product": stores["alpha_option"].pk, "min_quantity": 3, "unit_price": "8.50"},
    )
    assert own.status_code == 302
    assert PriceTier.objects.get(product=stores["alpha_option"]).unit_price == Decimal("8.50")


def test_staff_site_lists_every_stores_coupons(stores):
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(staff)
    verify_otp(client, staff)

    response = client.get("/admin/promotions/coupon/")

    assert response.status_code == 200
    text = response.content.decode()
    assert "ALPHA10" in text
    assert "BRAVO10" in text


def test_merchant_order_page_shows_discount_and_coupon(alice, stores):
    add_keys(stores["alpha_product"], 1)
    order = place(stores["alpha_product"], coupon_code="alpha10").order

    page = alice.get(f"/merchant/orders/order/{order.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "ALPHA10" in text
    assert "1.00" in text


def test_staff_cannot_give_a_coupon_another_stores_products(stores):
    staff = UserFactory(username="ops2", is_staff=True, is_superuser=True)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(staff)
    verify_otp(client, staff)
    data = coupon_post(
        merchant=str(stores["alpha"].pk),
        code="MIXED",
        scope="products",
        products=f"{stores['alpha_product'].pk},{stores['bravo_product'].pk}",
    )
    data.update({"redemptions-TOTAL_FORMS": "0", "redemptions-INITIAL_FORMS": "0"})

    refused = client.post("/admin/promotions/coupon/add/", data)
    data["products"] = str(stores["alpha_product"].pk)
    accepted = client.post("/admin/promotions/coupon/add/", data)

    assert refused.status_code == 200
    assert "Choose products of the coupon" in refused.content.decode()
    assert accepted.status_code == 302
    coupon = Coupon.objects.get(code="MIXED")
    assert list(coupon.products.all()) == [stores["alpha_product"]]
