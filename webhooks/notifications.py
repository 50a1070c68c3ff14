"""Merchant notices: e-mail (text and HTML, in the merchant's language) and, when the merchant
set a bot token and chat id, Telegram. Both go through ``send_merchant_notice_task``; each notice
is sent at most once per channel (a ``MerchantNotice`` row claimed with a conditional update,
released when sending fails so the task's retry sends it). No notice carries a card key: the
contexts hold orders, products, disputes and withdrawals, never deliveries."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from merchants.models import Merchant
from webhooks import selectors, tasks, telegram
from webhooks.exceptions import TelegramError
from webhooks.models import MerchantNotice, NotificationSettings, WebhookEvent

if TYPE_CHECKING:
    from shop.models import Product

logger = logging.getLogger(__name__)

NOTICE_LEASE = timedelta(minutes=10)
EMAIL = MerchantNotice.Channel.EMAIL
TELEGRAM = MerchantNotice.Channel.TELEGRAM


@dataclass(frozen=True)
class Notice:
    merchant: Merchant
    template: str  # base name: <template>_subject.txt, <template>.txt, <template>.html
    context: dict[str, Any]
    channels: frozenset[str]


# --- rendering --------------------------------------------------------------------------------
def merchant_language(merchant: Merchant) -> str:
    return selectors.notification_settings(merchant_id=merchant.pk).language


def render_merchant_email(
    *, merchant: Merchant, template: str, context: dict[str, Any]
) -> tuple[str, str, str]:
    """Subject, text and HTML of a merchant e-mail, in the merchant's language."""
    context = {"merchant": merchant, "merchant_centre_url": settings.SITE_URL + "/merchant/"} | (
        context
    )
    with translation.override(merchant_language(merchant)):
        subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
        text = render_to_string(f"{template}.txt", context)
        html = render_to_string(f"{template}.html", context)
    return subject, text, html


def send_merchant_email(*, merchant: Merchant, template: str, context: dict[str, Any]) -> bool:
    """E-mail the store owner (text with an HTML alternative). False if they have no address or
    turned e-mail notices off."""
    prefs = selectors.notification_settings(merchant_id=merchant.pk)
    email = merchant.owner.email
    if not email or not prefs.email_enabled:
        return False
    subject, text, html = render_merchant_email(
        merchant=merchant, template=template, context=context
    )
    message = EmailMultiAlternatives(subject, text, None, [email])
    message.attach_alternative(html, "text/html")
    message.send()
    return True


def send_merchant_telegram(
    *, merchant: Merchant, template: str, context: dict[str, Any], prefs: NotificationSettings
) -> bool:
    if not prefs.has_telegram:
        return False
    subject, text, _html = render_merchant_email(
        merchant=merchant, template=template, context=context
    )
    telegram.send_message(
        token=prefs.get_telegram_token(),
        chat_id=prefs.telegram_chat_id,
        text=f"{subject}\n\n{text.strip()}",
    )
    return True


# --- what each notice says ----------------------------------------------------------------
def _order_paid(object_id: int) -> Notice:
    from orders.models import Order
    from shop.models import Product

    order = Order.objects.select_related("product", "merchant__owner").get(pk=object_id)
    prefs = selectors.notification_settings(merchant_id=order.merchant_id)
    manual = order.product.delivery_mode == Product.DeliveryMode.MANUAL
    channels = set()
    # A manual order's e-mail is the orders app's "deliver it now" notice (sent once per order).
    if prefs.notify_every_order and not manual:
        channels.add(EMAIL)
    if manual or prefs.notify_every_order:
        channels.add(TELEGRAM)
    return Notice(
        merchant=order.merchant,
        template="orders/email/merchant_manual" if manual else "webhooks/email/order_paid",
        context={"order": order},
        channels=frozenset(channels),
    )


def _dispute_opened(object_id: int) -> Notice:
    from disputes.models import Dispute

    dispute = Dispute.objects.select_related("order__product", "order__merchant__owner").get(
        pk=object_id
    )
    return Notice(
        merchant=dispute.order.merchant,
        template="disputes/email/merchant_opened",
        context={
            "dispute": dispute,
            "order": dispute.order,
            "hours": settings.DISPUTE_ANSWER_HOURS,
            "merchant_url": settings.SITE_URL
            + reverse("merchant_admin:disputes_dispute_change", args=[dispute.pk]),
        },
        # The e-mail is the disputes app's own notice, which also starts the answer clock.
        channels=frozenset({TELEGRAM}),
    )


def _low_stock(object_id: int) -> Notice:
    from shop import selectors as shop_selectors
    from shop.models import Product

    product = Product.objects.select_related("merchant__owner").get(pk=object_id)
    return Notice(
        merchant=product.merchant,
        template="webhooks/email/low_stock",
        context={"product": product, "stock": shop_selectors.stock_left(product)},
        channels=frozenset({EMAIL, TELEGRAM}),
    )


def _withdrawal(object_id: int) -> Notice:
    from ledger.models import Withdrawal

    withdrawal = Withdrawal.objects.select_related("merchant__owner").get(pk=object_id)
    return Notice(
        merchant=withdrawal.merchant,
        template="webhooks/email/withdrawal",
        context={"withdrawal": withdrawal},
        channels=frozenset({EMAIL, TELEGRAM}),
    )


