"""Reads of the promotions app: wholesale unit prices, coupon look-up and checks, price quotes.

Coupon checks are pure reads; ``promotions.services.redeem_coupon`` repeats them under the
coupon's row lock, so a quote is advice and the locked check is the one that counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from promotions.exceptions import CouponRejected
from promotions.models import Coupon, CouponRedemption, PriceTier
from shop.models import Product

CENT = Decimal("0.01")
HUNDRED = Decimal("100")


# --- wholesale tiers ------------------------------------------------------------------------------
def tiers_by_product(*, product_ids: Iterable[int]) -> dict[int, list[PriceTier]]:
    """Every tier of the given products, lowest quantity first, in one query."""
    tiers: dict[int, list[PriceTier]] = {}
    for tier in PriceTier.objects.filter(product_id__in=list(product_ids)).order_by(
        "product_id", "min_quantity"
    ):
        tiers.setdefault(tier.product_id, []).append(tier)
    return tiers


def unit_price_for(
    *, product: Product, quantity: int, tiers: list[PriceTier] | None = None
) -> Decimal:
    """The unit price for ``quantity`` units: the tier with the largest ``min_quantity`` not
    above ``quantity``, else the product's price. ``tiers`` saves the query when known."""
    if tiers is None:
        tiers = tiers_by_product(product_ids=[product.pk]).get(product.pk, [])
    price = product.price
    for tier in tiers:
        if tier.min_quantity <= quantity:
            price = tier.unit_price
    return price


@dataclass(frozen=True, slots=True)
class TierRow:
    """One line of a product page's tiers table: ``low``–``high`` units at ``unit_price``."""

    low: int
    high: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class OptionTiers:
    product: Product
    rows: list[TierRow]


def listing_price_tiers(*, options: list[Product]) -> list[OptionTiers]:
    """For the product page: each option that has tiers, as quantity ranges within its order
    limits (the product's own price first), in one query for all options."""
    tiers = tiers_by_product(product_ids=[option.pk for option in options])
    tables: list[OptionTiers] = []
    for option in options:
        # From the smallest quantity one may order, at what that quantity really costs (a tier
        # starting at or below it already applies there).
        first_price = unit_price_for(
            product=option, quantity=option.min_quantity, tiers=tiers.get(option.pk, [])
        )
        bounds = [(option.min_quantity, first_price)] + [
            (tier.min_quantity, tier.unit_price)
            for tier in tiers.get(option.pk, [])
            if option.min_quantity < tier.min_quantity <= option.max_quantity
        ]
        if len(bounds) < 2:
            continue
        rows = [
            TierRow(
                low=low,
                high=bounds[i + 1][0] - 1 if i + 1 < len(bounds) else option.max_quantity,
                unit_price=price,
            )
            for i, (low, price) in enumerate(bounds)
        ]
        tables.append(OptionTiers(product=option, rows=rows))
    return tables


# --- coupons --------------------------------------------------------------------------------------
def buyer_key(email: str) -> str:
    """Who a buyer is for per-buyer limits: an HMAC of the trimmed, lower-cased email."""
    return salted_hmac("promotions.buyer", email.strip().lower(), algorithm="sha256").hexdigest()


def normalise_code(code: str) -> str:
    return code.strip().upper()


def find_coupon(*, merchant_id: int, code: str) -> Coupon | None:
    """The store's coupon with this code (not case-sensitive); another store's code is none."""
    code = normalise_code(code)
    if not code:
        return None
    return Coupon.objects.filter(merchant_id=merchant_id, code__iexact=code).first()


def live_uses_by_buyer(*, coupon_id: int, buyer: str) -> int:
    return CouponRedemption.objects.filter(
        coupon_id=coupon_id, buyer_key=buyer, released_at__isnull=True
    ).count()


