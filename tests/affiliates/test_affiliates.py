"""Affiliates: the ?ref= link (signed cookie, 30 days, one click each), attribution at checkout,
commission credited at settlement and reversed on refund, withdrawals, balanced books."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from affiliates import selectors, services
from affiliates.exceptions import AffiliateWithdrawalNotAllowed, SignUpRefused
from affiliates.models import AffiliateWithdrawal, Referral
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger.models import Journal
from orders import services as order_services
from orders.models import Order
from tests.affiliates.helpers import (
    books_balance,
    buy_through_page,
    enable_programme,
    make_affiliate,
    pay_order,
    settle_all,
)
from tests.conftest import place
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.ledger.helpers import admin_fields_shown

pytestmark = pytest.mark.django_db


def store_url(merchant, ref: str = "") -> str:
    url = reverse("shop:store", args=[merchant.slug])
    return f"{url}?ref={ref}" if ref else url


@pytest.fixture
def shop(db):
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 5)
    enable_programme(product.merchant, "0.1000")
    return product


def referred_order(product, affiliate, quantity=1) -> Order:
    placed = place(
        product, quantity=quantity, attach=services.referral_attacher(code=affiliate.code)
    )
    return placed.order


def affiliate_available(affiliate, currency="CNY") -> Decimal:
    return ledger_selectors.balance(accounts.affiliate_available(affiliate, currency))


def merchant_available(merchant, currency="CNY") -> Decimal:
    return ledger_selectors.balance(accounts.merchant_available(merchant, currency))


# --- the link -------------------------------------------------------------------------------------
def test_ref_link_sets_a_signed_cookie_and_counts_one_click_per_visitor(client, shop):
    affiliate = make_affiliate()

    response = client.get(store_url(shop.merchant, affiliate.code.lower()))

    assert response.status_code == 200
    cookie = response.cookies[selectors.REFERRAL_COOKIE]
    assert cookie["max-age"] == 30 * 24 * 3600
    assert cookie["httponly"] is True
    affiliate.refresh_from_db()
    assert affiliate.clicks == 1
    # The same visitor reloading is not another click; a new visitor is.
    client.get(store_url(shop.merchant, affiliate.code))
    client.__class__().get(store_url(shop.merchant, affiliate.code))
    affiliate.refresh_from_db()
    assert affiliate.clicks == 2


def test_unknown_or_malformed_codes_set_nothing(client, shop):
    response = client.get(store_url(shop.merchant, "NOSUCH99"))
    assert selectors.REFERRAL_COOKIE not in response.cookies
    response = client.get(store_url(shop.merchant, "<script>"))
    assert response.status_code == 200
    assert selectors.REFERRAL_COOKIE not in response.cookies


def test_the_cookie_is_remembered_for_30_days_then_forgotten(client, shop):
    affiliate = make_affiliate()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        response = client.get(store_url(shop.merchant, affiliate.code))
    value = response.cookies[selectors.REFERRAL_COOKIE].value

    def code_seen_at(moment):
        request = RequestFactory().get("/")
        request.COOKIES[selectors.REFERRAL_COOKIE] = value
        with time_machine.travel(moment, tick=False):
            return selectors.referral_code(request)

    assert code_seen_at(start + timedelta(days=29)) == affiliate.code
    assert code_seen_at(start + timedelta(days=31)) == ""
    # A forged cookie is ignored.
    request = RequestFactory().get("/")
    request.COOKIES[selectors.REFERRAL_COOKIE] = affiliate.code
    assert selectors.referral_code(request) == ""


def test_checkout_with_the_cookie_attributes_the_order(client, shop):
    affiliate = make_affiliate()
    client.get(store_url(shop.merchant, affiliate.code))

    response = buy_through_page(client, shop)

    assert response.status_code == 302
    order = Order.objects.get()
    referral = Referral.objects.get()
    assert (referral.order, referral.affiliate, referral.merchant) == (
        order,
        affiliate,
        shop.merchant,
    )
    assert referral.commission_rate == Decimal("0.1000")
    assert referral.status == Referral.Status.PENDING


def test_no_attribution_without_an_enabled_programme_or_for_self_referrals(client):
    product = ProductFactory()
    add_keys(product, 5)
    affiliate = make_affiliate("me@example.com")
    referred_order(product, affiliate)  # no programme
    programme = enable_programme(product.merchant)
    programme.enabled = False
    programme.save()
    referred_order(product, affiliate)  # disabled
    enable_programme(product.merchant)
    place(product, email="me@example.com", attach=services.referral_attacher(code=affiliate.code))
    assert Referral.objects.count() == 0
    referred_order(product, affiliate)
    assert Referral.objects.count() == 1


# --- commission -----------------------------------------------------------------------------------
def test_commission_is_credited_when_the_sale_settles(settings, shop):
    settings.PLATFORM_FEE_RATE = "0.05"
    affiliate = make_affiliate()
    order = pay_order(referred_order(shop, affiliate))
    assert order.status == Order.Status.DELIVERED
    assert affiliate_available(affiliate) == 0  # nothing before settlement

    settle_all()
    settle_all()  # a second run changes nothing

    referral = Referral.objects.get()
    assert referral.status == Referral.Status.CREDITED
    assert referral.commission == Decimal("10.00")
    assert affiliate_available(affiliate) == Decimal("10.00")
    assert merchant_available(shop.merchant) == Decimal("85.00")  # 100 − 5 fee − 10 commission
    commission = Journal.objects.get(kind=Journal.Kind.COMMISSION)
    assert commission.order == order
    assert sum(e.amount for e in commission.entries.all()) == 0
    books_balance()


def test_refund_after_settlement_reverses_the_commission(settings, shop):
    settings.PLATFORM_FEE_RATE = "0.05"
    affiliate = make_affiliate()
    order = pay_order(referred_order(shop, affiliate))
    settle_all()

    order_services.request_refund(
        request_id="r1", order_id=order.pk, reason="bad key", source="staff", amount=Decimal("40")
    )
    assert affiliate_available(affiliate) == Decimal("6.00")
    order_services.request_refund(
        request_id="r2", order_id=order.pk, reason="bad key", source="staff"
    )

    assert affiliate_available(affiliate) == Decimal("0.00")
    referral = Referral.objects.get()
    assert referral.reversed_amount == Decimal("10.00")
    assert Journal.objects.filter(kind=Journal.Kind.COMMISSION_REVERSAL).count() == 2
    # The merchant refunded its 95 share and got the 10 commission back: 85 − 95 + 10 = 0.
    assert merchant_available(shop.merchant) == Decimal("0.00")
    books_balance()


def test_refund_before_settlement_shrinks_or_voids_the_commission(settings, shop):
    settings.PLATFORM_FEE_RATE = "0.05"
    affiliate = make_affiliate()
    partly = pay_order(referred_order(shop, affiliate))
    whole = pay_order(referred_order(shop, affiliate))
    order_services.request_refund(
        request_id="p", order_id=partly.pk, reason="x", source="staff", amount=Decimal("50")
    )
    order_services.request_refund(request_id="w", order_id=whole.pk, reason="x", source="staff")

    settle_all()

    assert Referral.objects.get(order=partly).commission == Decimal("5.00")
    # A wholly refunded order never settles: its referral is void at once, nothing owed.
    assert Referral.objects.get(order=whole).status == Referral.Status.VOID
    assert affiliate_available(affiliate) == Decimal("5.00")
    assert Journal.objects.filter(kind=Journal.Kind.COMMISSION_REVERSAL).count() == 0
    books_balance()


def test_platform_first_refund_also_reverses_the_commission(settings, shop):
    settings.PLATFORM_FEE_RATE = "0.05"
    affiliate = make_affiliate()
    order = pay_order(referred_order(shop, affiliate))
    settle_all()
    order_services.request_refund(
        request_id="g", order_id=order.pk, reason="x", source="dispute", funded_by_platform=True
    )
    assert affiliate_available(affiliate) == Decimal("0.00")
    books_balance()


# --- withdrawals ----------------------------------------------------------------------------------
def test_affiliate_withdrawal_holds_then_pays_or_releases(settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "5"
    affiliate = make_affiliate()
    for _i in range(3):
        pay_order(referred_order(shop, affiliate))
    settle_all()
    assert affiliate_available(affiliate) == Decimal("30.00")
    staff = UserFactory(is_staff=True)

    with pytest.raises(AffiliateWithdrawalNotAllowed):
        services.request_affiliate_withdrawal(
            affiliate=affiliate, amount=Decimal("30.01"), currency="CNY", payout_details="x"
        )
    with pytest.raises(AffiliateWithdrawalNotAllowed):
        services.request_affiliate_withdrawal(
            affiliate=affiliate, amount=Decimal("4"), currency="CNY", payout_details="x"
        )
    first = services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal("20"), currency="CNY", payout_details="alipay a@b"
    )
    second = services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal("10"), currency="CNY", payout_details="alipay a@b"
    )
    assert affiliate_available(affiliate) == 0
    with pytest.raises(AffiliateWithdrawalNotAllowed):
        services.decide_affiliate_withdrawal(withdrawal_id=first.pk, paid=True, actor=staff)

    services.decide_affiliate_withdrawal(
        withdrawal_id=first.pk, paid=True, payout_reference="PAY-1", actor=staff
    )
    services.decide_affiliate_withdrawal(withdrawal_id=second.pk, paid=False, actor=staff)
    with pytest.raises(AffiliateWithdrawalNotAllowed):
        services.decide_affiliate_withdrawal(withdrawal_id=second.pk, paid=True, actor=staff)

    assert affiliate_available(affiliate) == Decimal("10.00")
    assert ledger_selectors.balance(accounts.affiliate_withdrawing(affiliate, "CNY")) == 0
    assert ledger_selectors.balance(accounts.payouts("CNY")) == Decimal("20.00")
    assert list(AffiliateWithdrawal.objects.order_by("id").values_list("status", flat=True)) == [
        "paid",
        "rejected",
    ]
    books_balance()


def test_a_reversal_into_the_negative_blocks_withdrawals(settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    affiliate = make_affiliate()
    order = pay_order(referred_order(shop, affiliate))
    settle_all()
    services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal("10"), currency="CNY", payout_details="x"
    )
    order_services.request_refund(request_id="r", order_id=order.pk, reason="x", source="staff")
    assert affiliate_available(affiliate) == Decimal("-10.00")
    with pytest.raises(AffiliateWithdrawalNotAllowed):
        services.request_affiliate_withdrawal(
            affiliate=affiliate, amount=Decimal("1"), currency="CNY", payout_details="x"
        )
    books_balance()


# --- pages ----------------------------------------------------------------------------------------
def test_sign_up_then_dashboard_shows_clicks_orders_and_earnings(client, settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    response = client.post(
        reverse("affiliates:signup"),
        {"email": "New.Aff@example.com", "password": "a-long-enough-passphrase-42"},
    )
    assert response.status_code == 302
    affiliate = selectors.affiliate_for_user(response.wsgi_request.user)
    assert affiliate is not None and affiliate.user.email == "new.aff@example.com"
    client.__class__().get(store_url(shop.merchant, affiliate.code))
    pay_order(referred_order(shop, affiliate))
    settle_all()

    page = client.get(reverse("affiliates:dashboard"))

    assert page.status_code == 200
    summary = page.context["summary"]
    assert (summary.clicks, summary.orders, summary.paid_orders) == (1, 1, 1)
    assert [(b.currency, b.available) for b in summary.balances] == [("CNY", Decimal("10.00"))]
    with pytest.raises(SignUpRefused):
        services.sign_up_affiliate(email="new.aff@example.com", password="another-long-pass-99")


def test_withdraw_from_the_dashboard(client, settings, shop):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    affiliate = make_affiliate()
    pay_order(referred_order(shop, affiliate))
    settle_all()
    client.force_login(affiliate.user)
    response = client.post(
        reverse("affiliates:withdraw"),
        {"amount": "7.50", "currency": "CNY", "payout_details": "usdt T123"},
    )
    assert response.status_code == 302
    withdrawal = AffiliateWithdrawal.objects.get()
    assert (withdrawal.amount, withdrawal.affiliate) == (Decimal("7.50"), affiliate)
    assert affiliate_available(affiliate) == Decimal("2.50")


def staff_and_a_request(client, settings, product, amount: str):
    """An affiliate with 10.00 CNY earned asks for ``amount``; staff is signed in to ``client``."""
    from tests.conftest import verify_otp

    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    affiliate = make_affiliate()
    pay_order(referred_order(product, affiliate))
    settle_all()
    withdrawal = services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal(amount), currency="CNY", payout_details="x"
    )
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    verify_otp(client, staff)
    return affiliate, withdrawal, staff


def test_staff_pay_an_affiliate_withdrawal_in_the_admin(client, settings, shop):
    _affiliate, withdrawal, _staff = staff_and_a_request(client, settings, shop, "10")
    url = reverse("admin:affiliates_affiliatewithdrawal_decide", args=[withdrawal.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"payout_reference": "BANK-9", "note": "", "pay": "1"})
    assert response.status_code == 302
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.payout_reference) == ("paid", "BANK-9")
    books_balance()


def test_staff_reject_an_affiliate_withdrawal_in_the_admin(client, settings, shop):
    affiliate, withdrawal, staff = staff_and_a_request(client, settings, shop, "4")
    url = reverse("admin:affiliates_affiliatewithdrawal_decide", args=[withdrawal.pk])

    # Paying needs a payout reference: the refusal is shown on the form, nothing changes.
    refused = client.post(url, {"payout_reference": " ", "note": "", "pay": "1"})
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors() == ["Record the payout reference."]
    withdrawal.refresh_from_db()
    assert withdrawal.status == "requested"

    response = client.post(url, {"payout_reference": "", "note": " unknown wallet ", "reject": "1"})
    assert response.status_code == 302
    assert response.url == reverse("admin:affiliates_affiliatewithdrawal_changelist")
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.decision_note, withdrawal.decided_by) == (
        "rejected",
        "unknown wallet",
        staff,
    )
    assert affiliate_available(affiliate) == Decimal("10.00")

    # The request's own page lists its fields in their usual order, the affiliate first.
    change_url = reverse("admin:affiliates_affiliatewithdrawal_change", args=[withdrawal.pk])
    assert admin_fields_shown(client, change_url) == [
        "affiliate",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decision_note",
        "decided_by",
        "decided_at",
    ]
    books_balance()


def test_affiliate_login_page_signs_in_to_the_dashboard(client, db):
    affiliate = make_affiliate("login@example.com")
    assert client.get(reverse("affiliates:dashboard")).status_code == 302
    response = client.post(
        reverse("affiliates:login"),
        {"username": "login@example.com", "password": "pw-for-tests-123"},
    )
    assert response.status_code == 302
    assert response.url == reverse("affiliates:dashboard")
    page = client.get(reverse("affiliates:dashboard"))
    assert page.context["affiliate"] == affiliate


def test_a_signed_in_user_without_an_affiliate_identity_can_join(client, db):
    user = UserFactory()
    client.force_login(user)
    assert client.get(reverse("affiliates:dashboard")).templates[0].name == "affiliates/join.html"
    assert client.post(reverse("affiliates:join")).status_code == 302
    assert client.post(reverse("affiliates:join")).status_code == 302
    assert selectors.affiliate_for_user(user) is not None
