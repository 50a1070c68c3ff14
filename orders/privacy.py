"""Buyers' personal data on orders: how long it is kept, what a buyer can download, who sees it.

Personal data an order holds: the buyer's email, the IP and user agent of checkout and of the
first view of the keys, the query-password hash, the buyer's manual-delivery inputs, the
sender IP of the gateway notifications about its payments, and the inputs of its risk screenings
(IP, email hash and mask, device cookie, user agent). ``anonymise_order`` erases all of it
and stamps ``Order.anonymised_at``; amounts, payments, refunds, deliveries, the status history
and the ledger stay exactly as they were, so the accounting never changes.

An order is *settled* when it is closed (delivered, refunded, expired, cancelled), nothing on it is
open (a dispute, a refund still to be paid out, a flag for staff) and nothing happened to it
(status change, refund, dispute) for a while. The retention job erases orders settled for
``BUYER_DATA_RETENTION_DAYS``; a buyer may ask for it once the dispute window
(``DISPUTE_WINDOW_DAYS``) has passed.

Writes (``anonymise_order``, ``request_anonymisation``, ``anonymise_settled_orders``) each own a
short transaction per order; the reads below them build the buyer's export and mask emails.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from disputes.models import Dispute
from disputes.selectors import OPEN_STATES as OPEN_DISPUTE_STATES
from orders import lock_objects
from orders.exceptions import AnonymisationNotAllowed
from orders.models import (
    Delivery,
    Order,
    OrderStatusChange,
    Payment,
    PaymentNotification,
    Refund,
)
from orders.selectors import delivered_keys

logger = logging.getLogger(__name__)

CLOSED_STATUSES = (
    Order.Status.DELIVERED,
    Order.Status.REFUNDED,
    Order.Status.PARTIALLY_REFUNDED,
    Order.Status.EXPIRED,
    Order.Status.CANCELLED,
)
# Statuses whose order page shows the keys; the export includes key texts only for these.
KEYS_SHOWN_STATUSES = (Order.Status.DELIVERED, Order.Status.PARTIALLY_REFUNDED)
# Headers of a stored gateway notification that carry a client address.
_ADDRESS_HEADERS = frozenset({"x-forwarded-for", "x-real-ip", "forwarded"})
ANONYMOUS_EMAIL_DOMAIN = "anonymised.invalid"


def retention_days() -> int:
    return int(settings.BUYER_DATA_RETENTION_DAYS)


def dispute_window_days() -> int:
    return int(getattr(settings, "DISPUTE_WINDOW_DAYS", 7))


def anonymous_email(number: str) -> str:
    """A placeholder that still passes ``EmailField`` validation and can never be delivered
    (``.invalid`` is reserved, RFC 2606)."""
    return f"anon-{number}@{ANONYMOUS_EMAIL_DOMAIN}"


def mask_email(email: str) -> str:
    """``bob@example.com`` → ``b***@example.com``: enough for a merchant to recognise a buyer
    who writes in, not enough to contact or look up anyone."""
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


# --- reads -------------------------------------------------------------------------------------
def _open_refund_q() -> Q:
    """A refund still owed to the buyer: at the gateway, failed (to be retried), or manual and
    not yet paid out by staff. Staff may need to contact the buyer for it."""
    return Q(status__in=[Refund.Status.PENDING, Refund.Status.FAILED]) | Q(
        status=Refund.Status.MANUAL, completed_at__isnull=True
    )


def settled_orders(*, settled_before: datetime) -> QuerySet[Order]:
    """Orders still holding personal data that are closed, have nothing open and saw no activity
    (status change, refund, dispute) since ``settled_before``."""
    activity_changes = OrderStatusChange.objects.filter(
        order=OuterRef("pk"), created_at__gte=settled_before
    )
    refunds = Refund.objects.filter(order=OuterRef("pk")).filter(
        _open_refund_q() | Q(created_at__gte=settled_before) | Q(completed_at__gte=settled_before)
    )
    disputes = Dispute.objects.filter(order=OuterRef("pk")).filter(
        Q(status__in=OPEN_DISPUTE_STATES)
        | Q(created_at__gte=settled_before)
        | Q(resolved_at__gte=settled_before)
    )
    return (
        Order.objects.filter(
            anonymised_at__isnull=True,
            created_at__lt=settled_before,
            status__in=CLOSED_STATUSES,
            needs_attention="",
        )
        .exclude(Exists(activity_changes))
        .exclude(Exists(refunds))
        .exclude(Exists(disputes))
    )


def last_activity_at(order: Order) -> datetime:
    """The latest thing that happened to an order: creation, a status change, a refund, a
    dispute."""
    moments = [order.created_at]
    moments.extend(order.status_changes.values_list("created_at", flat=True))
    for created, completed in order.refunds.values_list("created_at", "completed_at"):
        moments.extend(m for m in (created, completed) if m is not None)
    for opened, resolved in Dispute.objects.filter(order=order).values_list(
        "created_at", "resolved_at"
    ):
        moments.extend(m for m in (opened, resolved) if m is not None)
    return max(moments)


def anonymisation_refusal(*, order: Order, now: datetime) -> str | None:
    """Why the buyer cannot erase this order's data now (a translated sentence), or ``None``."""
    if order.anonymised_at is not None:
        return None
    if order.status not in CLOSED_STATUSES:
        return _(
            "This order is still in progress. Its personal data can be erased once it is "
            "completed and the dispute window has passed."
        )
    if Dispute.objects.filter(order=order, status__in=OPEN_DISPUTE_STATES).exists():
        return _("This order has an open dispute; its data is kept until the dispute is closed.")
    if order.refunds.filter(_open_refund_q()).exists():
        return _("A refund on this order is still being paid out; its data is kept until then.")
    if order.needs_attention:
        return _("Our support is still handling this order; please try again later.")
    available_from = last_activity_at(order) + timedelta(days=dispute_window_days())
    if available_from > now:
        return _("You can ask for this once the dispute window has passed, from %(date)s.") % {
            "date": formats.date_format(timezone.localtime(available_from), "DATETIME_FORMAT")
        }
    return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def buyer_data_export(*, order: Order) -> dict[str, Any]:
    """Everything stored about an order that concerns its buyer, as JSON-ready data. Leaves out
    what only protects the buyer or the platform (token hash and nonce, query-password hash,
    receipt lease, staff flags, ciphertexts). Key texts are included where the order page shows
    them; decrypting them raises ``VaultError`` like the order page."""
    order_data = {
        "number": order.number,
        "store": order.merchant.name,
        "product": order.product.display_title,
        "quantity": order.quantity,
        "unit_price": str(order.unit_price),
        "amount": str(order.amount),
        "currency": order.currency,
        "status": order.status,
        "email": None if order.anonymised_at else order.email,
        "query_password_set": bool(order.query_password_hash),
        "buyer_inputs": order.manual_inputs,
        "payment_method": order.gateway,
        "language": order.language,
        "buyer_ip": order.buyer_ip,
        "buyer_user_agent": order.buyer_user_agent,
        "created_at": _iso(order.created_at),
        "pay_before": _iso(order.expires_at),
        "paid_at": _iso(order.paid_at),
        "delivered_at": _iso(order.delivered_at),
        "receipt_sent_at": _iso(order.receipt_sent_at),
        "anonymised_at": _iso(order.anonymised_at),
    }
    payments = [
        {
            "reference": payment.reference,
            "gateway": payment.gateway,
            "amount": str(payment.amount),
            "currency": payment.currency,
            "status": payment.status,
            "created_at": _iso(payment.created_at),
            "completed_at": _iso(payment.completed_at),
        }
        for payment in Payment.objects.filter(order=order).order_by("created_at", "id")
    ]
    refunds = [
        {
            "amount": str(refund.amount),
            "currency": refund.currency,
            "status": refund.status,
            "reason": refund.reason,
            "gateway_refund_id": refund.gateway_refund_id,
            "created_at": _iso(refund.created_at),
            "completed_at": _iso(refund.completed_at),
        }
        for refund in Refund.objects.filter(order=order).order_by("created_at", "id")
    ]
    history = [
        {"from": change.from_status, "to": change.to_status, "at": _iso(change.created_at)}
        for change in OrderStatusChange.objects.filter(order=order).order_by("created_at", "id")
    ]
    deliveries = list(Delivery.objects.filter(order=order).order_by("id"))
    texts: list[str | None] = [None] * len(deliveries)
    if order.status in KEYS_SHOWN_STATUSES and deliveries:
        texts = [key.text for key in delivered_keys(order=order)]
    delivery_data = [
        {"delivered_at": _iso(delivery.created_at), "shared_key": delivery.shared, "key": text}
        for delivery, text in zip(deliveries, texts, strict=True)
    ]
    disputes = [
        {
            "status": dispute.status,
            "reason": dispute.reason,
            "message": dispute.message,
            "reported_key": dispute.key_index,
            "screenshot_attached": bool(dispute.screenshot),
            "opened_at": _iso(dispute.created_at),
            "resolution": dispute.resolution,
            "resolution_reason": dispute.resolution_reason,
            "resolved_at": _iso(dispute.resolved_at),
            # The conversation buyer, merchant and staff all see (staff names left out).
            "messages": [
                {"from": message.author_role, "text": message.text, "at": _iso(message.created_at)}
                for message in dispute.messages.order_by("created_at", "id")
            ],
        }
        for dispute in Dispute.objects.filter(order=order).order_by("created_at", "id")
    ]
    return {
        "order": order_data,
        "payments": payments,
        "refunds": refunds,
        "status_history": history,
        "deliveries": delivery_data,
        "first_view": {
            "at": _iso(order.keys_first_viewed_at),
            "ip": order.keys_first_viewed_ip,
            "user_agent": order.keys_first_viewed_user_agent,
        },
        "disputes": disputes,
    }