def coupon_discount(
    *, coupon: Coupon, product: Product, subtotal: Decimal, buyer: str, now: datetime
) -> Decimal:
    """The discount ``coupon`` gives on ``subtotal`` of ``product`` for ``buyer``, never more
    than leaves one cent to pay. Raises ``CouponRejected`` with the buyer-facing reason."""
    if not coupon.is_active or coupon.merchant_id != product.merchant_id:
        raise CouponRejected("invalid", _("This coupon code is not valid."))
    if coupon.valid_from is not None and now < coupon.valid_from:
        raise CouponRejected("not_yet_valid", _("This coupon code is not valid yet."))
    if coupon.valid_until is not None and now >= coupon.valid_until:
        raise CouponRejected("expired", _("This coupon code has expired."))
    if coupon.usage_limit is not None and coupon.times_used >= coupon.usage_limit:
        raise CouponRejected("used_up", _("This coupon code has been used up."))
    if coupon.currency and coupon.currency != product.currency:
        raise CouponRejected(
            "not_applicable", _("This coupon code does not apply to this product.")
        )
    if coupon.scope == Coupon.Scope.PRODUCTS:
        covered = [product.pk] + ([product.variant_of_id] if product.variant_of_id else [])
        if not coupon.products.filter(pk__in=covered).exists():
            raise CouponRejected(
                "not_applicable", _("This coupon code does not apply to this product.")
            )
    if coupon.min_order_amount is not None and subtotal < coupon.min_order_amount:
        raise CouponRejected(
            "minimum",
            _("This coupon code needs an order of at least %(amount)s %(currency)s.")
            % {"amount": coupon.min_order_amount, "currency": coupon.currency},
        )
    if coupon.per_buyer_limit is not None and (
        live_uses_by_buyer(coupon_id=coupon.pk, buyer=buyer) >= coupon.per_buyer_limit
    ):
        raise CouponRejected(
            "buyer_limit", _("You have already used this coupon code as often as allowed.")
        )
    if coupon.kind == Coupon.Kind.PERCENT:
        # Rounded down: the buyer never gets more than the stated percentage.
        discount = (subtotal * coupon.value / HUNDRED).quantize(CENT, rounding=ROUND_DOWN)
    else:
        discount = coupon.value
    # An order must cost something (gateways take no zero payments): at least one cent remains.
    return max(min(discount, subtotal - CENT), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class Quote:
    """What a checkout costs: wholesale unit price × quantity, less the coupon's discount."""

    unit_price: Decimal
    subtotal: Decimal
    discount: Decimal
    amount: Decimal
    coupon: Coupon | None


def quote_order(
    *,
    product: Product,
    quantity: int,
    coupon_code: str,
    email: str,
    now: datetime,
    unit_price: Decimal | None = None,
) -> Quote:
    """Price ``quantity`` units of ``product`` with an optional coupon code. ``unit_price``
    (a reseller's price) replaces the product's price and its wholesale tiers. Raises
    ``CouponRejected`` for a code that is unknown (or another store's), inactive, outside its
    window, used up, over the buyer's limit, for other products or below its minimum, and for
    any code on a reseller's price: the supplier's coupons are not the reseller's to give, and
    a discount there would cut into the supplier's floor price the ledger pays out."""
    resale = unit_price is not None
    if unit_price is None:
        unit_price = unit_price_for(product=product, quantity=quantity)
    subtotal = (unit_price * quantity).quantize(CENT)
    coupon: Coupon | None = None
    discount = Decimal("0.00")
    if normalise_code(coupon_code) and resale:
        raise CouponRejected(
            "not_applicable", _("This coupon code does not apply to this product.")
        )
    if normalise_code(coupon_code):
        coupon = find_coupon(merchant_id=product.merchant_id, code=coupon_code)
        if coupon is None:
            raise CouponRejected("invalid", _("This coupon code is not valid."))
        discount = coupon_discount(
            coupon=coupon, product=product, subtotal=subtotal, buyer=buyer_key(email), now=now
        )
    return Quote(
        unit_price=unit_price,
        subtotal=subtotal,
        discount=discount,
        amount=subtotal - discount,
        coupon=coupon,
    )
