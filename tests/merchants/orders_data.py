"""Orders written straight into the table (bulk_create), with the times a test needs: analytics
and CRM read history, which the payment flow cannot backdate."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from disputes.models import Dispute
from merchants.models import ProductViewDay
from orders.models import Order
from shop.models import Product

ORDER_TTL = timedelta(minutes=15)
_numbers = itertools.count(1)


def order(
    *,
    product,
    amount: str | Decimal,
    paid_at: datetime | None,
    created_at: datetime | None = None,
    status: str = Order.Status.DELIVERED,
    quantity: int = 1,
    currency: str = "CNY",
    email: str = "buyer@example.com",
    anonymised_at: datetime | None = None,
) -> Order:
    """An unsaved order; ``save_orders`` writes it with ``created_at`` (default: ``paid_at``)."""
    created = created_at or paid_at
    assert created is not None
    amount = Decimal(amount)
    token = uuid.uuid4().hex
    return Order(
        number=f"T{next(_numbers):012d}{token[:6]}",
        merchant_id=product.merchant_id,
        product=product,
        quantity=quantity,
        unit_price=amount / quantity,
        amount=amount,
        currency=currency,
        status=status,
        email=email,
        token_nonce=token,
        token_hash=token * 2,
        # created_at is auto_now_add: it is set from expires_at after the insert.
        expires_at=created + ORDER_TTL,
        paid_at=paid_at,
        delivered_at=paid_at if status == Order.Status.DELIVERED else None,
        anonymised_at=anonymised_at,
    )


def save_orders(orders: list[Order], *, batch_size: int = 2000) -> list[Order]:
    saved = Order.objects.bulk_create(orders, batch_size=batch_size)
    Order.objects.filter(pk__in=[o.pk for o in saved]).update(
        created_at=F("expires_at") - ORDER_TTL
    )
    return saved


# --- a seeded year ------------------------------------------------------------------------------
YEAR_ORDERS = 20_000
YEAR_STEP = timedelta(minutes=26)  # 20 000 orders × 26 minutes ≈ 361 days


@dataclass
class SeededYear:
    """A year of one merchant's orders, written in bulk: every ``YEAR_STEP`` back from ``now`` an
    order of the next product (one of them in USD), 1–3 units at varying prices; every 13th placed
    and never paid, every 50th refunded, every 70th partly refunded, every 97th disputed; daily
    product views. The tests recompute every chart from these Python objects."""

    now: datetime
    products: list[Product]
    orders: list[Order]
    disputed: set[int] = field(default_factory=set)
    views: dict[tuple[int, date], int] = field(default_factory=dict)


def seed_year(*, merchant, products: list[Product], now: datetime) -> SeededYear:
    rows = []
    for index in range(YEAR_ORDERS):
        moment = now - YEAR_STEP * index - timedelta(minutes=1)
        product = products[index % len(products)]
        quantity = 1 + index % 3
        unit = Decimal(5 + index % 7) + Decimal("0.25") * (index % 4)
        paid = index % 13 != 5
        status = Order.Status.DELIVERED
        if not paid:
            status = Order.Status.EXPIRED
        elif index % 50 == 0:
            status = Order.Status.REFUNDED
        elif index % 70 == 1:
            status = Order.Status.PARTIALLY_REFUNDED
        rows.append(
            order(
                product=product,
                amount=unit * quantity,
                quantity=quantity,
                currency=product.currency,
                paid_at=moment if paid else None,
                created_at=moment,
                status=status,
                email=f"buyer{index % 3000}@example.com",
            )
        )
    saved = save_orders(rows, batch_size=5000)
    for row in saved:  # what save_orders wrote
        row.created_at = row.expires_at - ORDER_TTL
    disputed = [row for index, row in enumerate(saved) if index % 97 == 3 and row.paid_at]
    Dispute.objects.bulk_create(
        [Dispute(order=row, reason=Dispute.Reason.KEY_INVALID) for row in disputed]
    )
    tz = timezone.get_default_timezone()
    today = timezone.localdate(now, tz)
    views = {
        (product.pk, today - timedelta(days=back)): 1 + (back * 7 + position) % 23
        for back in range(366)
        for position, product in enumerate(products)
    }
    ProductViewDay.objects.bulk_create(
        [
            ProductViewDay(merchant=merchant, product_id=product_id, day=day, views=count)
            for (product_id, day), count in views.items()
        ],
        batch_size=5000,
    )
    return SeededYear(
        now=now,
        products=products,
        orders=saved,
        disputed={row.pk for row in disputed},
        views=views,
    )
