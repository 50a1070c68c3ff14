"""The growth part of ``seed_demo``: coupons, wholesale tiers, an affiliate programme and its
demo affiliate, a resale offer and listing, delivered orders with reviews, product views, a
customer note and notification settings. Written through the apps' services wherever one exists
(orders are placed, paid through the sandbox gateway's signed callback and delivered from
stock, so keys are really sold and the ledger posts the sales). Idempotent: whatever exists is
kept, nothing is created twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.test.utils import override_settings

from affiliates import services as affiliate_services
from affiliates.models import Affiliate, AffiliateProgramme, ResaleListing, ResaleOffer
from merchants import services as merchant_services
from merchants.customers import customer_key
from merchants.models import CustomerNote, Merchant, ProductViewDay
from orders import services as order_services
from orders.gateways.base import CallbackRequest
from orders.gateways.registry import get_gateway
from orders.gateways.sandbox import SandboxGateway
from orders.models import Order, Payment
from promotions.models import Coupon, PriceTier
from reviews import services as review_services
from reviews.models import Review
from shop.exceptions import CardvaultError
from shop.models import Product
from webhooks import services as webhook_services
from webhooks.models import NotificationSettings

DEMO_BASE_URL = "http://127.0.0.1:8000/"
AFFILIATE_EMAIL = "affiliate@example.com"


@dataclass(frozen=True)
class PlannedOrder:
    """One demo purchase. ``(merchant of the product, product, email, quantity)`` identifies it
    on a rerun, so every planned order differs in one of them."""

    store: str  # "nebula" or "panda": whose product is bought
    product: str
    email: str
    quantity: int = 1
    coupon: str = ""
    referred: bool = False  # through the demo affiliate's link
    resold: bool = False  # through Panda's resale listing of the product
    rating: int = 0
    comment: str = ""
    reply: str = ""


COUPONS = [
    # store, code, kind, value, currency, minimum order amount
    ("nebula", "WELCOME10", Coupon.Kind.PERCENT, Decimal("10"), "", None),
    ("panda", "SAVE5", Coupon.Kind.FIXED, Decimal("5.00"), "CNY", Decimal("20.00")),
]
TIERS = [(3, Decimal("55.00")), (5, Decimal("52.00"))]  # on nebula's stellar-odyssey

ORDERS = [
    PlannedOrder(
        "nebula",
        "stellar-odyssey",
        "lin@buyers.example",
        rating=5,
        comment="Key arrived in seconds and activated on Steam first time.",
        reply="Thanks Lin, have fun out there among the stars!",
    ),
    PlannedOrder("nebula", "stellar-odyssey", "lin@buyers.example", quantity=3),
    PlannedOrder(
        "nebula",
        "gift-card-100",
        "mia@buyers.example",
        coupon="WELCOME10",
        rating=4,
        comment="Worked fine. A ¥200 card would be nice too.",
    ),
    PlannedOrder(
        "nebula",
        "stellar-odyssey-deluxe",
        "noah@buyers.example",
        referred=True,
        rating=5,
        comment="Deluxe edition, instant delivery. Recommended by a friend.",
    ),
    PlannedOrder("nebula", "vpn-shared", "mia@buyers.example"),
    PlannedOrder("nebula", "gift-card-100", "ava@buyers.example", resold=True),
    PlannedOrder(
        "panda",
        "office-suite",
        "lin@buyers.example",
        coupon="SAVE5",
        rating=5,
        comment="激活成功，速度很快。",
        reply="感谢支持，有问题随时联系我们！",
    ),
    PlannedOrder(
        "panda",
        "office-suite-year",
        "chen@buyers.example",
        rating=3,
        comment="能用，但希望有更详细的安装说明。",
    ),
]

PRODUCT_VIEWS = {  # store, product: views recorded today
    ("nebula", "stellar-odyssey"): 40,
    ("nebula", "stellar-odyssey-deluxe"): 18,
    ("nebula", "gift-card-100"): 25,
    ("nebula", "vpn-shared"): 9,
    ("panda", "office-suite"): 22,
    ("panda", "office-suite-year"): 11,
}


@dataclass
class GrowthSummary:
    coupons: list[Coupon]
    affiliate: Affiliate
    affiliate_password: str
    listing: ResaleListing
    orders_placed: int
    orders_delivered: int
    reviews: int
    warnings: list[str]


def seed_growth(
    *,
    stores: dict[str, Merchant],
    remember_password: Callable[[Any, bool, str | None], str],
) -> GrowthSummary:
    """``stores``: ``{"nebula": …, "panda": …}``; ``remember_password(user, created,
    password)`` returns the login's password (kept in ``.demo-passwords``)."""
    warnings: list[str] = []
    products = {
        (key, product.slug): product
        for key, merchant in stores.items()
        for product in Product.objects.filter(merchant=merchant)
    }
    coupons = _coupons(stores)
    _tiers(products[("nebula", "stellar-odyssey")])
    _programme(stores["nebula"])
    affiliate, affiliate_password = _affiliate(remember_password)
    listing = _resale(
        supplier=stores["nebula"],
        reseller=stores["panda"],
        product=products[("nebula", "gift-card-100")],
    )
    _notification_settings(stores)
    placed = delivered = reviews = 0
    if _sandbox_ready():
        # The demo buyers' mailboxes do not exist: their receipts stay in memory instead of
        # burying the printed logins in console e-mails (or bouncing off a real mail server).
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            placed, delivered, reviews = _orders(
                stores=stores,
                products=products,
                affiliate=affiliate,
                listing=listing,
                warnings=warnings,
            )
        _views(products)
        _customer_note(stores["nebula"], buyer="lin@buyers.example")
    else:
        warnings.append(
            "the sandbox gateway is off (SANDBOX_GATEWAY_ENABLED / SANDBOX_GATEWAY_SECRET): "
            "no demo orders or reviews"
        )
    return GrowthSummary(
        coupons=coupons,
        affiliate=affiliate,
        affiliate_password=affiliate_password,
        listing=listing,
        orders_placed=placed,
        orders_delivered=delivered,
        reviews=reviews,
        warnings=warnings,
    )


