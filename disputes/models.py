"""Disputes: a buyer reports a problem with a delivered order, the merchant answers (replace the
key, refund, or contest), staff arbitrate what the merchant leaves open.

State machine (``DISPUTE_TRANSITIONS``)::

    open ──▶ awaiting_merchant ──▶ resolved
      │              │
      └──────────────┴──▶ escalated ──▶ resolved

``open`` lasts until the merchant's notice is out; the answer window (``answer_due_at``) starts
when the dispute is opened either way, so a lost notice never extends it. A resolution is one of
``replaced``, ``refunded``, ``partially_refunded``, ``rejected``, always with a written reason.
Every change writes a ``DisputeEvent`` (who, when, why) in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.models import Delivery, Order, Refund
from shop.models import CardKey


class Role(models.TextChoices):
    """Who wrote a message or caused an event."""

    BUYER = "buyer", _("Buyer")
    MERCHANT = "merchant", _("Merchant")
    STAFF = "staff", _("Platform staff")
    SYSTEM = "system", _("System")


def default_answer_due() -> datetime:
    """The merchant's answer is due ``DISPUTE_ANSWER_HOURS`` after the dispute is opened."""
    return timezone.now() + timedelta(hours=settings.DISPUTE_ANSWER_HOURS)


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        AWAITING_MERCHANT = "awaiting_merchant", _("Awaiting merchant")
        ESCALATED = "escalated", _("Escalated to staff")
        RESOLVED = "resolved", _("Resolved")

    class Reason(models.TextChoices):
        KEY_INVALID = "key_invalid", _("The key is invalid")
        KEY_USED = "key_used", _("The key was already used")
        WRONG_GOODS = "wrong_goods", _("Wrong goods")
        NOT_RECEIVED = "not_received", _("Not received")
        OTHER = "other", _("Other")

    class Resolution(models.TextChoices):
        REPLACED = "replaced", _("Key replaced")
        REFUNDED = "refunded", _("Refunded")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
        REJECTED = "rejected", _("Rejected")

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="disputes", verbose_name=_("order")
    )
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.OPEN
    )
    reason = models.CharField(_("reason"), max_length=40, choices=Reason.choices)
    message = models.TextField(_("message"), blank=True)
    # The delivered key the buyer points at (by its position on the order page), if any.
    delivery = models.ForeignKey(
        Delivery,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reported key"),
    )
    key_index = models.PositiveSmallIntegerField(_("reported key number"), null=True, blank=True)
    # Stored under MEDIA_ROOT/private/ with a random name; served only through the access-checked
    # views, never from a public URL.
    screenshot = models.FileField(_("screenshot"), max_length=200, blank=True)
    screenshot_content_type = models.CharField(max_length=20, blank=True, editable=False)
    answer_due_at = models.DateTimeField(_("merchant answers by"), default=default_answer_due)
    merchant_notified_at = models.DateTimeField(_("merchant notified at"), null=True, blank=True)
    escalated_at = models.DateTimeField(_("escalated at"), null=True, blank=True)
    resolution = models.CharField(
        _("resolution"), max_length=24, choices=Resolution.choices, blank=True
    )
    resolution_reason = models.TextField(_("reason for the resolution"), blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("opened at"), auto_now_add=True)

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["open", "awaiting_merchant", "escalated", "resolved"]
                ),
                name="dispute_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    reason__in=["key_invalid", "key_used", "wrong_goods", "not_received", "other"]
                ),
                name="dispute_reason_valid",
            ),
            # Resolved ⇔ a resolution, its written reason and its time; never half of it.
            models.CheckConstraint(
                condition=(
                    models.Q(
                        status="resolved",
                        resolution__in=[
                            "replaced",
                            "refunded",
                            "partially_refunded",
                            "rejected",
                        ],
                        resolved_at__isnull=False,
                    )
                    & ~models.Q(resolution_reason="")
                )
                | (
                    ~models.Q(status="resolved") & models.Q(resolution="", resolved_at__isnull=True)
                ),
                name="dispute_resolution_iff_resolved",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="escalated") | models.Q(escalated_at__isnull=False),
                name="dispute_escalated_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(delivery__isnull=True, key_index__isnull=True)
                | models.Q(delivery__isnull=False, key_index__gte=1),
                name="dispute_key_index_with_delivery",
            ),
            # One open dispute per order at a time; a resolved one leaves room for the next.
            models.UniqueConstraint(
                fields=["order"],
                condition=models.Q(status__in=["open", "awaiting_merchant", "escalated"]),
                name="dispute_one_open_per_order",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "answer_due_at"], name="dispute_status_due"),
        ]

    def __str__(self) -> str:
        return f"Dispute #{self.pk}"

    @property
    def is_resolved(self) -> bool:
        return self.status == self.Status.RESOLVED