def with_open_dispute_flag(queryset: QuerySet[Order]) -> QuerySet[Order]:
    """Annotate ``has_open_dispute``: merchants see a buyer's full email only then."""
    return queryset.annotate(
        has_open_dispute=Exists(
            Dispute.objects.filter(order=OuterRef("pk"), status__in=OPEN_DISPUTE_STATES)
        )
    )


# --- writes ------------------------------------------------------------------------------------
def anonymise_order(
    *, order_id: int, settled_before: datetime, now: datetime | None = None
) -> bool:
    """Erase the personal data of one order if it is (still) settled before ``settled_before``.

    Locks the order, then re-checks under the lock, so two runs at once (or a refund or dispute
    arriving meanwhile) erase at most once and never an order that became active again.
    Returns whether this call erased it; an order already anonymised returns ``False``.
    Touches only personal fields: amounts, payments, refunds, deliveries and the ledger stay.
    """
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        if not settled_orders(settled_before=settled_before).filter(pk=order.pk).exists():
            return False
        Order.objects.filter(pk=order.pk).update(
            email=anonymous_email(order.number),
            buyer_ip=None,
            buyer_user_agent="",
            keys_first_viewed_ip=None,
            keys_first_viewed_user_agent="",
            query_password_hash="",
            manual_inputs={},
            anonymised_at=now,
        )
        notifications = PaymentNotification.objects.filter(
            Q(payment_reference__in=Payment.objects.filter(order=order).values("reference"))
            | Q(event__payment__order=order)
        )
        for notification in notifications.only("pk", "headers"):
            headers = {
                name: value
                for name, value in notification.headers.items()
                if name.lower() not in _ADDRESS_HEADERS
            }
            PaymentNotification.objects.filter(pk=notification.pk).update(
                remote_ip=None, headers=headers
            )
        _erase_risk_inputs(order_id=order.pk)
        # The merchant's CRM tags and note on this buyer go once no order of theirs names them.
        from merchants.services import forget_erased_customer

        forget_erased_customer(merchant_id=order.merchant_id, email=order.email)
    logger.info("order personal data anonymised", extra={"order_id": order_id})
    return True


