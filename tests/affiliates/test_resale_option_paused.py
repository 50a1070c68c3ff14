"""Pausing (or a hold on) a supplier's listing pauses the resale of its options: the option
leaves every reseller's store and its resale page (a paused one also the offers a reseller may
list), and a checkout refuses it with the usual "not available" answer, reserving nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from affiliates import selectors, services
from affiliates.exceptions import ResaleUnavailable
from orders.models import Order
from shop.exceptions import ProductUnavailable
from shop.models import CardKey, Product
from tests.affiliates.helpers import listing, offer
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def option():
    parent = ProductFactory(price=Decimal("10.00"))
    variant = ProductFactory(
        merchant=parent.merchant,
        price=Decimal("10.00"),
        variant_of=parent,
        variant_label="12 months",
    )
    add_keys(variant, 3)
    return variant


def resell(item):
    return services.checkout_resale(
        listing=item,
        quantity=1,
        email="buyer@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )


def assert_not_resold(client, reseller, item):
    assert selectors.store_resale_listings(merchant=reseller) == []
    assert selectors.get_sellable_listing(merchant=reseller, listing_id=item.pk) is None
    page = reverse("affiliates:resale_product", args=[reseller.slug, item.pk])
    assert client.get(page).status_code == 404
    with pytest.raises(ProductUnavailable):
        resell(item)
    assert Order.objects.count() == 0
    assert not CardKey.objects.exclude(status=CardKey.Status.AVAILABLE).exists()


def test_pausing_the_parent_listing_pauses_its_options_resale(client, option):
    reseller = MerchantFactory()
    item = listing(reseller, offer(option, "8.00"), "12.00")
    assert [i.listing for i in selectors.store_resale_listings(merchant=reseller)] == [item]

    parent = option.variant_of
    parent.is_active = False
    parent.save(update_fields=["is_active"])
    option.refresh_from_db()

    assert_not_resold(client, reseller, item)
    # Nor can a reseller list it anew.
    assert not selectors.open_offers_for(reseller=MerchantFactory()).exists()

    parent.is_active = True
    parent.save(update_fields=["is_active"])
    option.refresh_from_db()
    item.refresh_from_db()
    assert [i.listing for i in selectors.store_resale_listings(merchant=reseller)] == [item]
    assert resell(item).order.product_id == option.pk


def test_a_held_parent_listing_pauses_its_options_resale(client, option):
    reseller = MerchantFactory()
    item = listing(reseller, offer(option, "8.00"), "12.00")
    Product.objects.filter(pk=option.variant_of_id).update(review_status=Product.ReviewStatus.HELD)
    option.refresh_from_db()

    assert_not_resold(client, reseller, item)


def test_the_listing_check_refuses_a_paused_parent_inside_the_transaction(option):
    """``checkout`` was handed a product read before the supplier paused the parent: the
    listing re-read under the order's transaction refuses it, rolling everything back."""
    reseller = MerchantFactory()
    item = listing(reseller, offer(option, "8.00"), "12.00")
    item = (
        type(item)
        .objects.select_related("offer__product__variant_of", "offer__product__merchant")
        .get(pk=item.pk)
    )
    Product.objects.filter(pk=option.variant_of_id).update(is_active=False)

    with pytest.raises(ResaleUnavailable):
        resell(item)
    assert Order.objects.count() == 0
    assert not CardKey.objects.exclude(status=CardKey.Status.AVAILABLE).exists()
