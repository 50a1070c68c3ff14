"""Dispute emails. The buyer's are in the order's language and carry the dispute page's link,
never a key; the merchant's go to the store owner. Each is sent at most once per event or
message: a sender claims it with a conditional update first and releases it if sending fails
(the task then retries)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from disputes import services
from disputes.models import Dispute, DisputeEvent, DisputeMessage
from orders import tokens
from orders.models import Order
from orders.notifications import render_buyer_email
from webhooks import notifications as merchant_notices


def dispute_page_url(dispute: Dispute) -> str:
    order = dispute.order
    token = tokens.page_token(order)
    return settings.SITE_URL + reverse("disputes:detail", args=[token, dispute.pk])


def _buyer_can_be_mailed(order: Order) -> bool:
    # An anonymised order's address is a placeholder that never delivers.
    return bool(order.email) and getattr(order, "anonymised_at", None) is None


def notify_merchant_dispute_opened(*, dispute_id: int) -> bool:
    dispute = Dispute.objects.select_related(
        "order", "order__product", "order__merchant__owner"
    ).get(pk=dispute_id)
    owner_email = dispute.order.merchant.owner.email
    if not owner_email or not services.claim_merchant_notice(dispute_id=dispute.pk):
        return False
    context = {
        "dispute": dispute,
        "order": dispute.order,
        "hours": settings.DISPUTE_ANSWER_HOURS,
        "merchant_url": settings.SITE_URL
        + reverse("merchant_admin:disputes_dispute_change", args=[dispute.pk]),
    }
    try:
        # Text and HTML, in the merchant's language (webhooks.notifications).
        merchant_notices.send_merchant_email(
            merchant=dispute.order.merchant,
            template="disputes/email/merchant_opened",
            context=context,
        )
    except Exception:
        services.release_merchant_notice(dispute_id=dispute.pk)
        raise
    services.mark_awaiting_merchant(dispute_id=dispute.pk)
    return True


def send_buyer_event_notice(*, event_id: int) -> bool:
    """Tell the buyer the merchant answered, staff took over, or the dispute was resolved."""
    event = DisputeEvent.objects.select_related("dispute__order__product").get(pk=event_id)
    dispute = event.dispute
    if not _buyer_can_be_mailed(dispute.order):
        return False
    claimed = DisputeEvent.objects.filter(pk=event.pk, buyer_notified_at__isnull=True).update(
        buyer_notified_at=timezone.now()
    )
    if not claimed:
        return False
    context = {
        "dispute": dispute,
        "order": dispute.order,
        "event": event,
        "dispute_url": dispute_page_url(dispute),
    }
    try:
        subject, text, html = render_buyer_email(
            template="disputes/email/buyer_event", context=context, language=dispute.order.language
        )
        send_mail(subject, text, None, [dispute.order.email], html_message=html)
    except Exception:
        DisputeEvent.objects.filter(pk=event.pk).update(buyer_notified_at=None)
        raise
    return True


def send_buyer_message_notice(*, message_id: int) -> bool:
    """Tell the buyer the merchant or staff wrote in the dispute's conversation."""
    message = DisputeMessage.objects.select_related("dispute__order__product").get(pk=message_id)
    dispute = message.dispute
    if not _buyer_can_be_mailed(dispute.order):
        return False
    claimed = DisputeMessage.objects.filter(pk=message.pk, buyer_notified_at__isnull=True).update(
        buyer_notified_at=timezone.now()
    )
    if not claimed:
        return False
    context = {
        "dispute": dispute,
        "order": dispute.order,
        "message": message,
        "dispute_url": dispute_page_url(dispute),
    }
    try:
        subject, text, html = render_buyer_email(
            template="disputes/email/buyer_message",
            context=context,
            language=dispute.order.language,
        )
        send_mail(subject, text, None, [dispute.order.email], html_message=html)
    except Exception:
        DisputeMessage.objects.filter(pk=message.pk).update(buyer_notified_at=None)
        raise
    return True