def _erase_risk_inputs(*, order_id: int) -> None:
    """The risk screenings of the order keep their outcome and rule, not who was screened.
    Looked up through the app registry: risk control is an optional app that depends on orders,
    not the other way round."""
    if not apps.is_installed("risk"):
        return
    decision_model = apps.get_model("risk", "RiskDecision")
    decision_model.objects.filter(order_id=order_id).update(
        ip=None, email_hash="", email_masked="", device_id="", user_agent=""
    )


def _erase_stale_refusals(*, before: datetime) -> int:
    """Checkouts that risk control refused left a screening with no order: it keeps who was
    screened for the velocity and blacklist counts (minutes to days), never past the retention
    period. The outcome, rule and reason stay."""
    if not apps.is_installed("risk"):
        return 0
    decision_model = apps.get_model("risk", "RiskDecision")
    identifying = (
        Q(ip__isnull=False)
        | ~Q(email_hash="")
        | ~Q(email_masked="")
        | ~Q(device_id="")
        | ~Q(user_agent="")
    )
    return int(
        decision_model.objects.filter(order__isnull=True, created_at__lt=before)
        .filter(identifying)
        .update(ip=None, email_hash="", email_masked="", device_id="", user_agent="")
    )


def request_anonymisation(*, order: Order, now: datetime | None = None) -> Order:
    """The buyer's own request from the order page: erase now if the dispute window has passed
    and nothing is open. Idempotent (an anonymised order is returned as is). Raises
    ``AnonymisationNotAllowed`` with the reason."""
    now = now or timezone.now()
    if order.anonymised_at is None:
        settled_before = now - timedelta(days=dispute_window_days())
        if not anonymise_order(order_id=order.pk, settled_before=settled_before, now=now):
            order.refresh_from_db()
            reason = anonymisation_refusal(order=order, now=now)
            if order.anonymised_at is None:
                raise AnonymisationNotAllowed(
                    f"order {order.pk} is not settled",
                    user_message=reason or _("This order's personal data cannot be erased yet."),
                )
    order.refresh_from_db()
    return order


def anonymise_settled_orders(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """The retention job: erase the personal data of every order settled for
    ``BUYER_DATA_RETENTION_DAYS`` (never less than the dispute window). Batched by id, one short
    transaction per order; idempotent and safe to run twice at once. Returns how many it erased."""
    now = now or timezone.now()
    days = max(retention_days(), dispute_window_days())
    settled_before = now - timedelta(days=days)
    _erase_stale_refusals(before=now - timedelta(days=retention_days()))
    erased = 0
    after_id = 0
    while True:
        ids = list(
            settled_orders(settled_before=settled_before)
            .filter(pk__gt=after_id)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        for order_id in ids:
            erased += anonymise_order(order_id=order_id, settled_before=settled_before, now=now)
        if len(ids) < batch_size:
            return erased
        after_id = ids[-1]
