"""Reads of the merchant dashboard (/merchant/analytics/). Everything is aggregated in SQL, a
handful of queries whatever the number of orders:

- daily: orders paid and gross revenue per day (per currency) over the last 7, 30 or 90 days,
  days in the site's time zone (``TruncDate`` with ``TIME_ZONE``), empty days filled with zero;
- top products: units, orders and revenue of orders paid in the window;
- funnel: product page views (``ProductViewDay``) → orders placed → of those, paid;
- rates: of the orders paid in the window, the share refunded (fully or partly) and disputed;
- stock: free stock of each active product and days until sold out at the last 30 days' pace.

A "paid order" is one with ``paid_at`` set, whatever happened later (refund, dispute): revenue is
gross, and the refund rate says how much of it went back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from disputes.models import Dispute
from merchants.models import Merchant, ProductViewDay
from orders.models import Order
from orders.privacy import mask_email
from shop import selectors as shop_selectors
from shop.models import Product

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
PACE_DAYS = 30
TOP_PRODUCTS = 10
RATE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Window:
    days: int
    first_day: date
    last_day: date
    since: datetime  # first_day's midnight in the site's time zone
    until: datetime  # now


def window(*, days: int, now: datetime) -> Window:
    """The last ``days`` calendar days including today, in the site's time zone."""
    if days not in WINDOWS:
        days = DEFAULT_WINDOW
    tz = timezone.get_default_timezone()
    last_day = timezone.localdate(now, tz)
    first_day = last_day - timedelta(days=days - 1)
    since = datetime.combine(first_day, time.min, tzinfo=tz)
    return Window(days=days, first_day=first_day, last_day=last_day, since=since, until=now)


@dataclass(frozen=True)
class DailyPoint:
    day: date
    orders: int
    revenue: dict[str, Decimal]


@dataclass(frozen=True)
class TopProduct:
    product_id: int
    title: str
    currency: str
    units: int
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class Funnel:
    views: int
    orders: int
    paid: int


def _rate(part: int, whole: int) -> Decimal:
    return (Decimal(part) / whole).quantize(RATE_PLACES) if whole else Decimal(0)


@dataclass(frozen=True)
class Rates:
    paid_orders: int
    refunded_orders: int
    disputed_orders: int

    @property
    def refund_rate(self) -> Decimal:
        return _rate(self.refunded_orders, self.paid_orders)

    @property
    def dispute_rate(self) -> Decimal:
        return _rate(self.disputed_orders, self.paid_orders)


@dataclass(frozen=True)
class StockRow:
    product_id: int
    title: str
    stock_left: int | None  # None: unlimited (reusable without cap)
    sold_recently: int  # units paid in the last PACE_DAYS days
    days_left: Decimal | None  # None: unlimited, or nothing sold at all lately

    @property
    def per_day(self) -> Decimal:
        return (Decimal(self.sold_recently) / PACE_DAYS).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Dashboard:
    window: Window
    daily: list[DailyPoint]
    currencies: list[str]
    top_products: list[TopProduct]
    funnel: Funnel
    rates: Rates
    stock: list[StockRow]

    @property
    def daily_rows(self) -> list[tuple[DailyPoint, list[Decimal]]]:
        """The days with paid orders, each with its revenue in every currency of ``currencies``
        (in that order, zero where none): the table's columns line up whatever a day sold in."""
        return [
            (point, [point.revenue.get(code, Decimal("0.00")) for code in self.currencies])
            for point in self.daily
            if point.orders
        ]

    def chart_data(self) -> dict[str, Any]:
        """What the charts draw, JSON-ready (amounts as strings: Decimal stays exact)."""
        return {
            "daily": {
                "labels": [point.day.isoformat() for point in self.daily],
                "orders": [point.orders for point in self.daily],
                "revenue": {
                    code: [str(point.revenue.get(code, Decimal("0.00"))) for point in self.daily]
                    for code in self.currencies
                },
            },
            "top": {
                "labels": [f"{row.title} ({row.currency})" for row in self.top_products],
                "units": [row.units for row in self.top_products],
            },
            "funnel": [self.funnel.views, self.funnel.orders, self.funnel.paid],
            "stock": {
                "labels": [row.title for row in self.stock if row.days_left is not None],
                "days_left": [
                    str(row.days_left) for row in self.stock if row.days_left is not None
                ],
            },
        }


