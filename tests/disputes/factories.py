"""Factories and helpers for dispute tests: delivered orders go through the real checkout and a
signed sandbox callback, so every dispute sits on an order, payment, delivery and ledger as
production would write them."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import timedelta

import factory
from django.test import Client
from django.utils import timezone

from disputes.models import Dispute
from orders.models import Order
from shop.models import Product
from tests.conftest import open_payment, place, verify_otp
from tests.factories import UserFactory
from tests.test_helpers_payments import pay


@dataclass(frozen=True)
class DeliveredOrder:
    order: Order
    token: str


def delivered_order(
    product: Product, *, quantity: int = 1, email: str = "buyer@example.com", language: str = "en"
) -> DeliveredOrder:
    placed = place(product, quantity=quantity, email=email, language=language)
    response = pay(open_payment(placed.order))
    assert response.status_code == 200, response.content
    placed.order.refresh_from_db()
    assert placed.order.status == Order.Status.DELIVERED
    return DeliveredOrder(order=placed.order, token=placed.token)


class StaffFactory(UserFactory):
    is_staff = True
    is_superuser = True


class DisputeFactory(factory.django.DjangoModelFactory):
    """A dispute row as ``open_dispute`` leaves it (without its event and notice)."""

    class Meta:
        model = Dispute

    reason = Dispute.Reason.OTHER
    message = factory.Sequence(lambda n: f"Something is wrong #{n}")
    answer_due_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=48))


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real, minimal PNG (greyscale), valid to Pillow and to the signature check."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def gif_bytes() -> bytes:
    """A 1×1 GIF89a."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def staff_client_for(user) -> Client:
    """A logged-in staff client past the two-factor step, in English."""
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    verify_otp(client, user)
    return client


def merchant_client_for(merchant) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    return client
