"""Edges of affiliates and reselling: self-referrals, the commission cap at the merchant's net,
claw-backs through disputes after settlement, floor price changes, live stock on the reseller's
storefront, each side's fee on a resold order, and the affiliate pages' scoping."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from affiliates import selectors, services
from affiliates.exceptions import ResaleUnavailable
from affiliates.models import Referral, ResaleSale
from disputes import services as dispute_services
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.models import Journal
from orders import services as order_services
from orders.models import Order
from tests.affiliates.helpers import (
    books_balance,
    buy_through_page,
    enable_programme,
    listing,
    make_affiliate,
    offer,
    pay_order,
    settle_all,
)
from tests.conftest import place, verify_otp
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 8)
    enable_programme(product.merchant, "0.1000")
    return product


def referred(product, affiliate, **kwargs) -> Order:
    attach = services.referral_attacher(code=affiliate.code, buyer_id=kwargs.pop("buyer_id", None))
    return place(product, attach=attach, **kwargs).order


def available(account) -> Decimal:
    return ledger_selectors.balance(account)


# --- self-referrals -------------------------------------------------------------------------------
def test_an_affiliate_opening_its_own_link_is_no_click_and_no_referral(client, shop):
    affiliate = make_affiliate("self@example.com")
    client.force_login(affiliate.user)
    store = reverse("shop:store", args=[shop.merchant.slug])

    response = client.get(f"{store}?ref={affiliate.code}")

    assert selectors.REFERRAL_COOKIE not in response.cookies
    affiliate.refresh_from_db()
    assert affiliate.clicks == 0
    # Even with the cookie from before it signed in, buying while signed in (under another
    # e-mail) earns nothing.
    anonymous = client.__class__()
    cookie = anonymous.get(f"{store}?ref={affiliate.code}").cookies[selectors.REFERRAL_COOKIE]
    client.cookies[selectors.REFERRAL_COOKIE] = cookie.value
    assert buy_through_page(client, shop, email="other-address@example.com").status_code == 302
    assert Referral.objects.count() == 0
    # The same cookie in a stranger's browser does earn.
    anonymous.cookies[selectors.REFERRAL_COOKIE] = cookie.value
    assert buy_through_page(anonymous, shop, email="stranger@example.com").status_code == 302
    assert Referral.objects.get().affiliate == affiliate


def test_the_merchants_own_people_earn_no_commission_on_its_sales(shop):
    owner_as_affiliate = services.join_as_affiliate(user=shop.merchant.owner)
    referred(shop, owner_as_affiliate)
    other_merchant = MerchantFactory()
    their_product = ProductFactory(merchant=other_merchant, price=Decimal("10.00"))
    add_keys(their_product, 1)
    enable_programme(other_merchant)
    # The same person promoting another store does earn there.
    referred(their_product, owner_as_affiliate)
    assert list(Referral.objects.values_list("merchant_id", flat=True)) == [other_merchant.pk]


def test_attribution_refuses_the_affiliates_own_account_and_email(shop):
    affiliate = make_affiliate("Me@Example.com")
    referred(shop, affiliate, buyer_id=affiliate.user_id, email="someone-else@example.com")
    referred(shop, affiliate, email="me@example.com")
    assert Referral.objects.count() == 0


# --- the commission cap and claw-backs ------------------------------------------------------------
def test_commission_never_exceeds_what_the_merchant_keeps(settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    merchant = shop.merchant
    merchant.fee_rate = Decimal("0.6000")
    merchant.save(update_fields=["fee_rate"])
    enable_programme(merchant, "0.5000")
    affiliate = make_affiliate()
    order = pay_order(referred(shop, affiliate))

    settle_all()

    referral = Referral.objects.get()
    # 50% of 100 would be 50, but the merchant only keeps 40 after the 60% fee.
    assert referral.commission == Decimal("40.00")
    assert available(accounts.merchant_available(merchant, "CNY")) == 0
    assert available(accounts.affiliate_available(affiliate, "CNY")) == Decimal("40.00")

    # Half refunded: the merchant keeps 20 of the rest, so the commission falls to 20, not to
    # 40 − 25; the merchant does not profit from the refund.
    order_services.request_refund(
        request_id="half", order_id=order.pk, reason="x", source="staff", amount=Decimal("50")
    )
    assert available(accounts.affiliate_available(affiliate, "CNY")) == Decimal("20.00")
    assert available(accounts.merchant_available(merchant, "CNY")) == 0
    assert available(accounts.merchant_pending(merchant, "CNY")) == 0
    # Nothing is left to settle, and the order does not come back in every settlement batch.
    journals = Journal.objects.count()
    settle_all()
    assert Journal.objects.count() == journals
    order_services.request_refund(request_id="rest", order_id=order.pk, reason="x", source="staff")
    assert available(accounts.affiliate_available(affiliate, "CNY")) == 0
    assert available(accounts.merchant_available(merchant, "CNY")) == 0
    referral.refresh_from_db()
    assert referral.reversed_amount == referral.commission
    books_balance()


def _dispute_refund_after_settlement(order: Order, *, funded_by_platform: bool) -> None:
    staff = UserFactory(is_staff=True)
    later = timezone.now() + timedelta(days=settings_hold() + 1)
    ledger_services.settle_due_orders(now=later)
    assert Journal.objects.filter(kind=Journal.Kind.SETTLEMENT, order=order).exists()
    dispute = dispute_services.open_dispute(
        order_id=order.pk, reason="other", message="the key does not work", now=later
    )
    dispute_services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        reason="Refunded after checking the key.",
        actor=staff,
        role="staff",
        request_id="decide-1",
        funded_by_platform=funded_by_platform,
        now=later,
    )
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED


def settings_hold() -> int:
    from django.conf import settings

    return int(settings.SETTLEMENT_HOLD_DAYS)


@pytest.mark.parametrize("funded_by_platform", [False, True])
def test_a_dispute_refunded_after_settlement_claws_the_commission_back(
    settings, shop, funded_by_platform
):
    settings.PLATFORM_FEE_RATE = "0.05"
    affiliate = make_affiliate()
    order = pay_order(referred(shop, affiliate))

    _dispute_refund_after_settlement(order, funded_by_platform=funded_by_platform)

    referral = Referral.objects.get()
    assert (referral.commission, referral.reversed_amount) == (Decimal("10.00"), Decimal("10.00"))
    assert available(accounts.affiliate_available(affiliate, "CNY")) == 0
    assert available(accounts.merchant_available(shop.merchant, "CNY")) == 0
    assert available(accounts.merchant_pending(shop.merchant, "CNY")) == 0
    for journal in Journal.objects.filter(order=order):
        assert sum(e.amount for e in journal.entries.all()) == 0, journal.kind
    books_balance()


@pytest.mark.parametrize("funded_by_platform", [False, True])
def test_a_dispute_refunded_after_settlement_claws_the_resellers_margin_back(
    settings, funded_by_platform
):
    settings.PLATFORM_FEE_RATE = "0.05"
    supply = ProductFactory(price=Decimal("10.00"))
    add_keys(supply, 2)
    reseller = MerchantFactory()
    item = listing(reseller, offer(supply, "8.00"), "12.00")
    order = services.checkout_resale(
        listing=item,
        quantity=1,
        email="b@example.com",
        gateway_name="sandbox",
        base_url="http://t/",
    ).order
    pay_order(order)

    _dispute_refund_after_settlement(order, funded_by_platform=funded_by_platform)

    for merchant in (supply.merchant, reseller):
        assert available(accounts.merchant_available(merchant, "CNY")) == 0
        assert available(accounts.merchant_pending(merchant, "CNY")) == 0
    assert available(accounts.fees("CNY")) == 0
    books_balance()


def test_a_fully_refunded_order_voids_its_referral_and_the_estimate_nets_refunds(settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    affiliate = make_affiliate()
    whole = pay_order(referred(shop, affiliate))
    partly = pay_order(referred(shop, affiliate))
    order_services.request_refund(request_id="w", order_id=whole.pk, reason="x", source="staff")
    order_services.request_refund(
        request_id="p", order_id=partly.pk, reason="x", source="staff", amount=Decimal("30")
    )

    assert Referral.objects.get(order=whole).status == Referral.Status.VOID
    summary = selectors.affiliate_summary(affiliate=affiliate)
    # Only the partly refunded order is still expected to pay: 10% of the 70 left.
    assert [(b.currency, b.pending_commission) for b in summary.balances] == [
        ("CNY", Decimal("7.00"))
    ]
    settle_all()
    assert Referral.objects.get(order=partly).commission == Decimal("7.00")
    assert Referral.objects.get(order=whole).status == Referral.Status.VOID
    books_balance()


# --- reselling: prices, stock, fees ---------------------------------------------------------------
@pytest.fixture
def supply(db):
    product = ProductFactory(price=Decimal("10.00"))
    add_keys(product, 5)
    return product


def resell(item, quantity=1):
    return services.checkout_resale(
        listing=item,
        quantity=quantity,
        email="buyer@example.com",
        gateway_name="sandbox",
        base_url="http://testserver/",
    )


def test_floor_raised_above_a_resellers_price_takes_the_listing_down_until_repriced(client, supply):
    reseller = MerchantFactory()
    resale_offer = offer(supply, "8.00")
    item = listing(reseller, resale_offer, "9.00")
    page = reverse("affiliates:resale_product", args=[reseller.slug, item.pk])
    store = reverse("shop:store", args=[reseller.slug])
    assert client.get(page).status_code == 200

    resale_offer.floor_price = Decimal("9.50")
    resale_offer.save(update_fields=["floor_price"])

    assert selectors.store_resale_listings(merchant=reseller) == []
    assert supply.title not in client.get(store).content.decode()
    assert client.get(page).status_code == 404
    with pytest.raises(ResaleUnavailable):
        resell(item)
    assert Order.objects.count() == 0

    item.price = Decimal("9.50")
    item.full_clean()
    item.save()
    assert client.get(page).status_code == 200
    order = pay_order(resell(item).order)
    sale = ResaleSale.objects.get(order=order)
    assert (sale.unit_price, sale.supplier_unit_price) == (Decimal("9.50"), Decimal("9.50"))


def test_floor_lowered_below_a_resellers_price_keeps_the_price_and_pays_the_new_floor(supply):
    reseller = MerchantFactory()
    resale_offer = offer(supply, "8.00")
    item = listing(reseller, resale_offer, "12.00")
    first = resell(item).order

    resale_offer.floor_price = Decimal("6.00")
    resale_offer.save(update_fields=["floor_price"])
    second = resell(item).order

    prices = dict(
        ResaleSale.objects.values_list("order_id", "supplier_unit_price").order_by("order_id")
    )
    # The first order keeps the floor it was placed at; the reseller's price never moved.
    assert prices == {first.pk: Decimal("8.00"), second.pk: Decimal("6.00")}
    assert (first.amount, second.amount) == (Decimal("12.00"), Decimal("12.00"))


def test_the_resellers_storefront_shows_its_price_and_the_suppliers_live_stock(client, supply):
    reseller = MerchantFactory()
    item = listing(reseller, offer(supply, "8.00"), "12.34")
    store = reverse("shop:store", args=[reseller.slug])

    page = client.get(store).content.decode()
    assert "12.34 CNY" in page and "5 left" in page
    assert [(i.listing, i.stock) for i in selectors.store_resale_listings(merchant=reseller)] == [
        (item, 5)
    ]

    # The supplier sells two keys in its own store: the reseller's page shows it at once.
    pay_order(place(supply, quantity=2).order)
    assert "3 left" in client.get(store).content.decode()
    resell(item, quantity=3)
    assert "Sold out" in client.get(store).content.decode()


def test_each_side_of_a_resold_order_pays_the_fee_at_its_own_rate(settings, supply):
    settings.PLATFORM_FEE_RATE = "0.05"
    reseller = MerchantFactory(fee_rate=Decimal("0.1000"))
    item = listing(reseller, offer(supply, "8.00"), "13.00")
    order = pay_order(resell(item, quantity=2).order)

    sale = Journal.objects.get(kind=Journal.Kind.SALE, order=order)
    lines = {
        e.account.code.split(":")[-1]: e.amount for e in sale.entries.select_related("account")
    }
    # A = 26, S = 16 (fee 5% = 0.80), M = 10 (fee 10% = 1.00).
    assert lines["fees"] == Decimal("-1.80")
    assert available(accounts.merchant_pending(supply.merchant, "CNY")) == Decimal("15.20")
    assert available(accounts.merchant_pending(reseller, "CNY")) == Decimal("9.00")
    books_balance()


# --- affiliate pages ------------------------------------------------------------------------------
def test_affiliate_pages_need_a_login_and_show_only_ones_own(client, settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    for url in (reverse("affiliates:dashboard"),):
        response = client.get(url)
        assert response.status_code == 302 and "/affiliates/login/" in response.url
    response = client.post(
        reverse("affiliates:withdraw"),
        {"amount": "5", "currency": "CNY", "payout_details": "x"},
    )
    assert response.status_code == 302 and "/affiliates/login/" in response.url
    assert client.post(reverse("affiliates:join")).status_code == 302

    mine, theirs = make_affiliate("mine@example.com"), make_affiliate("theirs@example.com")
    pay_order(referred(shop, theirs))
    settle_all()
    services.request_affiliate_withdrawal(
        affiliate=theirs, amount=Decimal("5"), currency="CNY", payout_details="their bank"
    )
    client.force_login(mine.user)
    page = client.get(reverse("affiliates:dashboard"))
    assert page.status_code == 200
    assert list(page.context["referrals"]) == []
    assert list(page.context["withdrawals"]) == []
    assert page.context["summary"].balances == []
    assert "their bank" not in page.content.decode()
    # A signed-in user with no affiliate identity cannot withdraw anyone's money.
    client.force_login(UserFactory())
    assert (
        client.post(
            reverse("affiliates:withdraw"),
            {"amount": "5", "currency": "CNY", "payout_details": "x"},
        ).status_code
        == 404
    )


def test_only_staff_decide_affiliate_withdrawals_and_the_affiliate_sees_the_outcome(
    client, settings, shop
):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    affiliate = make_affiliate()
    pay_order(referred(shop, affiliate))
    settle_all()
    withdrawal = services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal("6"), currency="CNY", payout_details="bank"
    )
    url = reverse("admin:affiliates_affiliatewithdrawal_decide", args=[withdrawal.pk])

    # The affiliate itself (not staff) and a merchant cannot reach the staff decision.
    client.force_login(affiliate.user)
    assert client.post(url, {"payout_reference": "X", "pay": "1"}).status_code == 302
    client.force_login(shop.merchant.owner)
    assert client.post(url, {"payout_reference": "X", "pay": "1"}).status_code == 302
    withdrawal.refresh_from_db()
    assert withdrawal.status == "requested"

    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    verify_otp(client, staff)
    page = client.get(url)
    assert [(b.currency, b.available, b.withdrawing) for b in page.context["balances"]] == [
        ("CNY", Decimal("4.00"), Decimal("6.00"))
    ]
    client.post(url, {"payout_reference": "BANK-77", "note": "sent", "pay": "1"})

    client.force_login(affiliate.user)
    dashboard = client.get(reverse("affiliates:dashboard")).content.decode()
    assert "BANK-77" in dashboard
    assert available(accounts.payouts("CNY")) == Decimal("6.00")
    books_balance()
