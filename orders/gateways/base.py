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
    from orders.models import GatewayConfig, Payment


@dataclass(frozen=True, slots=True)
class PaymentAction:
    """Where the buyer goes to pay, and what our own pay page needs to show (QR content, a
    wallet address, the exact amount to send); ``data`` is stored on the payment."""

    redirect_url: str
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One setting a gateway needs, as staff fill it in the admin. Secret fields are sealed
    with the vault keyring and never shown again."""

    name: str
    label: str | Promise
    required: bool = True
    help_text: str | Promise = ""
    multiline: bool = False


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
    """What a gateway said about a refund.

    ``succeeded``: the money went back. ``pending``: the gateway took the refund but has not
    finished it (some payment methods settle refunds over days, and may still fail them); the
    service keeps the refund pending and asks again with ``Gateway.query_refund``. Neither: the
    gateway declined it or the refund failed, ``failure`` saying why (a short machine reason,
    never the gateway's free text). ``refund_id`` is the gateway's id of the refund object it
    made (whatever ``query_refund`` needs to find it again), ``""`` when it made none (a
    declined request)."""

    refund_id: str
    amount: Decimal
    succeeded: bool
    pending: bool = False
    failure: str = ""


class Gateway(ABC):
    """A gateway adapter, built around its staff-made ``GatewayConfig`` (``None`` when the
    gateway has no row yet: it is then disabled, except the settings-driven sandbox)."""

    name: ClassVar[str]
    display_name: ClassVar[str | Promise]
    default_currencies: ClassVar[tuple[str, ...]] = ("CNY",)
    option_fields: ClassVar[tuple[ConfigField, ...]] = ()
    secret_fields: ClassVar[tuple[ConfigField, ...]] = ()
    supports_refund: ClassVar[bool] = True
    # Whether ``query_refund`` can tell a pending refund's outcome (every adapter whose
    # ``refund`` may answer ``pending`` must).
    supports_refund_query: ClassVar[bool] = False

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config
        self._secrets: dict[str, str] | None = None

    # --- configuration ------------------------------------------------------------------------
    def option(self, name: str, default: str = "") -> str:
        if self.config is None:
            return default
        return str(self.config.options.get(name, default) or default)

    def secret(self, name: str) -> str:
        """A credential, or "" if unset. Verification with an empty secret must refuse."""
        if self.config is None:
            return ""
        if self._secrets is None:
            self._secrets = self.config.get_secrets()
        return self._secrets.get(name, "")

    def is_configured(self) -> bool:
        return all(self.option(f.name) for f in self.option_fields if f.required) and all(
            self.secret(f.name) for f in self.secret_fields if f.required
        )

    def is_enabled(self) -> bool:
        """Configured and switched on."""
        return self.config is not None and self.config.enabled and self.is_configured()

    @property
    def label(self) -> str:
        if self.config is not None and self.config.display_name:
            return self.config.display_name
        return str(self.display_name)

    @property
    def currencies(self) -> tuple[str, ...]:
        if self.config is not None and self.config.currencies:
            return tuple(self.config.currencies)
        return self.default_currencies

    def accepts(self, *, amount: Decimal, currency: str) -> bool:
        """Whether this gateway can take a payment of this amount and currency."""
        if not self.is_enabled() or currency not in self.currencies:
            return False
        config = self.config
        if config is not None:
            if config.min_amount is not None and amount < config.min_amount:
                return False
            if config.max_amount is not None and amount > config.max_amount:
                return False
        return True

    @staticmethod
    def hosted_pay_url(*, return_url: str, payment: Payment) -> str:
        """Our own pay page for this payment (QR code / address / exact amount), next to the
        order page ``return_url``; for gateways that have no page of their own."""
        return return_url.rstrip("/") + f"/pay/{payment.reference}/"

    def fee(self, amount: Decimal) -> Decimal:
        rate = self.config.fee_rate if self.config is not None else Decimal(0)
        return (amount * rate).quantize(Decimal("0.01"))

    @abstractmethod
    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        """Open a payment at the gateway; never called while holding row locks. ``mobile``: the
        buyer is on a phone (e.g. Alipay's wap pay instead of the desktop page)."""

    @abstractmethod
    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        """Verify signature and freshness; raise a ``PaymentRejected`` subclass otherwise."""

    @abstractmethod
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        """Ask the gateway for the payment's state: a verified event if it was paid or failed,
        ``None`` while it is still open."""

    @abstractmethod
    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        """Refund (part of) a succeeded payment at the gateway. ``reason`` is the caller's
        idempotency seed (the refund request id): the same seed is the same refund at the
        gateway, never a second one."""

    def query_refund(self, *, payment: Payment, refund_id: str, amount: Decimal) -> RefundResult:
        """Ask the gateway how a refund it answered ``pending`` ended (``refund_id`` as that
        answer gave it, ``amount`` as given to ``refund``). Raises ``GatewayUnavailable`` when
        the gateway cannot tell now."""
        from orders.exceptions import GatewayUnavailable

        raise GatewayUnavailable(f"{self.name} cannot query a refund")

    def reply_accepted(self) -> CallbackReply:
        return CallbackReply(status=200, body="success")

    def reply_duplicate(self) -> CallbackReply:
        # Already processed: nothing changes. Real gateways retry until they read their exact
        # acknowledgement, so a repeat gets the same answer as the first delivery.
        return self.reply_accepted()

    def reply_rejected(self, error: PaymentRejected) -> CallbackReply:
        return CallbackReply(status=400, body=error.code)
