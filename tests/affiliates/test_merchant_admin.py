"""The merchant centre's affiliate and resale pages: each merchant sees and changes only its own
programme, offers, listings and sales."""

from decimal import Decimal

import pytest
from django.urls import reverse

from affiliates.models import AffiliateProgramme, ResaleListing, ResaleOffer
from tests.affiliates.helpers import listing, offer
from tests.factories import MerchantFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def supplier():
    return MerchantFactory(name="Supplier")


@pytest.fixture
def reseller():
    return MerchantFactory(name="Reseller")


def login(client, merchant):
    client.force_login(merchant.owner)
    return client


def test_a_merchant_enables_its_programme(client, supplier):
    login(client, supplier)
    url = reverse("merchant_admin:affiliates_affiliateprogramme_add")
    response = client.post(url, {"enabled": "on", "commission_rate": "0.0800"})
    assert response.status_code == 302
    programme = AffiliateProgramme.objects.get()
    assert (programme.merchant, programme.enabled) == (supplier, True)
    assert programme.commission_rate == Decimal("0.0800")
    # One per store; a silly rate is refused.
    assert client.get(url).status_code == 403
    change = reverse("merchant_admin:affiliates_affiliateprogramme_change", args=[programme.pk])
    response = client.post(change, {"enabled": "on", "commission_rate": "0.9"})
    assert response.status_code == 200
    assert "commission_rate" in response.context["adminform"].form.errors


def test_offers_and_listings_are_scoped_to_the_signed_in_merchant(client, supplier, reseller):
    product = ProductFactory(merchant=supplier)
    foreign_product = ProductFactory(merchant=reseller)
    own_offer = offer(product, "5.00")
    item = listing(reseller, own_offer, "7.00")

    login(client, reseller)
    # The reseller cannot offer someone else's product.
    response = client.post(
        reverse("merchant_admin:affiliates_resaleoffer_add"),
        {"product": product.pk, "floor_price": "1.00", "is_open": "on"},
    )
    assert response.status_code == 200
    assert "product" in response.context["adminform"].form.errors
    response = client.post(
        reverse("merchant_admin:affiliates_resaleoffer_add"),
        {"product": foreign_product.pk, "floor_price": "1.00", "is_open": "on"},
    )
    assert response.status_code == 302
    assert ResaleOffer.objects.get(product=foreign_product).merchant == reseller
    # The supplier's offer is not in the reseller's offer list, nor editable by it.
    changelist = client.get(reverse("merchant_admin:affiliates_resaleoffer_changelist"))
    assert list(changelist.context["cl"].queryset) == [ResaleOffer.objects.get(merchant=reseller)]
    response = client.get(
        reverse("merchant_admin:affiliates_resaleoffer_change", args=[own_offer.pk])
    )
    assert response.status_code == 302  # "doesn't exist" → back to the list

    # The reseller's listing below the floor is refused; its listings are its own.
    response = client.post(
        reverse("merchant_admin:affiliates_resalelisting_change", args=[item.pk]),
        {"offer": own_offer.pk, "price": "4.99", "is_active": "on"},
    )
    assert response.status_code == 200
    assert "price" in response.context["adminform"].form.errors
    item.refresh_from_db()
    assert item.price == Decimal("7.00")

    login(client, supplier)
    listings = client.get(reverse("merchant_admin:affiliates_resalelisting_changelist"))
    assert list(listings.context["cl"].queryset) == []
    response = client.get(reverse("merchant_admin:affiliates_resalelisting_change", args=[item.pk]))
    assert response.status_code == 302
    report = client.get(reverse("merchant_admin:affiliates_resaleoffer_report"))
    assert report.status_code == 200
    assert [row.reseller_id for row in report.context["rows"]] == [reseller.pk]
    assert ResaleListing.objects.count() == 1


def test_an_offers_product_cannot_be_changed_once_it_exists(client, supplier, reseller):
    """Listings (and their sales' frozen floor prices) were made for the offer's product: an
    edit may change the floor price or close the offer, never swap the product under them."""
    product = ProductFactory(merchant=supplier, title="Original")
    other = ProductFactory(merchant=supplier, title="Other")
    own_offer = offer(product, "5.00")
    item = listing(reseller, own_offer, "7.00")
    login(client, supplier)
    add = client.get(reverse("merchant_admin:affiliates_resaleoffer_add"))
    assert "product" in add.context["adminform"].form.fields
    change = reverse("merchant_admin:affiliates_resaleoffer_change", args=[own_offer.pk])
    page = client.get(change)
    assert "product" not in page.context["adminform"].form.fields
    assert "Original" in page.content.decode()

    response = client.post(change, {"product": other.pk, "floor_price": "6.00", "is_open": "on"})

    assert response.status_code == 302
    own_offer.refresh_from_db()
    assert (own_offer.product, own_offer.floor_price) == (product, Decimal("6.00"))
    item.refresh_from_db()
    assert item.offer.product == product
