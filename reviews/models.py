from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant
from orders.models import Order
from shop.models import Product

COMMENT_MAX_LENGTH = 1000
REPLY_MAX_LENGTH = 1000


class Review(models.Model):
    """A buyer's rating of one delivered order (one per order), the merchant's one reply, and
    whether staff hid it. Comments and replies are plain text, escaped wherever shown. Hidden
    reviews count nowhere: not in the store's average, not in its listing."""

    order = models.OneToOneField(
        Order, on_delete=models.PROTECT, related_name="review", verbose_name=_("order")
    )
    # Copied from the order so the store page reads one index, not a join.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="reviews", verbose_name=_("merchant")
    )
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, related_name="reviews", verbose_name=_("product")
    )
    rating = models.PositiveSmallIntegerField(_("rating"))
    comment = models.TextField(_("comment"), max_length=COMMENT_MAX_LENGTH, blank=True)
    reply = models.TextField(_("merchant's reply"), max_length=REPLY_MAX_LENGTH, blank=True)
    replied_at = models.DateTimeField(_("replied at"), null=True, blank=True)
    replied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("replied by"),
    )
    is_hidden = models.BooleanField(_("hidden by staff"), default=False)
    hidden_at = models.DateTimeField(_("hidden at"), null=True, blank=True)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("hidden by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            ),
            models.CheckConstraint(
                condition=models.Q(reply="", replied_at__isnull=True)
                | (~models.Q(reply="") & models.Q(replied_at__isnull=False)),
                name="review_reply_has_time",
            ),
        ]
        indexes = [
            # The store page: a merchant's visible reviews, newest first.
            models.Index(
                fields=["merchant", "-created_at"],
                condition=models.Q(is_hidden=False),
                name="review_visible_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order.number}: {self.rating}/5"