def _paid_in(merchant: Merchant, span: Window) -> QuerySet[Order]:
    return Order.objects.filter(merchant=merchant, paid_at__gte=span.since, paid_at__lte=span.until)


def daily_series(*, merchant: Merchant, span: Window) -> tuple[list[DailyPoint], list[str]]:
    """Orders and revenue per day and currency of the window, every day present. One query."""
    rows = (
        _paid_in(merchant, span)
        .annotate(day=TruncDate("paid_at", tzinfo=timezone.get_default_timezone()))
        .values("day", "currency")
        .annotate(revenue=Sum("amount"), orders=Count("id"))
        .order_by("day", "currency")
    )
    orders: dict[date, int] = {}
    revenue: dict[date, dict[str, Decimal]] = {}
    currencies: list[str] = []
    for row in rows:
        orders[row["day"]] = orders.get(row["day"], 0) + row["orders"]
        revenue.setdefault(row["day"], {})[row["currency"]] = row["revenue"]
        if row["currency"] not in currencies:
            currencies.append(row["currency"])
    points = []
    for offset in range(span.days):
        day = span.first_day + timedelta(days=offset)
        points.append(DailyPoint(day=day, orders=orders.get(day, 0), revenue=revenue.get(day, {})))
    return points, sorted(currencies)


def top_products(
    *, merchant: Merchant, span: Window, limit: int = TOP_PRODUCTS
) -> list[TopProduct]:
    """Best sellers of the window by units (then revenue), per product and currency. One query."""
    rows = (
        _paid_in(merchant, span)
        .values("product_id", "product__title", "product__variant_label", "currency")
        .annotate(units=Sum("quantity"), revenue=Sum("amount"), orders=Count("id"))
        .order_by("-units", "-revenue", "product_id")[:limit]
    )
    return [
        TopProduct(
            product_id=row["product_id"],
            title=" · ".join(filter(None, [row["product__title"], row["product__variant_label"]])),
            currency=row["currency"],
            units=row["units"],
            orders=row["orders"],
            revenue=row["revenue"],
        )
        for row in rows
    ]


def funnel(*, merchant: Merchant, span: Window) -> Funnel:
    """Product page views of the window's days → orders placed in the window → of those, paid.
    Two queries."""
    views = ProductViewDay.objects.filter(
        merchant=merchant, day__gte=span.first_day, day__lte=span.last_day
    ).aggregate(total=Sum("views"))["total"]
    placed = Order.objects.filter(
        merchant=merchant, created_at__gte=span.since, created_at__lte=span.until
    ).aggregate(orders=Count("id"), paid=Count("id", filter=Q(paid_at__isnull=False)))
    return Funnel(views=views or 0, orders=placed["orders"], paid=placed["paid"])


def rates(*, merchant: Merchant, span: Window) -> Rates:
    """Of the orders paid in the window: how many were refunded (fully or partly) and how many
    were disputed. One query."""
    totals = _paid_in(merchant, span).aggregate(
        paid=Count("id"),
        refunded=Count(
            "id",
            filter=Q(status__in=[Order.Status.REFUNDED, Order.Status.PARTIALLY_REFUNDED]),
        ),
        disputed=Count("id", filter=Q(Exists(Dispute.objects.filter(order=OuterRef("pk"))))),
    )
    return Rates(
        paid_orders=totals["paid"],
        refunded_orders=totals["refunded"],
        disputed_orders=totals["disputed"],
    )