def _product_review(kind: str, object_id: int) -> Notice:
    from merchants.selectors import product_review_reason
    from shop.models import Product

    product = Product.objects.select_related("merchant__owner").get(pk=object_id)
    # Released (or held again, or rejected) before the task ran: this notice is out of date.
    current = product.review_status == PRODUCT_REVIEW_STATUS[kind]
    return Notice(
        merchant=product.merchant,
        template="webhooks/email/product_review",
        context={
            "product": product,
            # Called while rendering, so it is worded in the merchant's language.
            "reason": partial(product_review_reason, product),
            "merchant_url": settings.SITE_URL
            + reverse("merchant_admin:shop_product_change", args=[product.pk]),
        },
        channels=frozenset({EMAIL} if current else ()),
    )


PRODUCT_REVIEW_STATUS = {"product_held": "held", "product_rejected": "rejected"}

NOTICES: dict[str, Callable[[int], Notice]] = {
    "product_held": partial(_product_review, "product_held"),
    "product_rejected": partial(_product_review, "product_rejected"),
    "order_paid": _order_paid,
    "dispute_opened": _dispute_opened,
    "low_stock": _low_stock,
    "withdrawal_requested": _withdrawal,
    "withdrawal_paid": _withdrawal,
    "withdrawal_rejected": _withdrawal,
}

EVENT_NOTICES = {
    WebhookEvent.ORDER_PAID: "order_paid",
    WebhookEvent.DISPUTE_OPENED: "dispute_opened",
    WebhookEvent.STOCK_LOW: "low_stock",
}


# --- queueing and sending -----------------------------------------------------------------
def queue_notice_after_commit(*, kind: str, object_id: int, object_key: str = "") -> None:
    """Queue the notice on both channels once the caller's transaction commits; each channel's
    task decides whether it applies (merchant settings) and sends at most once."""
    for channel in (EMAIL, TELEGRAM):
        transaction.on_commit(
            partial(
                tasks.send_merchant_notice_task.delay,
                kind=kind,
                object_id=object_id,
                object_key=object_key or str(object_id),
                channel=channel,
            )
        )


def queue_product_review_notice(*, product: Product) -> None:
    """Inside the transaction that held or rejected ``product``: e-mail its merchant the status
    and the reason once it commits. Each hold or rejection is its own notice (the key carries
    the moment it was queued), sent at most once."""
    kind = "product_rejected" if product.review_status == "rejected" else "product_held"
    stamp = (product.reviewed_at or timezone.now()).strftime("%Y%m%d%H%M%S%f")
    queue_notice_after_commit(kind=kind, object_id=product.pk, object_key=f"{product.pk}:{stamp}")


def queue_event_notices(*, event: str, object_id: int, object_key: str, merchant_id: int) -> None:
    kind = EVENT_NOTICES.get(WebhookEvent(event))
    if kind is not None:
        queue_notice_after_commit(kind=kind, object_id=object_id, object_key=object_key)


def _claim(*, merchant: Merchant, kind: str, object_key: str, channel: str) -> bool:
    now = timezone.now()
    notice, _created = MerchantNotice.objects.get_or_create(
        kind=kind, object_key=object_key, channel=channel, defaults={"merchant": merchant}
    )
    return bool(
        MerchantNotice.objects.filter(pk=notice.pk, sent_at__isnull=True)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - NOTICE_LEASE))
        .update(claimed_at=now)
    )


def send_merchant_notice(*, kind: str, object_id: int, object_key: str, channel: str) -> bool:
    """Send one notice on one channel, at most once. False when it does not apply (channel not
    wanted or not configured) or was sent already. Raises what the mail backend or Telegram
    raise for a retry, after releasing the claim."""
    notice = NOTICES[kind](object_id)
    if channel not in notice.channels:
        return False
    prefs = selectors.notification_settings(merchant_id=notice.merchant.pk)
    if channel == TELEGRAM and not prefs.has_telegram:
        return False
    if channel == EMAIL and (not prefs.email_enabled or not notice.merchant.owner.email):
        return False
    if not _claim(merchant=notice.merchant, kind=kind, object_key=object_key, channel=channel):
        return False
    context = notice.context | {"kind": kind}
    lookup = {"kind": kind, "object_key": object_key, "channel": channel}
    try:
        if channel == EMAIL:
            send_merchant_email(merchant=notice.merchant, template=notice.template, context=context)
        else:
            send_merchant_telegram(
                merchant=notice.merchant, template=notice.template, context=context, prefs=prefs
            )
    except TelegramError as exc:
        if exc.context.get("permanent"):
            # A wrong token or chat id: retrying cannot help; leave it claimed, unsent.
            logger.warning("telegram notice refused for merchant %s: %s", notice.merchant.pk, exc)
            return False
        MerchantNotice.objects.filter(**lookup).update(claimed_at=None)
        raise
    except Exception:
        MerchantNotice.objects.filter(**lookup).update(claimed_at=None)
        raise
    MerchantNotice.objects.filter(**lookup).update(sent_at=timezone.now())
    return True
