"""Reads of the affiliates app: the referral cookie, dashboards, resale catalogues and reports."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth.models import AnonymousUser, User
from django.core import signing
from django.db.models import Count, F, Q, QuerySet, Sum
from django.http import HttpRequest

from affiliates.models import Affiliate, Referral, ResaleListing, ResaleOffer, ResaleSale
from ledger.models import Entry, Journal
from merchants.models import Merchant
from orders.models import Order
from shop import selectors as shop_selectors
from shop.models import Product

REFERRAL_COOKIE = "cv_ref"
REFERRAL_SALT = "affiliates.referral"
REFERRAL_MAX_AGE = 30 * 24 * 3600  # 30 days


def referral_code(request: HttpRequest) -> str:
    """The affiliate code this visitor arrived with in the last 30 days, or ""."""
    try:
        code = request.get_signed_cookie(
            REFERRAL_COOKIE, default="", salt=REFERRAL_SALT, max_age=REFERRAL_MAX_AGE
        )
    except signing.BadSignature:
        return ""
    return code or ""


def affiliate_for_user(user: User | AnonymousUser) -> Affiliate | None:
    if not user.is_authenticated:
        return None
    return Affiliate.objects.filter(user_id=user.pk).first()


@dataclass(frozen=True, slots=True)
class AffiliateBalance:
    currency: str
    available: Decimal
    withdrawing: Decimal
    pending_commission: Decimal  # expected from referred orders not settled yet


@dataclass(frozen=True, slots=True)
class AffiliateSummary:
    clicks: int
    orders: int
    paid_orders: int
    balances: list[AffiliateBalance]


_PAID_STATUSES = [
    Order.Status.PAID,
    Order.Status.HELD,
    Order.Status.DELIVERED,
    Order.Status.UNFULFILLED,
    Order.Status.PARTIALLY_REFUNDED,
]


def affiliate_summary(*, affiliate: Affiliate) -> AffiliateSummary:
    """Clicks, referred orders and earnings per currency (balances are sums of ledger entries)."""
    counts = Referral.objects.filter(affiliate=affiliate).aggregate(
        orders=Count("id"), paid=Count("id", filter=Q(order__status__in=_PAID_STATUSES))
    )
    figures: dict[str, dict[str, Decimal]] = {}
    rows = (
        Entry.objects.filter(account__affiliate=affiliate)
        .values("account__code", "account__currency")
        .annotate(s=Sum("amount"))
    )
    for row in rows:
        kind = row["account__code"].rsplit(":", 1)[-1]
        figures.setdefault(row["account__currency"], {})[kind] = -(row["s"] or Decimal(0))
    pending = list(
        Referral.objects.filter(
            affiliate=affiliate, status=Referral.Status.PENDING, order__status__in=_PAID_STATUSES
        )
        .values("order_id", "currency", "order__amount", "commission_rate")
        .order_by()
    )
    # What buyers already got back of those orders' sales (money leaving the gateway's
    # clearing); the automatic refund of a duplicate payment names no merchant and is not one.
    refunded = {
        row["journal__order_id"]: row["s"]
        for row in Entry.objects.filter(
            journal__order_id__in=[item["order_id"] for item in pending],
            journal__kind__in=[Journal.Kind.REFUND, Journal.Kind.COMPENSATION],
            journal__merchant__isnull=False,
            account__code="platform:clearing",
        )
        .values("journal__order_id")
        .annotate(s=Sum("amount"))
        .order_by()
    }
    for item in pending:
        bucket = figures.setdefault(item["currency"], {})
        base = item["order__amount"] + refunded.get(item["order_id"], Decimal(0))
        expected = (base * item["commission_rate"]).quantize(Decimal("0.01"), ROUND_HALF_UP)
        bucket["expected"] = bucket.get("expected", Decimal(0)) + max(expected, Decimal(0))
    return AffiliateSummary(
        clicks=affiliate.clicks,
        orders=counts["orders"] or 0,
        paid_orders=counts["paid"] or 0,
        balances=[
            AffiliateBalance(
                currency=currency,
                available=values.get("available", Decimal(0)),
                withdrawing=values.get("withdrawing", Decimal(0)),
                pending_commission=values.get("expected", Decimal(0)),
            )
            for currency, values in sorted(figures.items())
        ],
    )


def affiliate_referrals(*, affiliate: Affiliate) -> QuerySet[Referral]:
    return (
        Referral.objects.filter(affiliate=affiliate)
        .select_related("order", "merchant")
        .order_by("-created_at")
    )


def enabled_programmes() -> QuerySet[Merchant]:
    """Stores an affiliate can promote."""
    return Merchant.objects.filter(
        status=Merchant.Status.ACTIVE, affiliate_programme__enabled=True
    ).select_related("affiliate_programme")


# --- reselling ------------------------------------------------------------------------------------
def sellable_listings_filter(prefix: str = "") -> Q:
    """A listing can be bought when it, its offer, the supplier's product (and, for an option,
    the listing it belongs to) and both merchants are all on, and its price is still at or above
    the offer's floor: a supplier pausing its product or its parent listing pauses it in every
    reseller's store, and raising the floor above a reseller's price takes that listing down
    until the reseller reprices it."""
    p = prefix
    return Q(
        **{
            f"{p}is_active": True,
            f"{p}price__gte": F(f"{p}offer__floor_price"),
            f"{p}offer__is_open": True,
            f"{p}offer__product__is_active": True,
            f"{p}offer__product__review_status": Product.ReviewStatus.PUBLISHED,
            f"{p}offer__merchant__status": Merchant.Status.ACTIVE,
            f"{p}merchant__status": Merchant.Status.ACTIVE,
        }
    ) & (
        # An option is on sale only under a listing that is (paused or held, it pauses them all).
        Q(**{f"{p}offer__product__variant_of__isnull": True})
        | Q(
            **{
                f"{p}offer__product__variant_of__is_active": True,
                f"{p}offer__product__variant_of__review_status": Product.ReviewStatus.PUBLISHED,
            }
        )
    )


@dataclass(frozen=True, slots=True)
class StoreResaleItem:
    """A partner's product on a reseller's storefront: the reseller's listing (its price) and
    the supplier's live stock (``None``: unlimited)."""

    listing: ResaleListing
    stock: int | None


