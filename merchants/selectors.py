"""Reads of the merchants app: who works for which merchant, admission look-ups and the metrics
of the daily inspection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from merchants.models import (
    InspectionReport,
    Merchant,
    MerchantApplication,
    MerchantInspection,
)

if TYPE_CHECKING:
    from shop.models import Product

RATE_PLACES = Decimal("0.0001")
SPIKE_BASELINE_DAYS = 14


def merchant_for_user(user: User | AnonymousUser) -> Merchant | None:
    """The merchant a user works for, or None. Suspended merchants still reach their admin (to
    see orders and fix what got them suspended); pending ones can prepare their store."""
    if not user.is_authenticated or not user.is_active:
        return None
    return Merchant.objects.filter(memberships__user=user).first()


def product_review_reason(product: Product, *, terms: list[str] | None = None) -> str:
    """Why a product is off the storefront, as its merchant is told (merchant centre and the
    held/rejected notice): staff's reason for a rejection; for a held product the prohibited
    term screening matched, or that an edit awaits staff review. Empty for a published one.
    ``terms`` (``shop.selectors.active_prohibited_terms``) saves a query a product in lists."""
    from shop import selectors as shop_selectors
    from shop.models import Product

    if product.review_status == Product.ReviewStatus.REJECTED:
        return product.review_note
    if product.review_status != Product.ReviewStatus.HELD:
        return ""
    # Checked against the text as it is now: after an edit of a rejected product the term
    # screening once matched (kept for the reviewer) may be gone.
    term = shop_selectors.find_prohibited_term(
        product.title, product.description, product.how_to_use, terms=terms
    )
    if term is not None:
        return _(
            "It contains the prohibited term “%(term)s”; the platform's staff will review it."
        ) % {"term": term}
    return _("Your changes are waiting for the platform's staff to review them.")


def store_slug_taken(*, slug: str) -> bool:
    """A store address already used by a merchant or asked for by an open application."""
    return (
        Merchant.objects.filter(slug=slug).exists()
        or MerchantApplication.objects.filter(
            slug=slug, status=MerchantApplication.Status.SUBMITTED
        ).exists()
    )


def merchant_language(*, merchant: Merchant) -> str:
    """The language to write to a merchant in: the one its application used, else the site's."""
    application = MerchantApplication.objects.filter(merchant=merchant).first()
    return application.language if application is not None else settings.LANGUAGE_CODE


def merchants_to_inspect(*, report: InspectionReport) -> QuerySet[Merchant]:
    """Selling merchants the day's report has no row for yet."""
    return (
        Merchant.objects.filter(status=Merchant.Status.ACTIVE)
        .exclude(inspections__report=report)
        .order_by("pk")
    )


def previous_prices(*, merchant: Merchant, before: InspectionReport) -> dict[str, str]:
    """Product prices recorded by the merchant's latest inspection before ``before``'s day."""
    previous = (
        MerchantInspection.objects.filter(merchant=merchant, report__day__lt=before.day)
        .order_by("-report__day")
        .values_list("prices", flat=True)
        .first()
    )
    return dict(previous or {})


def _rate(part: int, whole: int) -> Decimal:
    if whole == 0:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(RATE_PLACES)


@dataclass(frozen=True)
class MerchantMetrics:
    """What the daily inspection measures of one merchant. Rates are over the last
    ``INSPECTION_WINDOW_DAYS``: disputes (and invalid-key disputes) per delivered order, orders
    refunded per paid order. ``paid_last_day`` against ``daily_mean_before`` (the 14 days before
    it) is the sales spike."""

    delivered_orders: int
    paid_orders: int
    disputes: int
    invalid_key_disputes: int
    refunded_orders: int
    paid_last_day: int
    daily_mean_before: Decimal
    prices: dict[str, str]

    @property
    def dispute_rate(self) -> Decimal:
        return _rate(self.disputes, self.delivered_orders)

    @property
    def invalid_key_rate(self) -> Decimal:
        return _rate(self.invalid_key_disputes, self.delivered_orders)

    @property
    def refund_rate(self) -> Decimal:
        return _rate(self.refunded_orders, self.paid_orders)

    def as_dict(self) -> dict[str, object]:
        return {
            "delivered_orders": self.delivered_orders,
            "paid_orders": self.paid_orders,
            "disputes": self.disputes,
            "invalid_key_disputes": self.invalid_key_disputes,
            "refunded_orders": self.refunded_orders,
            "dispute_rate": str(self.dispute_rate),
            "invalid_key_rate": str(self.invalid_key_rate),
            "refund_rate": str(self.refund_rate),
            "paid_last_day": self.paid_last_day,
            "daily_mean_before": str(self.daily_mean_before),
        }


def merchant_metrics(*, merchant: Merchant, now: datetime) -> MerchantMetrics:
    from disputes.models import Dispute
    from orders.models import Order, Refund
    from shop.models import Product

    since = now - timedelta(days=settings.INSPECTION_WINDOW_DAYS)
    orders = Order.objects.filter(merchant=merchant)
    disputes = Dispute.objects.filter(order__merchant=merchant, created_at__gte=since)
    day_ago = now - timedelta(days=1)
    before = orders.filter(
        paid_at__gte=day_ago - timedelta(days=SPIKE_BASELINE_DAYS), paid_at__lt=day_ago
    ).count()
    return MerchantMetrics(
        delivered_orders=orders.filter(delivered_at__gte=since, delivered_at__lte=now).count(),
        paid_orders=orders.filter(paid_at__gte=since, paid_at__lte=now).count(),
        disputes=disputes.count(),
        invalid_key_disputes=disputes.filter(
            reason__in=[Dispute.Reason.KEY_INVALID, Dispute.Reason.KEY_USED]
        ).count(),
        refunded_orders=Refund.objects.filter(order__merchant=merchant, created_at__gte=since)
        .exclude(status=Refund.Status.FAILED)
        .values("order")
        .distinct()
        .count(),
        paid_last_day=orders.filter(paid_at__gte=day_ago, paid_at__lte=now).count(),
        daily_mean_before=(Decimal(before) / SPIKE_BASELINE_DAYS).quantize(RATE_PLACES),
        prices={
            str(pk): str(price)
            for pk, price in Product.objects.filter(merchant=merchant).values_list("pk", "price")
        },
    )
