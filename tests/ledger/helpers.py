"""Shared steps of the ledger property tests (the merchant's and the affiliates')."""

from decimal import Decimal

from orders import services as order_services
from orders.exceptions import RefundNotAllowed

CENT = Decimal("0.01")


def refund_share_of_what_is_left(
    *, op: str, orders: dict[int, dict], value: int, staff
) -> tuple[dict, Decimal] | None:
    """Pick one of ``orders`` (id: its model, with ``amount`` and ``refunded`` so far) by
    ``value`` and refund ``value`` % of what is left of it, platform-funded when ``op`` is
    ``"platform_refund"``. Returns the order's model and the amount refunded, or None when it
    was refused, which only a zero amount or one above what is left may be."""
    order_id = sorted(orders)[value % len(orders)]
    info = orders[order_id]
    left = info["amount"] - info["refunded"]
    amount = (left * value / 100).quantize(CENT)
    try:
        order_services.request_refund(
            request_id=f"{op}:{order_id}:{info['refunded']}",
            order_id=order_id,
            amount=amount,
            reason="property",
            source="test",
            actor=staff,
            funded_by_platform=op == "platform_refund",
        )
    except RefundNotAllowed:
        assert amount <= 0 or amount > left
        return None
    return info, amount


def admin_fields_shown(client, change_url: str) -> list[str]:
    """The fields an admin change (or view-only) page shows, in order."""
    form = client.get(change_url).context["adminform"]
    return [name for _title, options in form.fieldsets for name in options["fields"]]
