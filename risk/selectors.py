"""Reads of the risk app."""

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from orders.models import Order
from risk.models import RiskDecision


def decisions_for_order(*, order: Order) -> QuerySet[RiskDecision]:
    return RiskDecision.objects.filter(order=order).select_related("rule").order_by("created_at")


def merchant_note(*, order: Order) -> str:
    """What the merchant sees of the screening: a short note, no buyer data, no rule details
    (the thresholds are the platform's business, and a merchant could pass them on)."""
    decisions = list(
        RiskDecision.objects.filter(order=order)
        .order_by("created_at")
        .values_list("stage", "outcome")
    )
    if not decisions:
        return "—"
    outcomes = {outcome for _stage, outcome in decisions}
    if RiskDecision.Outcome.HOLD in outcomes:
        if order.status == Order.Status.HELD:
            return _("Held for review by the platform's risk checks; delivery waits for staff.")
        return _("Was held for review by the platform's risk checks.")
    if RiskDecision.Outcome.CAPTCHA_PASSED in outcomes:
        return _("Passed the risk checks after a captcha.")
    return _("Passed the risk checks.")