def stock_outlook(*, merchant: Merchant, now: datetime) -> list[StockRow]:
    """Free stock of each active keyed product and the days it lasts at the pace of the last
    ``PACE_DAYS`` days (units paid, refunded orders excluded). One query."""
    recent = (
        Order.objects.filter(
            product=OuterRef("pk"), paid_at__gte=now - timedelta(days=PACE_DAYS), paid_at__lte=now
        )
        .exclude(status=Order.Status.REFUNDED)
        .order_by()
        .values("product")
        .annotate(units=Sum("quantity"))
        .values("units")
    )
    products = shop_selectors.with_stock(
        Product.objects.filter(merchant=merchant, is_active=True)
        .exclude(delivery_mode=Product.DeliveryMode.MANUAL)
        .annotate(
            sold_recently=Coalesce(Subquery(recent, output_field=IntegerField()), 0),
        )
        .order_by("sort_order", "id")
    )
    rows = []
    for product in products:
        left = shop_selectors.stock_left(product)
        sold = int(product.sold_recently)  # type: ignore[attr-defined]
        days_left = None
        if left is not None and sold:
            days_left = (Decimal(left) * PACE_DAYS / sold).quantize(Decimal("0.1"), ROUND_HALF_UP)
        rows.append(
            StockRow(
                product_id=product.pk,
                title=product.display_title,
                stock_left=left,
                sold_recently=sold,
                days_left=days_left,
            )
        )
    return rows


def dashboard(*, merchant: Merchant, days: int, now: datetime) -> Dashboard:
    span = window(days=days, now=now)
    daily, currencies = daily_series(merchant=merchant, span=span)
    return Dashboard(
        window=span,
        daily=daily,
        currencies=currencies,
        top_products=top_products(merchant=merchant, span=span),
        funnel=funnel(merchant=merchant, span=span),
        rates=rates(merchant=merchant, span=span),
        stock=stock_outlook(merchant=merchant, now=now),
    )


def chart_csv_rows(*, board: Dashboard, chart: str) -> list[list[Any]] | None:
    """One chart's data as CSV rows (header first), or None for an unknown chart."""
    if chart == "daily":
        header = ["day", "orders", *[f"revenue_{code}" for code in board.currencies]]
        return [header] + [
            [
                point.day.isoformat(),
                point.orders,
                *[f"{point.revenue.get(code, Decimal(0)):.2f}" for code in board.currencies],
            ]
            for point in board.daily
        ]
    if chart == "top":
        return [["product_id", "product", "currency", "units", "orders", "revenue"]] + [
            [row.product_id, row.title, row.currency, row.units, row.orders, f"{row.revenue:.2f}"]
            for row in board.top_products
        ]
    if chart == "funnel":
        return [
            ["step", "count"],
            ["product_views", board.funnel.views],
            ["orders_placed", board.funnel.orders],
            ["orders_paid", board.funnel.paid],
        ]
    if chart == "rates":
        paid = board.rates.paid_orders
        return [
            ["metric", "orders", "paid_orders", "rate"],
            ["refunded", board.rates.refunded_orders, paid, str(board.rates.refund_rate)],
            ["disputed", board.rates.disputed_orders, paid, str(board.rates.dispute_rate)],
        ]
    if chart == "stock":
        return [
            [
                "product_id",
                "product",
                "stock_left",
                f"units_sold_last_{PACE_DAYS}_days",
                "per_day",
                "days_until_sold_out",
            ]
        ] + [
            [
                row.product_id,
                row.title,
                "" if row.stock_left is None else row.stock_left,
                row.sold_recently,
                str(row.per_day),
                "" if row.days_left is None else str(row.days_left),
            ]
            for row in board.stock
        ]
    return None


ORDER_CSV_HEADER = [
    "number",
    "created_at",
    "paid_at",
    "status",
    "product",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "buyer",
]


def export_orders(*, merchant: Merchant, span: Window) -> Iterator[list[str]]:
    """The merchant's orders placed in the window, newest first, buyer e-mails masked (or
    "anonymised"). Streamed in chunks."""
    orders = (
        Order.objects.filter(
            merchant=merchant, created_at__gte=span.since, created_at__lte=span.until
        )
        .select_related("product")
        .order_by("-created_at", "-id")
    )
    for order in orders.iterator(chunk_size=2000):
        yield [
            order.number,
            timezone.localtime(order.created_at).isoformat(),
            timezone.localtime(order.paid_at).isoformat() if order.paid_at else "",
            order.status,
            order.product.display_title,
            str(order.quantity),
            f"{order.unit_price:.2f}",
            f"{order.amount:.2f}",
            order.currency,
            "anonymised" if order.anonymised_at else mask_email(order.email),
        ]
