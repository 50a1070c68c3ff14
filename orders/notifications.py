"""Emails about orders, rendered in the buyer's language. They carry the order link, never the
keys themselves: mail is stored in plaintext on every server it passes, the link is not useful
without the buyer's inbox."""

from typing import Any

from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone, translation

from orders import selectors, services
from orders.models import Order
from webhooks import notifications as merchant_notices


def render_buyer_email(
    *, template: str, context: dict[str, Any], language: str
) -> tuple[str, str, str]:
    """Subject, text and HTML of a buyer e-mail (``<template>_subject.txt``, ``.txt`` and
    ``.html``) in ``language``, the one the buyer ordered in."""
    with translation.override(language):
        subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
        text = render_to_string(f"{template}.txt", context)
        html = render_to_string(f"{template}.html", context)
    return subject, text, html


def send_order_receipt(*, order_id: int) -> bool:
    """Send the receipt once, even when Celery delivers the task twice: a sender takes a lease
    first (a conditional update), releases it if sending fails (the task then retries), and
    marks the receipt sent afterwards."""
    order = Order.objects.select_related("product", "merchant").get(pk=order_id)
    if order.status != Order.Status.DELIVERED or not services.claim_receipt(order_id=order.pk):
        return False
    context = {"order": order, "order_url": selectors.order_page_url(order)}
    try:
        subject, text, html = render_buyer_email(
            template="orders/email/receipt", context=context, language=order.language
        )
        send_mail(subject, text, None, [order.email], html_message=html)
    except Exception:
        services.release_receipt_claim(order_id=order.pk)
        raise
    services.mark_receipt_sent(order_id=order.pk)
    return True


def notify_merchant_order_paid(*, order_id: int) -> bool:
    """Tell the merchant a manual-delivery order waits for them; at most once, like receipts."""
    order = Order.objects.select_related("product", "merchant__owner").get(pk=order_id)
    owner_email = order.merchant.owner.email
    if not owner_email or not services.claim_merchant_notice(order_id=order.pk):
        return False
    try:
        # Text and HTML, in the merchant's language (webhooks.notifications); never the keys.
        merchant_notices.send_merchant_email(
            merchant=order.merchant,
            template="orders/email/merchant_manual",
            context={"order": order},
        )
    except Exception:
        services.release_merchant_notice_claim(order_id=order.pk)
        raise
    return True


def send_refund_notice(*, refund_id: int) -> bool:
    """Tell the buyer money is on its way back (or, for a manual refund, that staff pay it)."""
    from orders.models import Refund

    refund = Refund.objects.select_related("order", "order__product").get(pk=refund_id)
    if refund.order.anonymised_at is not None:  # its email was erased (orders.privacy)
        return False
    claimed = Refund.objects.filter(pk=refund.pk, buyer_notified_at__isnull=True).update(
        buyer_notified_at=timezone.now()
    )
    if not claimed:
        return False
    order = refund.order
    context = {"order": order, "refund": refund, "order_url": selectors.order_page_url(order)}
    try:
        subject, text, html = render_buyer_email(
            template="orders/email/refund", context=context, language=order.language
        )
        send_mail(subject, text, None, [order.email], html_message=html)
    except Exception:
        Refund.objects.filter(pk=refund.pk).update(buyer_notified_at=None)
        raise
    return True


def send_gateway_alert(*, alert_id: int) -> bool:
    from django.contrib.auth import get_user_model

    from orders.models import GatewayAlert

    alert = GatewayAlert.objects.get(pk=alert_id)
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return False
    context = {"alert": alert}
    subject = render_to_string("orders/email/gateway_alert_subject.txt", context).strip()
    text = render_to_string("orders/email/gateway_alert.txt", context)
    send_mail(subject, text, None, recipients)
    return True
