"""Reselling: a reseller lists a supplier's product at its own price (never below the floor);
the supplier's stock fulfils the order in the same transaction; the ledger splits the money;
pausing at the supplier pauses every listing; the supplier sees who sells what."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from affiliates import selectors, services
from affiliates.exceptions import ResaleUnavailable
from affiliates.models import ResaleListing, ResaleSale
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger.models import Journal
from orders import services as order_services
from orders.models import Order
from shop.exceptions import ProductUnavailable
from shop.models import CardKey
from tests.affiliates.helpers import books_balance, listing, offer, pay_order, settle_all
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def supply(db):
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 5)
    return product


@pytest.fixture
def reseller(db):
    return MerchantFactory()


def resell(item, quantity=1, email="buyer@example.com"):
    return services.checkout_resale(
        listing=item,
        quantity=quantity,
        email=email,
        gateway_name="sandbox",
        base_url="http://testserver/",
    )


def pending_available(merchant, currency="CNY"):
    return (
        ledger_selectors.balance(accounts.merchant_pending(merchant, currency)),
        ledger_selectors.balance(accounts.merchant_available(merchant, currency)),
    )


# --- listing rules --------------------------------------------------------------------------------
def test_a_listing_cannot_go_below_the_floor_or_resell_ones_own_product(supply, reseller):
    resale_offer = offer(supply, "8.00")
    with pytest.raises(ValidationError) as below:
        listing(reseller, resale_offer, "7.99")
    assert "price" in below.value.message_dict
    with pytest.raises(ValidationError) as own:
        listing(supply.merchant, resale_offer, "9.00")
    assert "offer" in own.value.message_dict
    assert listing(reseller, resale_offer, "8.00").price == Decimal("8.00")


def test_manual_products_cannot_be_offered(db):
    from affiliates.models import ResaleOffer

    manual = ProductFactory(delivery_mode="manual")
    candidate = ResaleOffer(product=manual, merchant=manual.merchant, floor_price=Decimal("1"))
    with pytest.raises(ValidationError):
        candidate.full_clean()


# --- buying ---------------------------------------------------------------------------------------
def test_buying_a_listing_claims_the_suppliers_stock_at_the_resellers_price(supply, reseller):
    item = listing(reseller, offer(supply, "8.00"), "12.50")

    result = resell(item, quantity=2)

    order = result.order
    assert (order.product_id, order.merchant_id) == (supply.pk, supply.merchant_id)
    assert (order.unit_price, order.amount) == (Decimal("12.50"), Decimal("25.00"))
    assert CardKey.objects.filter(order=order, status=CardKey.Status.RESERVED).count() == 2
    sale = ResaleSale.objects.get()
    assert (sale.order, sale.reseller, sale.supplier) == (order, reseller, supply.merchant)
    assert (sale.unit_price, sale.supplier_unit_price) == (Decimal("12.50"), Decimal("8.00"))


def test_a_repriced_listing_rolls_the_whole_order_back(supply, reseller):
    item = listing(reseller, offer(supply, "8.00"), "12.00")
    stale = ResaleListing.objects.get(pk=item.pk)
    ResaleListing.objects.filter(pk=item.pk).update(price=Decimal("15.00"))

    with pytest.raises(ResaleUnavailable):
        resell(stale)

    assert Order.objects.count() == 0
    assert CardKey.objects.filter(product=supply, status=CardKey.Status.AVAILABLE).count() == 5


def test_the_ledger_splits_sale_settlement_and_refund(settings, supply, reseller):
    settings.PLATFORM_FEE_RATE = "0.05"
    item = listing(reseller, offer(supply, "8.00"), "12.00")
    order = pay_order(resell(item, quantity=2).order)
    assert order.status == Order.Status.DELIVERED

    # A = 24, S = 16, Fs = 0.80 (5% of S), M = 8, Fr = 0.40 (5% of M): each side pays its fee.
    assert pending_available(supply.merchant) == (Decimal("15.20"), 0)
    assert pending_available(reseller) == (Decimal("7.60"), 0)
    assert ledger_selectors.balance(accounts.fees("CNY")) == Decimal("1.20")
    assert ledger_selectors.balance(accounts.clearing("CNY")) == Decimal("24.00")
    books_balance()

    settle_all()
    assert pending_available(supply.merchant) == (0, Decimal("15.20"))
    assert pending_available(reseller) == (0, Decimal("7.60"))

    order_services.request_refund(request_id="r", order_id=order.pk, reason="x", source="staff")
    assert pending_available(supply.merchant) == (0, 0)
    assert pending_available(reseller) == (0, 0)
    assert ledger_selectors.balance(accounts.fees("CNY")) == 0
    assert ledger_selectors.balance(accounts.clearing("CNY")) == 0
    books_balance()


def test_a_partial_refund_before_settlement_splits_in_proportion(settings, supply, reseller):
    settings.PLATFORM_FEE_RATE = "0"
    item = listing(reseller, offer(supply, "6.00"), "10.00")
    order = pay_order(resell(item).order)
    order_services.request_refund(
        request_id="p", order_id=order.pk, reason="x", source="staff", amount=Decimal("5")
    )
    assert pending_available(supply.merchant) == (Decimal("3.00"), 0)
    assert pending_available(reseller) == (Decimal("2.00"), 0)
    settle_all()
    assert pending_available(supply.merchant) == (0, Decimal("3.00"))
    assert pending_available(reseller) == (0, Decimal("2.00"))
    assert Journal.objects.filter(kind=Journal.Kind.SETTLEMENT, order=order).count() == 2
    books_balance()


# --- pausing --------------------------------------------------------------------------------------
def test_pausing_the_suppliers_product_pauses_every_listing(client, supply, reseller):
    resale_offer = offer(supply, "8.00")
    item = listing(reseller, resale_offer, "12.00")
    other = listing(MerchantFactory(), resale_offer, "13.00")
    page = reverse("affiliates:resale_product", args=[reseller.slug, item.pk])
    assert client.get(page).status_code == 200
    assert [i.listing for i in selectors.store_resale_listings(merchant=reseller)] == [item]
    assert (
        item.offer.product.title
        in client.get(reverse("shop:store", args=[reseller.slug])).content.decode()
    )

    supply.is_active = False
    supply.save(update_fields=["is_active"])

    assert selectors.store_resale_listings(merchant=reseller) == []
    assert selectors.store_resale_listings(merchant=other.merchant) == []
    assert client.get(page).status_code == 404
    with pytest.raises(ProductUnavailable):
        resell(item)
    supply.is_active = True
    supply.save(update_fields=["is_active"])
    resale_offer.is_open = False
    resale_offer.save(update_fields=["is_open"])
    assert client.get(page).status_code == 404
    with pytest.raises(ResaleUnavailable):
        resell(item)
    assert Order.objects.count() == 0


def test_buying_through_the_resellers_page(client, supply, reseller):
    item = listing(reseller, offer(supply, "8.00"), "11.00")
    response = client.post(
        reverse("affiliates:resale_product", args=[reseller.slug, item.pk]),
        {"quantity": 1, "email": "b@example.com", "query_password": "", "gateway": "sandbox"},
    )
    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.amount, order.product_id) == (Decimal("11.00"), supply.pk)
    assert order.resale_sale.reseller == reseller


# --- the supplier's report ------------------------------------------------------------------------
def test_supplier_report_lists_resellers_by_product(settings, supply, reseller):
    settings.PLATFORM_FEE_RATE = "0"
    resale_offer = offer(supply, "8.00")
    item = listing(reseller, resale_offer, "12.00")
    idle = listing(MerchantFactory(name="Zed"), resale_offer, "9.00")
    pay_order(resell(item, quantity=2).order)
    resell(item)  # unpaid: not counted

    rows = selectors.supplier_report(supplier=supply.merchant)

    by_reseller = {row.reseller_id: row for row in rows}
    assert len(rows) == 2
    sold = by_reseller[reseller.pk]
    assert (sold.orders, sold.units, sold.supplier_revenue) == (1, 2, Decimal("16.00"))
    assert (by_reseller[idle.merchant_id].orders, by_reseller[idle.merchant_id].units) == (0, 0)
    assert selectors.supplier_report(supplier=reseller) == []