def store_resale_listings(*, merchant: Merchant) -> list[StoreResaleItem]:
    """What a reseller's storefront shows from its suppliers, with the suppliers' stock counted
    in one query."""
    listings = list(
        ResaleListing.objects.filter(sellable_listings_filter(), merchant=merchant)
        .select_related("offer__product", "offer__merchant")
        .order_by("offer__product__title", "id")
    )
    free = {
        product.pk: getattr(product, "free_keys", 0)
        for product in shop_selectors.with_stock(
            Product.objects.filter(pk__in={item.offer.product_id for item in listings})
        ).only("pk")
    }
    items = []
    for item in listings:
        product = item.offer.product
        product.free_keys = free.get(product.pk, 0)  # type: ignore[attr-defined]
        items.append(StoreResaleItem(listing=item, stock=shop_selectors.stock_left(product)))
    return items


def get_sellable_listing(*, merchant: Merchant, listing_id: int) -> ResaleListing | None:
    return (
        ResaleListing.objects.filter(sellable_listings_filter(), merchant=merchant, pk=listing_id)
        .select_related("offer__product__merchant", "offer__merchant", "merchant")
        .first()
    )


def open_offers_for(*, reseller: Merchant) -> QuerySet[ResaleOffer]:
    """Offers a reseller may list: open, of other active merchants, on sale."""
    return (
        ResaleOffer.objects.filter(
            Q(product__variant_of__isnull=True) | Q(product__variant_of__is_active=True),
            is_open=True,
            product__is_active=True,
            merchant__status=Merchant.Status.ACTIVE,
        )
        .exclude(merchant=reseller)
        .select_related("product", "merchant")
    )


@dataclass(frozen=True, slots=True)
class ResellerReportRow:
    reseller_id: int
    reseller_name: str
    product_id: int
    product_title: str
    listing_price: Decimal | None
    listing_active: bool
    orders: int
    units: int
    supplier_revenue: Decimal


def supplier_report(*, supplier: Merchant) -> list[ResellerReportRow]:
    """Resellers × products for one supplier: every listing of its offers, with paid sales."""
    sold = {
        (row["reseller_id"], row["order__product_id"]): row
        for row in ResaleSale.objects.filter(supplier=supplier, order__status__in=_PAID_STATUSES)
        .values("reseller_id", "order__product_id")
        .annotate(orders=Count("id"), units=Sum("order__quantity"))
        .order_by()
    }
    money: dict[tuple[int, int], Decimal] = {}
    for sale in ResaleSale.objects.filter(
        supplier=supplier, order__status__in=_PAID_STATUSES
    ).values("reseller_id", "order__product_id", "supplier_unit_price", "order__quantity"):
        key = (sale["reseller_id"], sale["order__product_id"])
        money[key] = (
            money.get(key, Decimal(0)) + sale["supplier_unit_price"] * sale["order__quantity"]
        )
    rows: list[ResellerReportRow] = []
    for listing in ResaleListing.objects.filter(offer__merchant=supplier).select_related(
        "merchant", "offer__product"
    ):
        key = (listing.merchant_id, listing.offer.product_id)
        stats = sold.get(key, {})
        rows.append(
            ResellerReportRow(
                reseller_id=listing.merchant_id,
                reseller_name=listing.merchant.name,
                product_id=listing.offer.product_id,
                product_title=listing.offer.product.title,
                listing_price=listing.price,
                listing_active=listing.is_active,
                orders=stats.get("orders", 0),
                units=stats.get("units", 0) or 0,
                supplier_revenue=money.get(key, Decimal(0)),
            )
        )
    rows.sort(key=lambda r: (r.reseller_name, r.product_title))
    return rows
