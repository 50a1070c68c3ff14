from decimal import Decimal

import pytest
from django.urls import reverse

from affiliates import selectors, services
from affiliates.models import Referral
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger.models import Journal, Entry
from orders import services as order_services
from orders.models import Order, Payment, Refund
from tests.affiliates.helpers import (
    books_balance, enable_programme, make_affiliate, listing, offer, pay_order, settle_all,
)
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def test_duplicate_payment_refund_voids_commission(settings, django_capture_on_commit_callbacks):
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 3)
    enable_programme(product.merchant, "0.1000")
    affiliate = make_affiliate()
    order = place(product, attach=services.referral_attacher(code=affiliate.code)).order
    first, second = open_payment(order), open_payment(order)
    assert pay(first).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(second).status_code == 200
    assert Refund.objects.get(payment=second).status == Refund.Status.SUCCEEDED
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    settle_all()
    referral = Referral.objects.get()
    print("referral", referral.status, referral.commission)
    print("affiliate bal", ledger_selectors.balance(accounts.affiliate_available(affiliate, "CNY")))
    print("merchant avail", ledger_selectors.balance(accounts.merchant_available(product.merchant, "CNY")))
    books_balance()
    assert referral.status == Referral.Status.CREDITED and referral.commission == Decimal("10.00")


def test_duplicate_then_small_refund_reverses_all(settings, django_capture_on_commit_callbacks):
    settings.PLATFORM_FEE_RATE = "0.05"
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 3)
    enable_programme(product.merchant, "0.1000")
    affiliate = make_affiliate()
    order = place(product, attach=services.referral_attacher(code=affiliate.code)).order
    first = open_payment(order)
    assert pay(first).status_code == 200
    settle_all()
    assert Referral.objects.get().commission == Decimal("10.00")
    second = open_payment_force(order)
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(second).status_code == 200
    order_services.request_refund(request_id="r1", order_id=order.pk, reason="x", source="staff",
                                  amount=Decimal("1.00"))
    bal = ledger_selectors.balance(accounts.affiliate_available(affiliate, "CNY"))
    print("affiliate bal after 1.00 refund", bal)
    books_balance()
    assert bal == Decimal("9.90")


def open_payment_force(order):
    # a second payment opened before the first was paid is the realistic case; emulate it
    from orders import tokens
    return Payment.objects.create(reference=tokens.new_payment_reference(), order=order,
                                  gateway="sandbox", amount=order.amount, currency=order.currency)


def test_paused_parent_listing_still_resold(client):
    parent = ProductFactory(price=Decimal("10.00"))
    variant = ProductFactory(merchant=parent.merchant, price=Decimal("10.00"), variant_of=parent,
                             variant_label="12 months")
    add_keys(variant, 3)
    reseller = MerchantFactory()
    item = listing(reseller, offer(variant, "8.00"), "12.00")
    parent.is_active = False
    parent.save(update_fields=["is_active"])
    # the supplier's own store no longer sells it
    page = client.get(reverse("shop:product", args=[parent.merchant.slug, variant.slug]))
    print("supplier page status", page.status_code)
    print("resale listings", selectors.store_resale_listings(merchant=reseller))
    result = services.checkout_resale(listing=item, quantity=1, email="b@example.com",
                                      gateway_name="sandbox", base_url="http://testserver/")
    print("order", result.order.status, result.order.product_id)
    assert False, "resale checkout of a paused listing's option succeeded"


def test_resale_partial_refunds_rounding(settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    supply = ProductFactory(price=Decimal("10.00"))
    add_keys(supply, 5)
    reseller = MerchantFactory()
    item = listing(reseller, offer(supply, "3.33"), "10.01")
    res = services.checkout_resale(listing=item, quantity=3, email="b@example.com",
                                   gateway_name="sandbox", base_url="http://testserver/")
    order = pay_order(res.order)
    total = order.amount
    parts = [Decimal("0.07")] * 10
    parts.append(total - sum(parts))
    for i, p in enumerate(parts):
        order_services.request_refund(request_id=f"r{i}", order_id=order.pk, reason="x",
                                      source="staff", amount=p)
    order.refresh_from_db()
    rp = ledger_selectors.balance(accounts.merchant_pending(reseller, "CNY"))
    sp = ledger_selectors.balance(accounts.merchant_pending(supply.merchant, "CNY"))
    fees = ledger_selectors.balance(accounts.fees("CNY"))
    print("status", order.status, "reseller pending", rp, "supplier pending", sp, "fees", fees)
    books_balance()
    assert rp == 0 and sp == 0
