"""Reads of the merchant's customer list (CRM). Buyers have no account: a customer is one
lower-cased buyer e-mail among the merchant's paid orders, aggregated in SQL (orders, spend per
currency, first and last purchase). Orders whose buyer data was erased (``anonymised_at``) form
one "anonymised" group and are never attributed to anyone.

The merchant never sees an address here, only ``orders.privacy.mask_email``'s mask. Pages and
notes name a customer by ``customer_key``: SHA-256 of a secret pepper (derived from
``SECRET_KEY``), the merchant's id and the lower-cased address, computed by the database
(``SHA256(…)``) to look a customer up and by Python for the rows of a page. A key is meaningless
at another merchant and reveals no address."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import (
    CharField,
    Count,
    DecimalField,
    F,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import SHA256, Coalesce, Concat, Lower
from django.db.models.lookups import Exact, In
from django.utils.crypto import salted_hmac

from merchants.models import CustomerNote, Merchant
from orders.models import Order, Refund
from orders.privacy import mask_email
from shop.models import CURRENCIES

CURRENCY_CODES = [code for code, _label in CURRENCIES]
CUSTOMERS_PER_PAGE = 50
SORTS = {
    "last": ("-last_purchase", "buyer"),
    "first": ("first_purchase", "buyer"),
    "orders": ("-orders", "-last_purchase", "buyer"),
}


@dataclass
class Customer:
    key: str  # "" for the anonymised group
    email_masked: str
    orders: int
    spend: dict[str, Decimal]  # per currency, only currencies bought in
    first_purchase: datetime
    last_purchase: datetime
    tags: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def is_repeat(self) -> bool:
        return self.orders >= 2


@dataclass(frozen=True)
class CustomerSummary:
    customers: int
    repeat_customers: int
    anonymised: Customer | None  # the paid anonymised orders as one group

    @property
    def repeat_rate(self) -> Decimal:
        """Customers with two or more paid orders, per customer (0–1, four places)."""
        if not self.customers:
            return Decimal(0)
        return (Decimal(self.repeat_customers) / self.customers).quantize(Decimal("0.0001"))

    @property
    def anonymised_orders(self) -> int:
        return self.anonymised.orders if self.anonymised is not None else 0


def _key_prefix(merchant_id: int) -> str:
    pepper = salted_hmac("cardvault.merchants.customers", "customer-key").hexdigest()
    return f"{pepper}:{merchant_id}:"


def customer_key(*, merchant_id: int, buyer: str) -> str:
    """The key of ``buyer`` (already lower-cased by the database) at this merchant."""
    return hashlib.sha256(f"{_key_prefix(merchant_id)}{buyer}".encode()).hexdigest()


def _paid_orders(merchant: Merchant) -> QuerySet[Order]:
    return Order.objects.filter(merchant=merchant, paid_at__isnull=False)


class _Sha256Hex(Func):
    """Hex SHA-256 of a text: PostgreSQL's built-in ``sha256()`` (Django's ``SHA256`` needs the
    pgcrypto extension there); on SQLite (the demo) Django's own."""

    template = "ENCODE(SHA256(CONVERT_TO(%(expressions)s, 'UTF8')), 'hex')"
    output_field = CharField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return SHA256(*self.get_source_expressions()).as_sql(compiler, connection)


def _key_expression(merchant: Merchant) -> Func:
    return _Sha256Hex(
        Concat(Value(_key_prefix(merchant.pk)), Lower("email"), output_field=CharField())
    )


def _named_orders(merchant: Merchant) -> QuerySet[Any]:
    return _paid_orders(merchant).filter(anonymised_at__isnull=True).annotate(buyer=Lower("email"))


