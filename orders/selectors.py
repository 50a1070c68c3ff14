"""Reads of the orders app. Merchant-facing reads are scoped through ``*_for_merchant``."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db.models import QuerySet
from django.urls import reverse

from merchants.models import Merchant
from orders import tokens
from orders.models import Delivery, Order, Payment, Refund
from orders.services import manual_delivery_binding
from shop import vault
from shop.models import CardKey


@dataclass(frozen=True, slots=True)
class DeliveredKey:
    index: int
    text: str
    shared: bool


def _order_queryset() -> QuerySet[Order]:
    return Order.objects.select_related("product", "merchant")


def get_order_by_token(*, token: str) -> Order | None:
    if not token or len(token) > 128:
        return None
    return _order_queryset().filter(token_hash=tokens.hash_token(token)).first()


def find_order_for_lookup(*, number: str, email: str, query_password: str) -> Order | None:
    """Order number and email must both match, and the query password if the buyer set one.
    An order number alone never finds an order."""
    # An anonymised order is found by its link only: its placeholder email is guessable.
    order = (
        _order_queryset()
        .filter(number=number.strip(), email__iexact=email.strip(), anonymised_at__isnull=True)
        .first()
    )
    if order is None:
        # Hash anyway, so a miss takes as long as a hit and timing reveals no order numbers.
        make_password(query_password)
        return None
    if order.query_password_hash and not check_password(query_password, order.query_password_hash):
        return None
    return order


def order_page_path(order: Order) -> str:
    token = tokens.page_token(order)
    return reverse("orders:detail", args=[token])


def order_page_url(order: Order) -> str:
    return settings.SITE_URL + order_page_path(order)


def delivered_keys(*, order: Order) -> list[DeliveredKey]:
    """Decrypt what the order received. Only the order page, its download and the receipt call
    this; a row that fails to decrypt raises ``VaultError`` (loud, never silently skipped)."""
    result: list[DeliveredKey] = []
    deliveries = Delivery.objects.filter(order=order).select_related("card_key").order_by("id")
    for index, delivery in enumerate(deliveries, start=1):
        key: CardKey | None = delivery.card_key
        if key is not None:
            text = vault.unseal(
                key_id=key.key_id,
                nonce=key.nonce,
                ciphertext=key.ciphertext,
                merchant_id=key.merchant_id,
                product_id=key.product_id,
                fingerprint=key.fingerprint,
                row_label=f"card key {key.pk}",
            )
        else:
            nonce, ciphertext = delivery.sealed_content()
            text = vault.unseal(
                key_id=delivery.key_id,
                nonce=nonce,
                ciphertext=ciphertext,
                merchant_id=order.merchant_id,
                product_id=order.product_id,
                fingerprint=manual_delivery_binding(order),
                row_label=f"delivery {delivery.pk}",
            )
        result.append(DeliveredKey(index=index, text=text, shared=delivery.shared))
    return result


def orders_for_merchant(*, merchant: Merchant) -> QuerySet[Order]:
    return _order_queryset().filter(merchant=merchant)


def get_order_for_merchant(*, merchant: Merchant, order_id: int) -> Order | None:
    return orders_for_merchant(merchant=merchant).filter(pk=order_id).first()


def get_payment(*, reference: str, gateway: str) -> Payment | None:
    return (
        Payment.objects.select_related("order", "order__merchant", "order__product")
        .filter(reference=reference, gateway=gateway)
        .first()
    )


def latest_payment(*, order: Order) -> Payment | None:
    return order.payments.order_by("-created_at").first()


def refunds_for_order(*, order: Order) -> list[Refund]:
    return list(order.refunds.order_by("created_at"))


def gateway_label(name: str) -> str:
    """What buyers see for a gateway (no query: the adapter's display name)."""
    from orders.gateways.registry import GATEWAY_CLASSES

    cls = GATEWAY_CLASSES.get(name)
    return str(cls.display_name) if cls is not None else name
