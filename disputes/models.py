"""Disputes are built out in their own issue; the foundation only reserves the shape so orders can
point at them later."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from orders.models import Order


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        AWAITING_MERCHANT = "awaiting_merchant", _("Awaiting merchant")
        ESCALATED = "escalated", _("Escalated to staff")
        RESOLVED = "resolved", _("Resolved")

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="disputes", verbose_name=_("order")
    )
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.OPEN
    )
    reason = models.CharField(_("reason"), max_length=40)
    message = models.TextField(_("message"), blank=True)
    created_at = models.DateTimeField(_("opened at"), auto_now_add=True)

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["open", "awaiting_merchant", "escalated", "resolved"]
                ),
                name="dispute_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Dispute #{self.pk}"
