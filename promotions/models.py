"""Coupons, their redemptions, and wholesale price tiers.

Pricing itself lives in ``promotions.selectors`` (quotes) and ``promotions.services``
(redeeming under a row lock, releasing on expiry or cancellation)."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant
from shop.models import CURRENCIES, Product

StrOrPromise = str | Promise

code_validator = RegexValidator(
    r"^[A-Za-z0-9_-]+$", _("Use letters, digits, hyphens and underscores only.")
)


class Coupon(models.Model):
    """A discount code of one store. Codes are case-insensitive and unique per store (stored in
    upper case). ``times_used`` counts live redemptions; it only moves together with a
    ``CouponRedemption`` row, under the coupon's row lock or a conditional update."""

    class Kind(models.TextChoices):
        PERCENT = "percent", _("Percentage off")
        FIXED = "fixed", _("Fixed amount off")

    class Scope(models.TextChoices):
        STORE = "store", _("Whole store")
        PRODUCTS = "products", _("Chosen products")

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="coupons", verbose_name=_("merchant")
    )
    code = models.CharField(
        _("code"),
        max_length=40,
        validators=[code_validator],
        help_text=_("What buyers type at checkout; not case-sensitive."),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.PERCENT)
    value = models.DecimalField(
        _("value"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text=_("Percent off (below 100), or the amount off in the coupon's currency."),
    )
    currency = models.CharField(
        _("currency"),
        max_length=4,
        choices=CURRENCIES,
        blank=True,
        help_text=_(
            "Required for a fixed amount or a minimum order amount; the coupon then applies "
            "only to products priced in this currency."
        ),
    )
    scope = models.CharField(_("applies to"), max_length=16, choices=Scope.choices, default="store")
    products = models.ManyToManyField(
        Product,
        blank=True,
        related_name="coupons",
        verbose_name=_("products"),
        help_text=_("For “Chosen products”: a listing also covers its options."),
    )
    min_order_amount = models.DecimalField(
        _("minimum order amount"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text=_("Before the discount; empty for none."),
    )
    usage_limit = models.PositiveIntegerField(
        _("total uses"), null=True, blank=True, help_text=_("Empty for no limit.")
    )
    per_buyer_limit = models.PositiveIntegerField(
        _("uses per buyer"),
        null=True,
        blank=True,
        help_text=_("Counted by email address; empty for no limit."),
    )
    times_used = models.PositiveIntegerField(_("times used"), default=0, editable=False)
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                Upper("code"),
                "merchant",
                name="coupon_unique_code",
                violation_error_message=_("Your store already has a coupon with this code."),
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["percent", "fixed"]), name="coupon_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(scope__in=["store", "products"]), name="coupon_scope_valid"
            ),
            models.CheckConstraint(condition=models.Q(value__gt=0), name="coupon_value_positive"),
            models.CheckConstraint(
                condition=~models.Q(kind="percent") | models.Q(value__lt=100),
                name="coupon_percent_below_100",
                violation_error_message=_("A percentage must be below 100."),
            ),
            models.CheckConstraint(
                condition=~models.Q(currency="")
                | (models.Q(kind="percent") & models.Q(min_order_amount__isnull=True)),
                name="coupon_currency_when_amounts",
                violation_error_message=_(
                    "Choose a currency for a fixed amount or a minimum order amount."
                ),
            ),
            models.CheckConstraint(
                condition=models.Q(valid_from__isnull=True)
                | models.Q(valid_until__isnull=True)
                | models.Q(valid_until__gt=models.F("valid_from")),
                name="coupon_window_ordered",
                violation_error_message=_("“Valid until” must be after “valid from”."),
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        self.code = (self.code or "").strip().upper()
        errors: dict[str, StrOrPromise] = {}
        if self.kind == self.Kind.PERCENT and self.value is not None and self.value >= 100:
            errors["value"] = _("A percentage must be below 100.")
        if not self.currency and (
            self.kind == self.Kind.FIXED or self.min_order_amount is not None
        ):
            errors["currency"] = _(
                "Choose a currency for a fixed amount or a minimum order amount."
            )
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            errors["valid_until"] = _("“Valid until” must be after “valid from”.")
        if errors:
            raise ValidationError(errors)


class CouponRedemption(models.Model):
    """One use of a coupon by one order. Live while ``released_at`` is empty; released when the
    unpaid order expires or is cancelled (and live again if a late payment arrives)."""

    coupon = models.ForeignKey(
        Coupon, on_delete=models.PROTECT, related_name="redemptions", verbose_name=_("coupon")
    )
    order = models.OneToOneField(
        "orders.Order",
        on_delete=models.PROTECT,
        related_name="coupon_redemption",
        verbose_name=_("order"),
    )
    # HMAC of the buyer's lower-cased email (promotions.selectors.buyer_key): enough to count
    # uses per buyer, without a second copy of the address to erase when an order is anonymised.
    buyer_key = models.CharField(max_length=64, editable=False)
    discount = models.DecimalField(_("discount"), max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(_("redeemed at"), auto_now_add=True)
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)

    class Meta:
        verbose_name = _("coupon redemption")
        verbose_name_plural = _("coupon redemptions")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["coupon", "buyer_key"],
                condition=models.Q(released_at__isnull=True),
                name="redemption_live_per_buyer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.coupon_id} → order {self.order_id}"


class PriceTier(models.Model):
    """Wholesale pricing: from ``min_quantity`` units up, each unit costs ``unit_price`` (in the
    product's currency). The tier with the largest ``min_quantity`` not above the ordered
    quantity wins; below every tier the product's own price applies."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="price_tiers", verbose_name=_("product")
    )
    min_quantity = models.PositiveIntegerField(
        _("from quantity"), validators=[MinValueValidator(2)]
    )
    unit_price = models.DecimalField(
        _("unit price"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
    )

    class Meta:
        verbose_name = _("wholesale price tier")
        verbose_name_plural = _("wholesale price tiers")
        ordering = ["product", "min_quantity"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "min_quantity"],
                name="pricetier_unique_quantity",
                violation_error_message=_("This product already has a tier from this quantity."),
            ),
            models.CheckConstraint(
                condition=models.Q(min_quantity__gte=2), name="pricetier_min_quantity"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_price__gt=0), name="pricetier_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} ≥{self.min_quantity}: {self.unit_price}"