OPEN_STATUSES = frozenset(
    {Dispute.Status.OPEN, Dispute.Status.AWAITING_MERCHANT, Dispute.Status.ESCALATED}
)

# Allowed dispute transitions: the one table every status change is checked against. ``open`` may
# skip ``awaiting_merchant`` (the merchant answers, or staff pay first, before the notice is out).
DISPUTE_TRANSITIONS: dict[str, frozenset[str]] = {
    Dispute.Status.OPEN: frozenset(
        {Dispute.Status.AWAITING_MERCHANT, Dispute.Status.ESCALATED, Dispute.Status.RESOLVED}
    ),
    Dispute.Status.AWAITING_MERCHANT: frozenset(
        {Dispute.Status.ESCALATED, Dispute.Status.RESOLVED}
    ),
    Dispute.Status.ESCALATED: frozenset({Dispute.Status.RESOLVED}),
    Dispute.Status.RESOLVED: frozenset(),
}


class DisputeMessage(models.Model):
    """One message of the conversation among buyer, merchant and staff; all three see it."""

    dispute = models.ForeignKey(
        Dispute, on_delete=models.CASCADE, related_name="messages", verbose_name=_("dispute")
    )
    author_role = models.CharField(_("from"), max_length=16, choices=Role.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("written by"),
    )
    text = models.TextField(_("message"))
    buyer_notified_at = models.DateTimeField(_("buyer notified at"), null=True, blank=True)
    created_at = models.DateTimeField(_("written at"), auto_now_add=True)

    class Meta:
        verbose_name = _("dispute message")
        verbose_name_plural = _("dispute messages")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(author_role__in=["buyer", "merchant", "staff"]),
                name="disputemessage_role_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(text=""), name="disputemessage_text_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.author_role} on dispute {self.dispute_id}"


class DisputeEvent(models.Model):
    """Audit trail: every transition and every sensitive read (a key revealed to staff), who or
    what caused it, and why."""

    class Kind(models.TextChoices):
        OPENED = "opened", _("Opened by the buyer")
        MERCHANT_NOTIFIED = "merchant_notified", _("Merchant notified")
        CONTESTED = "contested", _("Contested by the merchant")
        ESCALATED = "escalated", _("Escalated: no answer in time")
        RESOLVED = "resolved", _("Resolved")
        KEY_REVEALED = "key_revealed", _("Key revealed to staff")

    dispute = models.ForeignKey(
        Dispute, on_delete=models.CASCADE, related_name="events", verbose_name=_("dispute")
    )
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    from_status = models.CharField(_("from"), max_length=24, blank=True)
    to_status = models.CharField(_("to"), max_length=24)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by user"),
    )
    actor_role = models.CharField(_("by"), max_length=16, choices=Role.choices)
    note = models.TextField(_("note"), blank=True)
    buyer_notified_at = models.DateTimeField(_("buyer notified at"), null=True, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("dispute event")
        verbose_name_plural = _("dispute events")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=[
                        "opened",
                        "merchant_notified",
                        "contested",
                        "escalated",
                        "resolved",
                        "key_revealed",
                    ]
                ),
                name="disputeevent_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dispute_id}: {self.kind}"


