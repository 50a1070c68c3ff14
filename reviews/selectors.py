"""Reads of reviews. Hidden reviews are in none of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Avg, Count, QuerySet, Window

from merchants.models import Merchant
from orders.models import Order
from reviews.models import Review

STORE_REVIEWS_SHOWN = 5


@dataclass(frozen=True)
class StoreReviews:
    average: Decimal | None  # one decimal place; None without reviews
    count: int
    latest: Sequence[Review]


def visible_reviews(*, merchant: Merchant) -> QuerySet[Review]:
    return Review.objects.filter(merchant=merchant, is_hidden=False)


def store_reviews(*, merchant: Merchant, limit: int = STORE_REVIEWS_SHOWN) -> StoreReviews:
    """Average, count and the latest ``limit`` visible reviews in one query: the average and
    count are window aggregates over every visible review, computed before the LIMIT."""
    latest = list(
        visible_reviews(merchant=merchant)
        .select_related("product")
        .annotate(
            store_average=Window(expression=Avg("rating")),
            store_count=Window(expression=Count("id")),
        )
        .order_by("-created_at", "-id")[:limit]
    )
    if not latest:
        return StoreReviews(average=None, count=0, latest=[])
    first = latest[0]
    average = Decimal(str(first.store_average)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return StoreReviews(average=average, count=first.store_count, latest=latest)


def review_for_order(*, order: Order) -> Review | None:
    return Review.objects.filter(order=order).first()