# --- what merchants set up in the merchant centre (no service: the admin forms' model writes) ---
def _coupons(stores: dict[str, Merchant]) -> list[Coupon]:
    coupons = []
    for store, code, kind, value, currency, minimum in COUPONS:
        coupon = Coupon.objects.filter(merchant=stores[store], code__iexact=code).first()
        if coupon is None:
            coupon = Coupon(
                merchant=stores[store],
                code=code,
                kind=kind,
                value=value,
                currency=currency,
                min_order_amount=minimum,
            )
            coupon.full_clean()
            coupon.save()
        coupons.append(coupon)
    return coupons


def _tiers(product: Product) -> None:
    for min_quantity, unit_price in TIERS:
        if not PriceTier.objects.filter(product=product, min_quantity=min_quantity).exists():
            tier = PriceTier(product=product, min_quantity=min_quantity, unit_price=unit_price)
            tier.full_clean()
            tier.save()


def _programme(merchant: Merchant) -> None:
    if not AffiliateProgramme.objects.filter(merchant=merchant).exists():
        programme = AffiliateProgramme(
            merchant=merchant, enabled=True, commission_rate=Decimal("0.1000")
        )
        programme.full_clean()
        programme.save()


def _resale(*, supplier: Merchant, reseller: Merchant, product: Product) -> ResaleListing:
    offer = ResaleOffer.objects.filter(product=product).first()
    if offer is None:
        offer = ResaleOffer(product=product, merchant=supplier, floor_price=Decimal("85.00"))
        offer.full_clean()
        offer.save()
    listing = ResaleListing.objects.filter(merchant=reseller, offer=offer).first()
    if listing is None:
        listing = ResaleListing(merchant=reseller, offer=offer, price=Decimal("99.00"))
        listing.full_clean()
        listing.save()
    return listing


def _notification_settings(stores: dict[str, Merchant]) -> None:
    languages = {"nebula": "en", "panda": "zh-hans"}
    for store, merchant in stores.items():
        if not NotificationSettings.objects.filter(merchant=merchant).exists():
            webhook_services.save_notification_settings(
                merchant=merchant,
                language=languages[store],
                email_enabled=True,
                notify_every_order=False,
                telegram_chat_id="",
                telegram_token=None,
            )


# --- the demo affiliate ---------------------------------------------------------------------------
def _affiliate(remember_password: Callable[[Any, bool, str | None], str]) -> tuple[Affiliate, str]:
    from secrets import token_urlsafe

    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=AFFILIATE_EMAIL).first()
    if user is None:
        password = token_urlsafe(12)
        affiliate = affiliate_services.sign_up_affiliate(email=AFFILIATE_EMAIL, password=password)
        return affiliate, remember_password(affiliate.user, True, password)
    return affiliate_services.join_as_affiliate(user=user), remember_password(user, False, None)


# --- orders, paid the way the sandbox gateway pays them -------------------------------------------
def _sandbox_ready() -> bool:
    return bool(settings.SANDBOX_GATEWAY_ENABLED and settings.SANDBOX_GATEWAY_SECRET)


