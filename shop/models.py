from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant

CURRENCIES = [("CNY", "CNY"), ("USD", "USD"), ("EUR", "EUR"), ("USDT", "USDT")]


class Category(models.Model):
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="categories", verbose_name=_("merchant")
    )
    name = models.CharField(_("name"), max_length=80)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["sort_order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "name"], name="category_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    """A sellable item. A product with ``variant_of`` set is an option of that listing (e.g. 12
    months of a 1-month listing) with its own price, stock and delivery mode."""

    class DeliveryMode(models.TextChoices):
        AUTO = "auto", _("Automatic (unique key per buyer)")
        REUSABLE = "reusable", _("Reusable (the same key for every buyer)")
        MANUAL = "manual", _("Manual (merchant fulfils by hand)")

    class ReviewStatus(models.TextChoices):
        PUBLISHED = "published", _("Published")
        HELD = "held", _("Held for review")
        REJECTED = "rejected", _("Rejected by staff")

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="products", verbose_name=_("merchant")
    )
    category = models.ForeignKey(
        Category,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="products",
        verbose_name=_("category"),
    )
    variant_of = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="variants",
        verbose_name=_("variant of"),
        help_text=_("Leave empty for a listing; set to make this an option of that listing."),
    )
    slug = models.SlugField(_("slug"), max_length=80)
    title = models.CharField(_("title"), max_length=160)
    variant_label = models.CharField(
        _("option label"),
        max_length=80,
        blank=True,
        help_text=_("How this option is named on the product page, e.g. “1 month”."),
    )
    description = models.TextField(_("description"), blank=True)
    how_to_use = models.TextField(
        _("how to use"), blank=True, help_text=_("Shown to the buyer next to the delivered key.")
    )
    price = models.DecimalField(
        _("price"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES, default="CNY")
    is_active = models.BooleanField(_("on sale"), default=True)
    min_quantity = models.PositiveIntegerField(_("minimum per order"), default=1)
    max_quantity = models.PositiveIntegerField(_("maximum per order"), default=10)
    delivery_mode = models.CharField(
        _("delivery mode"),
        max_length=16,
        choices=DeliveryMode.choices,
        default=DeliveryMode.AUTO,
    )
    reusable_cap = models.PositiveIntegerField(
        _("reusable sales cap"),
        null=True,
        blank=True,
        help_text=_("Reusable keys only: how many units may be sold in all; empty for no cap."),
    )
    reusable_sold = models.PositiveIntegerField(_("reusable units sold"), default=0, editable=False)
    low_stock_threshold = models.PositiveIntegerField(
        _("low-stock alert at"),
        null=True,
        blank=True,
        help_text=_(
            "Notify the store (e-mail, Telegram, stock.low webhook) once when the free stock falls "
            "to this many units; empty for no alert."
        ),
    )
    manual_fields = models.JSONField(
        _("buyer input fields"),
        default=list,
        blank=True,
        help_text=_(
            'Manual delivery only: a list like [{"name": "account", "label": "Game account", '
            '"pattern": "^[0-9]{5,12}$", "required": true}].'
        ),
    )
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)
    # Screening against the staff's prohibited terms (shop.services.screen_product): only a
    # published product is listed or sold; only staff release a held one.
    review_status = models.CharField(
        _("review"),
        max_length=16,
        choices=ReviewStatus.choices,
        default=ReviewStatus.PUBLISHED,
        editable=False,
    )
    review_term = models.CharField(
        _("matched prohibited term"), max_length=100, blank=True, editable=False
    )
    review_note = models.CharField(_("review note"), max_length=300, blank=True, editable=False)
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sort_order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "slug"], name="product_unique_slug"),
            # The target of import batches' (product, merchant) foreign key (shop migration 0005).
            models.UniqueConstraint(fields=["id", "merchant"], name="product_id_merchant"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(
                condition=models.Q(min_quantity__gte=1)
                & models.Q(max_quantity__gte=models.F("min_quantity")),
                name="product_quantity_bounds",
            ),
            models.CheckConstraint(
                condition=models.Q(delivery_mode__in=["auto", "reusable", "manual"]),
                name="product_delivery_mode_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(reusable_cap__isnull=True)
                | models.Q(reusable_sold__lte=models.F("reusable_cap")),
                name="product_reusable_cap_respected",
            ),
            models.CheckConstraint(
                condition=models.Q(review_status__in=["published", "held", "rejected"]),
                name="product_review_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        if self.variant_label:
            return f"{self.title} · {self.variant_label}"
        return self.title

    def clean(self) -> None:
        if self.variant_of_id is not None:
            parent = self.variant_of
            if parent is not None and parent.variant_of_id is not None:
                raise ValidationError({"variant_of": _("A variant cannot have variants.")})
            if parent is not None and parent.merchant_id != self.merchant_id:
                raise ValidationError({"variant_of": _("Choose a listing of the same store.")})
            if self.pk is not None and parent is not None and parent.pk == self.pk:
                raise ValidationError({"variant_of": _("A product cannot be its own variant.")})
        if (
            self.category_id is not None
            and self.category is not None
            and self.category.merchant_id != self.merchant_id
        ):
            raise ValidationError({"category": _("Choose a category of the same store.")})
        if self.max_quantity < self.min_quantity:
            raise ValidationError({"max_quantity": _("The maximum must not be below the minimum.")})
        if self.max_quantity > settings.ORDER_MAX_QUANTITY:
            raise ValidationError(
                {"max_quantity": _("At most %(n)d per order.") % {"n": settings.ORDER_MAX_QUANTITY}}
            )
        from shop.manual_fields import validate_manual_field_spec

        validate_manual_field_spec(self.manual_fields)


class ProhibitedTerm(models.Model):
    """A word or phrase staff do not allow in product texts. A product whose title, description
    or "how to use" contains an active term (case- and width-insensitive) is held for review."""

    term = models.CharField(_("term"), max_length=100, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("prohibited term")
        verbose_name_plural = _("prohibited terms")
        ordering = ["term"]

    def __str__(self) -> str:
        return self.term

    def clean(self) -> None:
        self.term = self.term.strip()
        if not self.term:
            raise ValidationError({"term": _("Enter a word or phrase.")})


class ImportBatch(models.Model):
    """One import of keys: who, when, from what, with what result. Its keys remember it, so a bad
    batch can be traced, filtered, exported or voided later."""

    class Source(models.TextChoices):
        PASTE = "paste", _("Pasted")
        UPLOAD = "upload", _("Uploaded file")
        COMMAND = "command", _("Command line")

    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        related_name="import_batches",
        verbose_name=_("merchant"),
    )
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="import_batches", verbose_name=_("product")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        verbose_name=_("imported by"),
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    file_name = models.CharField(_("file name"), max_length=255, blank=True)
    line_count = models.PositiveIntegerField(_("lines"), default=0)
    imported_count = models.PositiveIntegerField(_("imported"), default=0)
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    rejected_count = models.PositiveIntegerField(_("rejected"), default=0)
    rejected_lines = models.JSONField(_("rejected line numbers"), default=list, blank=True)
    created_at = models.DateTimeField(_("imported at"), auto_now_add=True)

    class Meta:
        verbose_name = _("import batch")
        verbose_name_plural = _("import batches")
        ordering = ["-created_at"]
        constraints = [
            # The target of card keys' (batch, product, merchant) foreign key (migration 0005).
            models.UniqueConstraint(
                fields=["id", "product", "merchant"], name="importbatch_id_product_merchant"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.file_name or self.get_source_display()}"


class CardKey(models.Model):
    """One unit of stock, encrypted at rest (see ``shop.vault``).

    The plaintext never lives on this model: ``ciphertext`` is AES-256-GCM under keyring key
    ``key_id`` with ``nonce``, and its associated data binds it to merchant, product, key id and
    ``fingerprint`` (unique per merchant), so a ciphertext moved to any other row fails to decrypt.
    """

    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        RESERVED = "reserved", _("Reserved")
        SOLD = "sold", _("Sold")
        BURNED = "burned", _("Burned")
        VOID = "void", _("Void")

    # Integrity in PostgreSQL: (batch, product, merchant) must be an import batch's (id, product,
    # merchant), whose own (product, merchant) is a product's (id, merchant); so a key's
    # merchant is its product's and its batch's. For the key that rule is enforced by triggers
    # that check each INSERT statement's rows at once and lock their batches as a foreign key
    # would (shop migrations 0005, 0006): a per-row foreign key cost an import of 100,000 keys
    # 0.5-2 s of look-ups at commit (docs/performance.md). The three fields below therefore
    # carry no constraint of their own; on_delete still protects them in the ORM. (SQLite, the
    # demo, has only the ORM's checks.)
    # Every index here is maintained on each imported row and each claim or sale (a status
    # change is never a HOT update), so none is kept that another covers: merchant look-ups use
    # the (merchant, fingerprint) constraint's index, batch look-ups cardkey_batch_status, order
    # look-ups the partial cardkey_order.
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,
        verbose_name=_("merchant"),
    )
    product = models.ForeignKey(
        Product,
        on_delete=models.PROTECT,
        db_constraint=False,
        related_name="card_keys",
        verbose_name=_("product"),
    )
    # Every key comes from an import (shop.services.import_keys).
    batch = models.ForeignKey(
        ImportBatch,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,
        related_name="card_keys",
        verbose_name=_("import batch"),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.AVAILABLE
    )
    key_id = models.CharField(_("encryption key id"), max_length=32)
    nonce = models.BinaryField(_("nonce"), max_length=12)
    ciphertext = models.BinaryField(_("ciphertext"))
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    # The order that holds (reserved) or bought (sold) this key. One column, so a key can belong
    # to at most one order by construction.
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        db_index=False,
        null=True,
        blank=True,
        related_name="card_keys",
        verbose_name=_("order"),
    )
    # NULL while reserved means held for a paid-but-unfulfilled order (no expiry).
    reserved_until = models.DateTimeField(_("reserved until"), null=True, blank=True)
    sold_at = models.DateTimeField(_("sold at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("card key")
        verbose_name_plural = _("card keys")
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "fingerprint"], name="cardkey_unique_fingerprint"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["available", "reserved", "sold", "burned", "void"]),
                name="cardkey_status_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(status__in=["reserved", "sold"])
                | models.Q(order__isnull=False),
                name="cardkey_reserved_sold_has_order",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="available") | models.Q(order__isnull=True),
                name="cardkey_available_has_no_order",
            ),
        ]
        indexes = [
            # The claim walks this index only: free stock of one product in id order. Sold keys
            # are not in it, so a product with 100,000 sold keys claims as fast as a fresh one.
            models.Index(
                fields=["product", "id"],
                name="cardkey_free_stock",
                condition=models.Q(status__in=["available", "reserved"]),
            ),
            # Free stock has no order: an imported key adds nothing to this index.
            models.Index(
                fields=["order"], name="cardkey_order", condition=models.Q(order__isnull=False)
            ),
            models.Index(fields=["batch", "status"], name="cardkey_batch_status"),
        ]

    def __str__(self) -> str:
        # Never the plaintext.
        return f"CardKey #{self.pk} ({self.status})"

    def __repr__(self) -> str:
        return f"<CardKey pk={self.pk} status={self.status}>"
