"""The one interface every payment gateway adapter implements.

Nothing outside ``orders/gateways/`` knows a wire format: services hand a gateway a ``Payment``
and get back where to send the buyer; the callback view hands it the raw request and gets back a
``VerifiedEvent`` (or a ``PaymentRejected`` subclass) and the reply the gateway expects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from django.utils.functional import Promise

    from orders.exceptions import PaymentRejected
    from orders.models import Payment


@dataclass(frozen=True, slots=True)
class PaymentAction:
    """Where the buyer goes to pay."""

    redirect_url: str


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A gateway's server-to-server notification, as received (nothing trusted yet)."""

    method: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    remote_ip: str | None = None


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """A notification whose signature and freshness were verified. Amount and currency are as the
    gateway stated them; the service compares them with the payment exactly."""

    event_id: str
    kind: Literal["paid", "failed"]
    payment_reference: str
    amount: Decimal
    currency: str
    gateway_trade_id: str


@dataclass(frozen=True, slots=True)
class CallbackReply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    amount: Decimal
    succeeded: bool


class Gateway(ABC):
    name: ClassVar[str]
    display_name: ClassVar[str | Promise]

    @abstractmethod
    def is_enabled(self) -> bool:
        """Configured and switched on."""

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        """Whether this gateway can take a payment of this amount and currency."""
        return self.is_enabled()

    @abstractmethod
    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str
    ) -> PaymentAction:
        """Open a payment at the gateway; never called while holding row locks."""

    @abstractmethod
    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        """Verify signature and freshness; raise a ``PaymentRejected`` subclass otherwise."""

    @abstractmethod
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        """Ask the gateway for the payment's state: a verified event if it was paid or failed,
        ``None`` while it is still open."""

    @abstractmethod
    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        """Refund (part of) a succeeded payment at the gateway."""

    def reply_accepted(self) -> CallbackReply:
        return CallbackReply(status=200, body="success")

    def reply_duplicate(self) -> CallbackReply:
        # Already processed: nothing changes, and the sender learns it was a replay.
        return CallbackReply(status=409, body="duplicate")

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        return CallbackReply(status=400, body=error.code)