def _orders(
    *,
    stores: dict[str, Merchant],
    products: dict[tuple[str, str], Product],
    affiliate: Affiliate,
    listing: ResaleListing,
    warnings: list[str],
) -> tuple[int, int, int]:
    """Every planned order placed and paid (unless it exists), its review and reply given.
    Returns how many orders were new, how many are delivered and how many reviewed."""
    placed = delivered = reviews = 0
    for plan in ORDERS:
        try:
            order, new = _order(plan, products=products, affiliate=affiliate, listing=listing)
        except CardvaultError as exc:  # out of stock, a paused product or listing…
            warnings.append(
                f"demo order of {plan.product} for {plan.email} not placed: {type(exc).__name__}"
            )
            continue
        placed += new
        if order.delivered_at is None:
            warnings.append(f"demo order {order.number} is {order.status}, not delivered")
            continue
        delivered += 1
        reviews += _review(plan, order=order, owner=stores[plan.store].owner)
    return placed, delivered, reviews


def _order(
    plan: PlannedOrder,
    *,
    products: dict[tuple[str, str], Product],
    affiliate: Affiliate,
    listing: ResaleListing,
) -> tuple[Order, bool]:
    """The planned order, placed and paid unless it exists. Returns it and whether it is new."""
    product = products[(plan.store, plan.product)]
    existing = (
        Order.objects.filter(product=product, email=plan.email, quantity=plan.quantity)
        .order_by("created_at")
        .first()
    )
    if existing is not None:
        return existing, False
    if plan.resold:
        result = affiliate_services.checkout_resale(
            listing=listing,
            quantity=plan.quantity,
            email=plan.email,
            gateway_name="sandbox",
            base_url=DEMO_BASE_URL,
        )
    else:
        attach = None
        if plan.referred:
            attach = affiliate_services.referral_attacher(code=affiliate.code)
        result = order_services.checkout(
            product=product,
            quantity=plan.quantity,
            email=plan.email,
            gateway_name="sandbox",
            base_url=DEMO_BASE_URL,
            coupon_code=plan.coupon,
            attach=attach,
        )
    payment = Payment.objects.filter(order=result.order).order_by("-created_at").first()
    if payment is None:
        return result.order, True
    _pay(payment)
    result.order.refresh_from_db()
    return result.order, True


def _pay(payment: Payment) -> None:
    """What the sandbox pay page's "Pay" button does, minus the HTTP hop: the gateway signs a
    "paid" notification and the callback handler verifies and applies it."""
    gateway = get_gateway("sandbox")
    if not isinstance(gateway, SandboxGateway):
        raise TypeError(f"the sandbox gateway is {type(gateway).__name__}")
    body, headers = gateway.build_notification(payment=payment, status="paid")
    order_services.handle_callback(
        gateway_name="sandbox",
        request=CallbackRequest(method="POST", body=body, headers=headers, remote_ip="127.0.0.1"),
    )


def _review(plan: PlannedOrder, *, order: Order, owner: Any) -> int:
    """The planned review and reply of a delivered order, unless given already."""
    if not plan.rating:
        return 0
    review = Review.objects.filter(order=order).first()
    if review is None:
        review = review_services.submit_review(
            order=order, rating=plan.rating, comment=plan.comment
        )
    if plan.reply and not review.reply:
        review_services.reply_to_review(review=review, reply=plan.reply, actor=owner)
    return 1


def _views(products: dict[tuple[str, str], Product]) -> None:
    """Today's page views, so the dashboard's funnel has a top; only for products nobody has
    viewed yet."""
    counted = False
    for (store, slug), views in PRODUCT_VIEWS.items():
        product = products[(store, slug)]
        if ProductViewDay.objects.filter(product=product).exists():
            continue
        for _view in range(views):
            merchant_services.record_product_view(
                product_id=product.pk, merchant_id=product.merchant_id
            )
        counted = True
    if counted:
        merchant_services.flush_product_views()


def _customer_note(merchant: Merchant, *, buyer: str) -> None:
    """The merchant's tags and note on a repeat buyer, unless it has written its own."""
    key = customer_key(merchant_id=merchant.pk, buyer=buyer)
    if CustomerNote.objects.filter(merchant=merchant, customer_key=key).exists():
        return
    with transaction.atomic():
        merchant_services.save_customer_note(
            merchant=merchant,
            customer_key=key,
            tags="vip, wholesale",
            note="Buys Stellar Odyssey in bulk: mention the wholesale price from 3 keys.",
            actor=merchant.owner,
        )
