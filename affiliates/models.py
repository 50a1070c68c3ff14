"""Affiliates (分销) and reselling (分销联盟).

Order-linked facts live here, one-to-one with ``orders.Order``: a ``Referral`` says which
affiliate brought an order and what commission it earns; a ``ResaleSale`` says which reseller sold
a supplier's product and at what prices. Money itself lives only in the ledger.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from ledger.models import PayoutRequest, payout_request_constraints
from merchants.models import Merchant
from shop.models import CURRENCIES, Product

MAX_COMMISSION_RATE = Decimal("0.5000")


class AffiliateProgramme(models.Model):
    """A merchant's affiliate programme: one per merchant, off until enabled."""

    merchant = models.OneToOneField(
        Merchant,
        on_delete=models.CASCADE,
        related_name="affiliate_programme",
        verbose_name=_("merchant"),
    )
    enabled = models.BooleanField(_("enabled"), default=False)
    commission_rate = models.DecimalField(
        _("commission rate"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.1000"),
        help_text=_("Share of each referred order paid to the affiliate, e.g. 0.1000 for 10%."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("affiliate programme")
        verbose_name_plural = _("affiliate programmes")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(commission_rate__gt=0, commission_rate__lte=MAX_COMMISSION_RATE),
                name="programme_rate_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant} ({self.commission_rate})"

    def clean(self) -> None:
        if self.commission_rate is not None and not (
            Decimal(0) < self.commission_rate <= MAX_COMMISSION_RATE
        ):
            raise ValidationError(
                {"commission_rate": _("Choose a rate above 0 and at most 0.5 (50%).")}
            )


class Affiliate(models.Model):
    """Someone who brings buyers. A plain user account (no shop needed)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="affiliate",
        verbose_name=_("user"),
    )
    code = models.CharField(_("referral code"), max_length=16, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    clicks = models.PositiveBigIntegerField(_("clicks"), default=0, editable=False)
    created_at = models.DateTimeField(_("joined at"), auto_now_add=True)

    class Meta:
        verbose_name = _("affiliate")
        verbose_name_plural = _("affiliates")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.code


class Referral(models.Model):
    """The attribution of one order to one affiliate, written with the order. The commission is
    credited when the order settles and reversed, in proportion, when it is refunded."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting settlement")
        CREDITED = "credited", _("Credited")
        VOID = "void", _("Refunded before settlement")

    order = models.OneToOneField(
        "orders.Order", on_delete=models.PROTECT, related_name="referral", verbose_name=_("order")
    )
    affiliate = models.ForeignKey(
        Affiliate, on_delete=models.PROTECT, related_name="referrals", verbose_name=_("affiliate")
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="referrals", verbose_name=_("merchant")
    )
    commission_rate = models.DecimalField(_("commission rate"), max_digits=5, decimal_places=4)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    commission = models.DecimalField(
        _("commission credited"), max_digits=12, decimal_places=2, default=Decimal(0)
    )
    reversed_amount = models.DecimalField(
        _("commission reversed"), max_digits=12, decimal_places=2, default=Decimal(0)
    )
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "credited", "void"]),
                name="referral_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(reversed_amount__lte=models.F("commission")),
                name="referral_reversal_within_commission",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.affiliate} → order {self.order_id}"


class AffiliateWithdrawal(PayoutRequest):
    """An affiliate's payout request; posted to the ledger like a merchant's withdrawal."""

    affiliate = models.ForeignKey(
        Affiliate, on_delete=models.PROTECT, related_name="withdrawals", verbose_name=_("affiliate")
    )
    payout_details = models.CharField(_("payout details"), max_length=300)

    class Meta(PayoutRequest.Meta):
        verbose_name = _("affiliate withdrawal")
        verbose_name_plural = _("affiliate withdrawals")
        constraints = payout_request_constraints("affiliate_withdrawal")

    def __str__(self) -> str:
        return f"{self.affiliate} {self.amount} {self.currency} ({self.status})"


class ResaleOffer(models.Model):
    """A supplier opens one of its products to resellers at a floor price: what the supplier is
    paid per unit, and the lowest price a reseller may ask."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, related_name="resale_offer", verbose_name=_("product")
    )
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        related_name="resale_offers",
        verbose_name=_("supplier"),
    )
    floor_price = models.DecimalField(
        _("floor price"),
        max_digits=12,
        decimal_places=2,
        help_text=_("Paid to you per unit; resellers cannot sell below it."),
    )
    is_open = models.BooleanField(_("open to resellers"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("resale offer")
        verbose_name_plural = _("resale offers")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(floor_price__gt=0), name="resale_offer_floor_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product} ≥ {self.floor_price}"

    def clean(self) -> None:
        if self.product_id is None:
            return
        if self.merchant_id is not None and self.product.merchant_id != self.merchant_id:
            raise ValidationError({"product": _("Choose one of your own products.")})
        if self.product.delivery_mode == Product.DeliveryMode.MANUAL:
            raise ValidationError({"product": _("Manually delivered products cannot be resold.")})


class ResaleListing(models.Model):
    """A reseller lists a supplier's offer in its own store at its own price."""

    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        related_name="resale_listings",
        verbose_name=_("reseller"),
    )
    offer = models.ForeignKey(
        ResaleOffer, on_delete=models.CASCADE, related_name="listings", verbose_name=_("offer")
    )
    price = models.DecimalField(_("your price"), max_digits=12, decimal_places=2)
    is_active = models.BooleanField(_("on sale"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("resale listing")
        verbose_name_plural = _("resale listings")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "offer"], name="resale_listing_unique"),
            models.CheckConstraint(
                condition=models.Q(price__gt=0), name="resale_listing_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant}: {self.offer.product} @ {self.price}"

    def clean(self) -> None:
        if self.offer_id is None or self.price is None:
            return
        if self.merchant_id is not None and self.offer.merchant_id == self.merchant_id:
            raise ValidationError({"offer": _("You cannot resell your own product.")})
        if self.price < self.offer.floor_price:
            raise ValidationError(
                {
                    "price": _("The supplier's floor price is %(floor)s %(currency)s.")
                    % {"floor": self.offer.floor_price, "currency": self.offer.product.currency}
                }
            )


class ResaleSale(models.Model):
    """One order sold by a reseller from a supplier's stock. ``Order.merchant`` and
    ``Order.product`` stay the supplier's; the prices are frozen here at checkout."""

    order = models.OneToOneField(
        "orders.Order",
        on_delete=models.PROTECT,
        related_name="resale_sale",
        verbose_name=_("order"),
    )
    listing = models.ForeignKey(
        ResaleListing, on_delete=models.PROTECT, related_name="sales", verbose_name=_("listing")
    )
    reseller = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="resale_sales", verbose_name=_("reseller")
    )
    supplier = models.ForeignKey(
        Merchant,
        on_delete=models.PROTECT,
        related_name="supplied_sales",
        verbose_name=_("supplier"),
    )
    unit_price = models.DecimalField(_("reseller's unit price"), max_digits=12, decimal_places=2)
    supplier_unit_price = models.DecimalField(
        _("supplier's unit price"), max_digits=12, decimal_places=2
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("resale sale")
        verbose_name_plural = _("resale sales")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(unit_price__gte=models.F("supplier_unit_price")),
                name="resale_sale_not_below_floor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reseller} → order {self.order_id}"
