"""Gateway name → adapter, built with the staff-made ``GatewayConfig`` of that name.

Adapters register by adding their class to ``GATEWAY_CLASSES``. The sandbox needs no row (it is
configured by settings); every real gateway is disabled until staff configure and enable it.
"""

from __future__ import annotations

from decimal import Decimal

from orders.exceptions import GatewayUnavailable
from orders.gateways.alipay import AlipayGateway
from orders.gateways.base import Gateway
from orders.gateways.epay import EpayGateway
from orders.gateways.epusdt import EpusdtGateway
from orders.gateways.sandbox import SandboxGateway
from orders.gateways.stripe_checkout import StripeCheckoutGateway
from orders.gateways.wechatpay import WeChatPayGateway

GATEWAY_CLASSES: dict[str, type[Gateway]] = {
    SandboxGateway.name: SandboxGateway,
    WeChatPayGateway.name: WeChatPayGateway,
    AlipayGateway.name: AlipayGateway,
    EpayGateway.name: EpayGateway,
    EpusdtGateway.name: EpusdtGateway,
    StripeCheckoutGateway.name: StripeCheckoutGateway,
}


def gateway_class(name: str) -> type[Gateway] | None:
    return GATEWAY_CLASSES.get(name)


def build_gateway(name: str) -> Gateway | None:
    """The adapter for ``name`` with its configuration, enabled or not; ``None`` if unknown."""
    from orders.models import GatewayConfig

    cls = GATEWAY_CLASSES.get(name)
    if cls is None:
        return None
    return cls(GatewayConfig.objects.filter(gateway=name).first())


def get_gateway(name: str) -> Gateway:
    """The adapter for ``name`` if it exists and is enabled; ``GatewayUnavailable`` otherwise."""
    gateway = build_gateway(name)
    if gateway is None:
        raise GatewayUnavailable(f"unknown gateway {name!r}")
    if not gateway.is_enabled():
        raise GatewayUnavailable(f"gateway {name!r} is disabled")
    return gateway


def available_gateways(*, amount: object, currency: str) -> list[Gateway]:
    """The gateways that can take this payment, in the staff's order (one query)."""
    from orders.models import GatewayConfig

    configs = {c.gateway: c for c in GatewayConfig.objects.filter(enabled=True)}
    wanted = Decimal(str(amount))
    result: list[tuple[int, Gateway]] = []
    for name, cls in GATEWAY_CLASSES.items():
        gateway = cls(configs.get(name))
        if gateway.accepts(amount=wanted, currency=currency):
            config = configs.get(name)
            result.append((config.sort_order if config is not None else 0, gateway))
    return [gateway for _order, gateway in sorted(result, key=lambda pair: pair[0])]