# What the buyer is told about, and sees in the timeline (a staff key reveal is internal).
BUYER_VISIBLE_EVENTS = frozenset(
    {
        DisputeEvent.Kind.OPENED,
        DisputeEvent.Kind.MERCHANT_NOTIFIED,
        DisputeEvent.Kind.CONTESTED,
        DisputeEvent.Kind.ESCALATED,
        DisputeEvent.Kind.RESOLVED,
    }
)
BUYER_NOTIFIED_EVENTS = frozenset(
    {DisputeEvent.Kind.CONTESTED, DisputeEvent.Kind.ESCALATED, DisputeEvent.Kind.RESOLVED}
)


class DisputeDecision(models.Model):
    """The one outcome a dispute gets. Taken (inserted) before any money moves: the unique
    ``dispute`` makes "two people resolving at once" a constraint violation, and the refund runs
    under an id derived from this row, so finishing a decision again never refunds twice."""

    class Action(models.TextChoices):
        REPLACE = "replace", _("Replace the key")
        REFUND = "refund", _("Refund")
        REJECT = "reject", _("Reject")

    dispute = models.OneToOneField(
        Dispute, on_delete=models.CASCADE, related_name="decision", verbose_name=_("dispute")
    )
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    # None: refund everything still refundable.
    amount = models.DecimalField(
        _("amount"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    funded_by_platform = models.BooleanField(_("paid by the platform first"), default=False)
    reason = models.TextField(_("reason"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_by_role = models.CharField(_("decided as"), max_length=16, choices=Role.choices)
    # The caller's idempotency key: the same request again returns this decision.
    request_id = models.CharField(_("request id"), max_length=80)
    refund = models.ForeignKey(
        Refund,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("refund"),
    )
    replacement = models.ForeignKey(
        Delivery,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("replacement delivery"),
    )
    created_at = models.DateTimeField(_("decided at"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("dispute decision")
        verbose_name_plural = _("dispute decisions")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(action__in=["replace", "refund", "reject"]),
                name="disputedecision_action_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(decided_by_role__in=["merchant", "staff"]),
                name="disputedecision_role_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(amount__isnull=True) | models.Q(amount__gt=0),
                name="disputedecision_amount_positive",
            ),
            # Only staff spend the guarantee fund, and only on a refund.
            models.CheckConstraint(
                condition=models.Q(funded_by_platform=False)
                | models.Q(action="refund", decided_by_role="staff"),
                name="disputedecision_platform_pays_staff_refund",
            ),
            models.CheckConstraint(
                condition=~models.Q(action="refund", completed_at__isnull=False)
                | models.Q(refund__isnull=False),
                name="disputedecision_refund_completed_has_refund",
            ),
            models.CheckConstraint(
                condition=~models.Q(action="replace", completed_at__isnull=False)
                | models.Q(replacement__isnull=False),
                name="disputedecision_replace_completed_has_delivery",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} on dispute {self.dispute_id}"


class DisputeKeyReport(models.Model):
    """A card key a buyer reported as invalid or already used: the mark that feeds batch defect
    rates and each merchant's invalid-key rate."""

    dispute = models.ForeignKey(
        Dispute, on_delete=models.CASCADE, related_name="key_reports", verbose_name=_("dispute")
    )
    card_key = models.ForeignKey(
        CardKey,
        on_delete=models.PROTECT,
        related_name="dispute_reports",
        verbose_name=_("card key"),
    )
    reason = models.CharField(_("reason"), max_length=40, choices=Dispute.Reason.choices)
    created_at = models.DateTimeField(_("reported at"), auto_now_add=True)

    class Meta:
        verbose_name = _("reported key")
        verbose_name_plural = _("reported keys")
        constraints = [
            models.UniqueConstraint(
                fields=["dispute", "card_key"], name="disputekeyreport_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"CardKey #{self.card_key_id} reported in dispute {self.dispute_id}"
