"""Shared set-ups for the affiliates and reselling tests."""

from datetime import timedelta
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from affiliates import services
from affiliates.models import Affiliate, AffiliateProgramme, ResaleListing, ResaleOffer
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from orders.models import Order
from tests.conftest import open_payment
from tests.factories import UserFactory
from tests.test_helpers_payments import pay


def make_affiliate(email: str = "aff@example.com") -> Affiliate:
    return services.join_as_affiliate(user=UserFactory(username=email, email=email))


def enable_programme(merchant, rate: str = "0.1000") -> AffiliateProgramme:
    programme, _ = AffiliateProgramme.objects.update_or_create(
        merchant=merchant, defaults={"enabled": True, "commission_rate": Decimal(rate)}
    )
    return programme


def offer(product, floor: str = "8.00") -> ResaleOffer:
    return ResaleOffer.objects.create(
        product=product, merchant=product.merchant, floor_price=Decimal(floor)
    )


def listing(reseller, resale_offer, price: str = "12.00") -> ResaleListing:
    item = ResaleListing(merchant=reseller, offer=resale_offer, price=Decimal(price))
    item.full_clean()
    item.save()
    return item


def buy_through_page(client, product, email: str = "buyer@example.com"):
    """Order one of ``product`` through its storefront page (sandbox gateway, no coupon)."""
    return client.post(
        reverse("shop:product", args=[product.merchant.slug, product.slug]),
        {
            "option": product.pk,
            "quantity": 1,
            "email": email,
            "query_password": "",
            "gateway": "sandbox",
            "coupon_code": "",
        },
    )


def pay_order(order: Order) -> Order:
    response = pay(open_payment(order))
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    return order


def settle_all() -> None:
    ledger_services.settle_due_orders(now=timezone.now() + timedelta(days=30))


def books_balance() -> None:
    assert ledger_selectors.unbalanced_journal_ids() == []
    assert all(total == 0 for total in ledger_selectors.trial_balance().values())
    assert ledger_selectors.misowned_account_ids() == []
