"""Gateway name → adapter. Real gateways register here as they are added."""

from orders.exceptions import GatewayUnavailable
from orders.gateways.base import Gateway
from orders.gateways.sandbox import SandboxGateway

GATEWAY_CLASSES: dict[str, type[Gateway]] = {
    SandboxGateway.name: SandboxGateway,
}


def get_gateway(name: str) -> Gateway:
    """The adapter for ``name`` if it exists and is enabled; ``GatewayUnavailable`` otherwise."""
    gateway_class = GATEWAY_CLASSES.get(name)
    if gateway_class is None:
        raise GatewayUnavailable(f"unknown gateway {name!r}")
    gateway = gateway_class()
    if not gateway.is_enabled():
        raise GatewayUnavailable(f"gateway {name!r} is disabled")
    return gateway


def available_gateways(*, amount: object, currency: str) -> list[Gateway]:
    from decimal import Decimal

    result = []
    for gateway_class in GATEWAY_CLASSES.values():
        gateway = gateway_class()
        if gateway.accepts(amount=Decimal(str(amount)), currency=currency):
            result.append(gateway)
    return result
