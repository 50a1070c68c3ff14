from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Merchant(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending review")
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=120)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    announcement = models.TextField(_("announcement"), blank=True)
    contact = models.CharField(_("contact"), max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="owned_merchants",
        verbose_name=_("owner"),
    )
    fee_rate = models.DecimalField(
        _("fee rate"),
        max_digits=5,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("The platform's fee on this merchant's sales; blank: the platform default."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "active", "suspended"]),
                name="merchant_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_selling(self) -> bool:
        return self.status == self.Status.ACTIVE


class MerchantMembership(models.Model):
    """A user who works for a merchant. One merchant per user keeps the merchant admin's scoping
    unambiguous; platform staff are not members."""

    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        STAFF = "staff", _("Staff")

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("merchant")
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="merchant_membership",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant membership")
        verbose_name_plural = _("merchant memberships")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "staff"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant}"


class MerchantApplication(models.Model):
    """Someone asking to open a store. The applicant's user is created inactive and without a
    merchant, so it cannot sign in anywhere; approval creates the Merchant (active) and the
    owner membership and activates the user, rejection records the reason. Either decision is
    e-mailed in ``language``, the language the applicant used."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("Awaiting review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="merchant_application",
        verbose_name=_("applicant account"),
    )
    store_name = models.CharField(_("store name"), max_length=120)
    slug = models.SlugField(_("store address"), max_length=60)
    contact = models.CharField(_("contact"), max_length=200)
    goods = models.TextField(_("what the store will sell"), max_length=2000)
    language = models.CharField(_("language"), max_length=8, default="en")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.SUBMITTED
    )
    reason = models.TextField(_("reason for rejection"), blank=True)
    merchant = models.OneToOneField(
        Merchant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="application",
        verbose_name=_("merchant"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    applicant_notified_at = models.DateTimeField(_("applicant notified at"), null=True, blank=True)
    created_at = models.DateTimeField(_("applied at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant application")
        verbose_name_plural = _("merchant applications")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["submitted", "approved", "rejected"]),
                name="application_status_valid",
            ),
            # Two open applications never ask for the same store address.
            models.UniqueConstraint(
                fields=["slug"],
                condition=models.Q(status="submitted"),
                name="application_unique_open_slug",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="rejected") | ~models.Q(reason=""),
                name="application_rejection_has_reason",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="approved") | models.Q(merchant__isnull=False),
                name="application_approval_has_merchant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.store_name} ({self.slug})"


class ApplicationDocument(models.Model):
    """An identity or business document of an application: PNG, JPEG or PDF proven by content,
    stored under ``MEDIA_ROOT/private/`` with a random name that no URL serves; staff download it
    through the access-checked admin view."""

    application = models.ForeignKey(
        MerchantApplication,
        on_delete=models.CASCADE,
        related_name="documents",
        verbose_name=_("application"),
    )
    file = models.FileField(_("file"), max_length=200)
    kind = models.CharField(_("type"), max_length=8)
    original_name = models.CharField(_("original file name"), max_length=200, blank=True)
    size = models.PositiveIntegerField(_("size in bytes"))
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("application document")
        verbose_name_plural = _("application documents")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["png", "jpeg", "pdf"]), name="document_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.application_id}: {self.original_name or self.kind}"


class InspectionReport(models.Model):
    """One day's inspection of every selling merchant (one row per day: a second run the same
    day finishes what the first left undone and changes nothing else)."""

    day = models.DateField(_("day"), unique=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    staff_alerted_at = models.DateTimeField(_("staff alerted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("inspection report")
        verbose_name_plural = _("inspection reports")
        ordering = ["-day"]

    def __str__(self) -> str:
        return str(self.day)


class MerchantInspection(models.Model):
    """One merchant's metrics and findings in a day's report, and what was done about them."""

    class Level(models.TextChoices):
        OK = "ok", _("OK")
        WARNING = "warning", _("Warning")
        HARD = "hard", _("Over the hard limit")

    report = models.ForeignKey(
        InspectionReport,
        on_delete=models.CASCADE,
        related_name="inspections",
        verbose_name=_("report"),
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="inspections", verbose_name=_("merchant")
    )
    level = models.CharField(_("level"), max_length=8, choices=Level.choices)
    metrics = models.JSONField(_("metrics"), default=dict)
    findings = models.JSONField(_("findings"), default=list)
    # Product prices at inspection time: tomorrow's run compares against them.
    prices = models.JSONField(_("prices"), default=dict)
    suspended = models.BooleanField(_("suspended by this inspection"), default=False)
    merchant_notified_at = models.DateTimeField(_("merchant notified at"), null=True, blank=True)
    created_at = models.DateTimeField(_("inspected at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant inspection")
        verbose_name_plural = _("merchant inspections")
        ordering = ["-report__day", "merchant__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["report", "merchant"], name="inspection_one_per_merchant_per_day"
            ),
            models.CheckConstraint(
                condition=models.Q(level__in=["ok", "warning", "hard"]),
                name="inspection_level_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.report} {self.merchant}: {self.level}"


class ProductViewDay(models.Model):
    """Product page views of one product on one day (the site's time zone): the first step of the
    analytics funnel. ``services.record_product_view`` counts a view in Redis (one ``HINCRBY``)
    and ``services.flush_product_views`` (beat, every minute) copies the day's totals here; without
    Redis a view is one ``INSERT … ON CONFLICT DO UPDATE`` on this table."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant")
    )
    product = models.ForeignKey(
        "shop.Product", on_delete=models.CASCADE, related_name="+", verbose_name=_("product")
    )
    day = models.DateField(_("day"))
    views = models.PositiveBigIntegerField(_("views"), default=0)

    class Meta:
        verbose_name = _("product views per day")
        verbose_name_plural = _("product views per day")
        constraints = [
            models.UniqueConstraint(fields=["product", "day"], name="productviewday_unique"),
        ]
        indexes = [models.Index(fields=["merchant", "day"], name="productviewday_merchant_day")]

    def __str__(self) -> str:
        return f"{self.product_id} {self.day}: {self.views}"


class CustomerNote(models.Model):
    """A merchant's private tags and note on one customer. Customers have no account: they are
    the buyer e-mails of the merchant's orders, named here by ``customer_key`` (a per-merchant
    SHA-256 of the lower-cased address, ``merchants.customers.customer_key``), so the table holds
    no e-mail address and a key of one merchant means nothing at another."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant")
    )
    customer_key = models.CharField(_("customer key"), max_length=64)
    # Stored as ",vip,reseller," so one tag is found with a plain ``contains`` on any database.
    tags = models.CharField(_("tags"), max_length=400, blank=True)
    note = models.TextField(_("private note"), max_length=2000, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("updated by"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer note")
        verbose_name_plural = _("customer notes")
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "customer_key"], name="customernote_one_per_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id}:{self.customer_key[:8]}"

    @property
    def tag_list(self) -> list[str]:
        return [tag for tag in self.tags.split(",") if tag]
