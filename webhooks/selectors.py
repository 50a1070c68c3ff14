"""Reads of the webhooks app: payloads for each event (no card key, no manual content, no
buyer-written text, the buyer's e-mail masked), due deliveries, and per-merchant scopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from merchants.models import Merchant
from webhooks.models import (
    NotificationSettings,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


@dataclass(frozen=True)
class EventData:
    merchant_id: int
    data: dict[str, Any]


def mask_email(email: str) -> str:
    """``buyer@example.com`` → ``b***@example.com``: the masking the merchant centre shows
    (``orders.privacy``), enough to recognise a buyer, not to write to them."""
    from orders import privacy

    return privacy.mask_email(email)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _order_data(order: Any) -> dict[str, Any]:
    return {
        "number": order.number,
        "status": order.status,
        "product": {"id": order.product_id, "title": order.product.display_title},
        "quantity": order.quantity,
        "amount": f"{order.amount:.2f}",
        "currency": order.currency,
        "buyer_email": mask_email(order.email) if order.anonymised_at is None else None,
        "created_at": _iso(order.created_at),
        "paid_at": _iso(order.paid_at),
        "delivered_at": _iso(order.delivered_at),
    }


def event_data(*, event: str, object_id: int) -> EventData:
    """What a webhook says about ``object_id`` (an order, refund, dispute or product id)."""
    from disputes.models import Dispute
    from orders.models import Order, Refund
    from shop import selectors as shop_selectors
    from shop.models import Product

    if event in (WebhookEvent.ORDER_PAID, WebhookEvent.ORDER_DELIVERED):
        order = Order.objects.select_related("product").get(pk=object_id)
        return EventData(order.merchant_id, {"order": _order_data(order)})
    if event == WebhookEvent.ORDER_REFUNDED:
        refund = Refund.objects.select_related("order__product").get(pk=object_id)
        return EventData(
            refund.order.merchant_id,
            {
                "order": _order_data(refund.order),
                "refund": {
                    "id": refund.pk,
                    "amount": f"{refund.amount:.2f}",
                    "currency": refund.currency,
                    "status": refund.status,
                    "source": refund.source,
                },
            },
        )
    if event == WebhookEvent.DISPUTE_OPENED:
        dispute = Dispute.objects.select_related("order__product").get(pk=object_id)
        return EventData(
            dispute.order.merchant_id,
            {
                # The buyer's message is left out: buyers paste keys into it.
                "dispute": {
                    "id": dispute.pk,
                    "reason": dispute.reason,
                    "status": dispute.status,
                    "answer_due_at": _iso(dispute.answer_due_at),
                    "opened_at": _iso(dispute.created_at),
                },
                "order": _order_data(dispute.order),
            },
        )
    if event == WebhookEvent.STOCK_LOW:
        product = Product.objects.get(pk=object_id)
        return EventData(
            product.merchant_id,
            {
                "product": {
                    "id": product.pk,
                    "title": product.display_title,
                    "stock": shop_selectors.stock_left(product),
                    "threshold": product.low_stock_threshold,
                }
            },
        )
    raise ValueError(f"unknown webhook event {event!r}")


def subscribed_endpoints(*, merchant_id: int, event: str) -> list[WebhookEndpoint]:
    return [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(merchant_id=merchant_id, is_active=True)
        if event in (endpoint.events or [])
    ]


def due_delivery_ids(*, now: datetime, limit: int) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def deliveries_for_merchant(*, merchant: Merchant) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(merchant=merchant)


def get_delivery_for_merchant(*, merchant: Merchant, delivery_id: int) -> WebhookDelivery:
    return WebhookDelivery.objects.get(merchant=merchant, pk=delivery_id)


def default_language(*, merchant_id: int) -> str:
    """The language a merchant gets notices in before choosing one: the one they applied in
    (``MerchantApplication.language``), else ``LANGUAGE_CODE``."""
    from merchants.models import MerchantApplication

    applied = (
        MerchantApplication.objects.filter(merchant_id=merchant_id)
        .values_list("language", flat=True)
        .first()
    )
    known = {code for code, _name in settings.LANGUAGES}
    language = (applied or "").lower()
    return language if language in known else settings.LANGUAGE_CODE


def notification_settings(*, merchant_id: int) -> NotificationSettings:
    """The merchant's settings, or unsaved defaults when they never set any (e-mail on, in the
    language they applied in)."""
    found = NotificationSettings.objects.filter(merchant_id=merchant_id).first()
    if found is not None:
        return found
    return NotificationSettings(
        merchant_id=merchant_id, language=default_language(merchant_id=merchant_id)
    )