def _refunded() -> Subquery:
    """The amount refunded (or being refunded: every refund but a failed one) on the outer
    order, 0 without refunds."""
    refunds = (
        Refund.objects.filter(order=OuterRef("pk"))
        .exclude(status=Refund.Status.FAILED)
        .order_by()
        .values("order")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return Subquery(refunds, output_field=DecimalField(max_digits=12, decimal_places=2))


def _aggregates() -> dict[str, Any]:
    """Per group: paid orders, first and last payment, and spend per currency. Spend is net: a
    fully refunded order counts as an order but adds nothing, a partly refunded one adds what
    was kept (its amount less its refunds)."""
    kept = F("amount") - Coalesce(_refunded(), Value(Decimal("0.00")))
    spend = {
        f"spend_{code}": Sum(
            kept, filter=Q(currency=code) & ~Q(status=Order.Status.REFUNDED), default=None
        )
        for code in CURRENCY_CODES
    }
    return {
        "orders": Count("id"),
        "first_purchase": Min("paid_at"),
        "last_purchase": Max("paid_at"),
        **spend,
    }


def _grouped(orders: QuerySet[Any]) -> QuerySet[Any]:
    return orders.values("buyer").annotate(**_aggregates())


def _customer(row: dict[str, Any], *, merchant_id: int) -> Customer:
    return Customer(
        key=customer_key(merchant_id=merchant_id, buyer=row["buyer"]),
        email_masked=mask_email(row["buyer"]),
        orders=row["orders"],
        spend={
            code: row[f"spend_{code}"]
            for code in CURRENCY_CODES
            if row[f"spend_{code}"] is not None
        },
        first_purchase=row["first_purchase"],
        last_purchase=row["last_purchase"],
    )


def _attach_notes(merchant: Merchant, customers: list[Customer]) -> None:
    notes = {
        note.customer_key: note
        for note in CustomerNote.objects.filter(
            merchant=merchant, customer_key__in=[c.key for c in customers]
        )
    }
    for customer in customers:
        note = notes.get(customer.key)
        if note is not None:
            customer.tags, customer.note = note.tag_list, note.note


def customer_queryset(
    *, merchant: Merchant, sort: str = "last", tag: str = "", email: str = ""
) -> QuerySet[Any]:
    """One row per customer (``buyer`` and the aggregates), filtered by a tag or an exact
    address, in ``sort`` order."""
    orders = _named_orders(merchant)
    if email:
        orders = orders.filter(buyer=email.strip().lower())
    if tag:
        tagged = CustomerNote.objects.filter(
            merchant=merchant, tags__contains=f",{tag.strip().lower()},"
        ).values("customer_key")
        orders = orders.filter(In(_key_expression(merchant), Subquery(tagged)))
    return _grouped(orders).order_by(*SORTS.get(sort, SORTS["last"]))


def customer_page(
    *, merchant: Merchant, page: int | str = 1, sort: str = "last", tag: str = "", email: str = ""
) -> tuple[Page[Any], list[Customer]]:
    """A page of customers with their tags and notes: a count, the page and the notes, three
    queries whatever the page size."""
    rows = customer_queryset(merchant=merchant, sort=sort, tag=tag, email=email)
    current = Paginator(rows, CUSTOMERS_PER_PAGE).get_page(page)
    customers = [_customer(row, merchant_id=merchant.pk) for row in current.object_list]
    _attach_notes(merchant, customers)
    return current, customers


def customer_summary(*, merchant: Merchant) -> CustomerSummary:
    """Customers, repeat customers (two or more paid orders) and the anonymised group. Two
    queries."""
    totals = _grouped(_named_orders(merchant)).aggregate(
        customers=Count("buyer"), repeat=Count("buyer", filter=Q(orders__gte=2))
    )
    return CustomerSummary(
        customers=totals["customers"] or 0,
        repeat_customers=totals["repeat"] or 0,
        anonymised=anonymised_group(merchant=merchant),
    )


def customer_by_key(*, merchant: Merchant, key: str) -> Customer | None:
    """The customer of this merchant with this key, or None (a key of another merchant, or made
    up, finds nothing)."""
    if len(key) != 64:
        return None
    named = _named_orders(merchant).filter(Exact(_key_expression(merchant), Value(key)))
    row = next(iter(_grouped(named).order_by("buyer")[:1]), None)
    if row is None:
        return None
    customer = _customer(row, merchant_id=merchant.pk)
    _attach_notes(merchant, [customer])
    return customer


def anonymised_group(*, merchant: Merchant) -> Customer | None:
    """The merchant's paid anonymised orders as one row, or None."""
    row = _paid_orders(merchant).filter(anonymised_at__isnull=False).aggregate(**_aggregates())
    if not row["orders"]:
        return None
    row["buyer"] = "anonymised"
    customer = _customer(row, merchant_id=merchant.pk)
    customer.key, customer.email_masked = "", "anonymised"
    return customer


def export_customers(*, merchant: Merchant) -> Iterator[Customer]:
    """Every customer (last purchase first) with tags and notes, then the anonymised group."""
    notes = {
        key: (tags, note)
        for key, tags, note in CustomerNote.objects.filter(merchant=merchant).values_list(
            "customer_key", "tags", "note"
        )
    }
    for row in customer_queryset(merchant=merchant).iterator(chunk_size=2000):
        customer = _customer(row, merchant_id=merchant.pk)
        tags, note = notes.get(customer.key, ("", ""))
        customer.tags, customer.note = [t for t in tags.split(",") if t], note
        yield customer
    anonymised = anonymised_group(merchant=merchant)
    if anonymised is not None:
        yield anonymised
