"""Risk control: the rules staff tune, the lists they keep, and every decision taken.

A checkout is screened when the order is created (stage ``create``: allow, ask for a captcha or
block) and again when it is paid (stage ``pay``: allow or hold delivery for staff review).
"""

import ipaddress
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant
from orders.models import Order
from shop.models import CURRENCIES


class Stage(models.TextChoices):
    CREATE = "create", _("Order created")
    PAY = "pay", _("Order paid")


class RiskRule(models.Model):
    """One check with its threshold. A rule with a merchant replaces, for that merchant's orders,
    the platform rules (no merchant) of the same kind and stage."""

    class Kind(models.TextChoices):
        VELOCITY_IP = "velocity_ip", _("Checkouts per IP address")
        VELOCITY_EMAIL = "velocity_email", _("Checkouts per email address")
        VELOCITY_DEVICE = "velocity_device", _("Checkouts per browser (device cookie)")
        UNPAID_IP = "unpaid_ip", _("Unpaid orders per IP address")
        UNPAID_EMAIL = "unpaid_email", _("Unpaid orders per email address")
        AMOUNT = "amount", _("Order amount")
        LOOKUP_FAILURES = "lookup_failures", _("Failed order look-ups per IP address")

    class Outcome(models.TextChoices):
        CAPTCHA = "captcha", _("Ask for a captcha")
        BLOCK = "block", _("Block the checkout")
        HOLD = "hold", _("Hold delivery for staff review")

    VELOCITY_KINDS = frozenset({Kind.VELOCITY_IP, Kind.VELOCITY_EMAIL, Kind.VELOCITY_DEVICE})
    # Counted while the buyer is at the checkout only (unpaid orders, look-up failures).
    CREATE_ONLY_KINDS = frozenset({Kind.UNPAID_IP, Kind.UNPAID_EMAIL, Kind.LOOKUP_FAILURES})

    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    stage = models.CharField(_("stage"), max_length=8, choices=Stage.choices)
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="risk_rules",
        verbose_name=_("merchant"),
        help_text=_(
            "Blank: a platform rule. Set: replaces the platform rules of this kind and "
            "stage for this merchant's orders."
        ),
    )
    threshold = models.DecimalField(
        _("threshold"),
        max_digits=12,
        decimal_places=2,
        help_text=_(
            "The rule fires when the count (this checkout included) or the amount exceeds it."
        ),
    )
    window_minutes = models.PositiveIntegerField(
        _("window (minutes)"),
        default=60,
        help_text=_("How far back checkouts are counted (checkouts per IP, email, browser)."),
    )
    currency = models.CharField(
        _("currency"),
        max_length=4,
        choices=CURRENCIES,
        blank=True,
        help_text=_("Amount rules only: the currency it applies to; blank: every currency."),
    )
    outcome = models.CharField(_("outcome"), max_length=8, choices=Outcome.choices)
    enabled = models.BooleanField(_("enabled"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("risk rule")
        verbose_name_plural = _("risk rules")
        ordering = ["stage", "kind", "merchant_id", "threshold"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(stage="create", outcome__in=["captcha", "block"])
                    | models.Q(stage="pay", outcome="hold")
                ),
                name="riskrule_outcome_fits_stage",
            ),
            models.CheckConstraint(
                condition=models.Q(threshold__gte=0), name="riskrule_threshold_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(window_minutes__gte=1), name="riskrule_window_positive"
            ),
        ]

    def __str__(self) -> str:
        scope = self.merchant.name if self.merchant_id and self.merchant else _("platform")
        return (
            f"{self.get_kind_display()} > {self.threshold} → {self.get_outcome_display()} ({scope})"
        )

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.stage == Stage.CREATE and self.outcome == self.Outcome.HOLD:
            errors["outcome"] = _("At order creation a rule can ask for a captcha or block.")
        if self.stage == Stage.PAY and self.outcome != self.Outcome.HOLD:
            errors["outcome"] = _("Once paid, an order can only be held for review.")
        if self.stage == Stage.PAY and self.kind in self.CREATE_ONLY_KINDS:
            errors["stage"] = _("This kind is only checked when the order is created.")
        if self.currency and self.kind != self.Kind.AMOUNT:
            errors["currency"] = _("Only amount rules have a currency.")
        if errors:
            raise ValidationError(errors)


class ListEntry(models.Model):
    """A blacklist entry. Checked on every checkout and payment, never skipped: a blacklisted
    buyer is blocked at checkout, and a paid order that matches one is held."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("Email address")
        EMAIL_DOMAIN = "email_domain", _("Email domain (and its subdomains)")
        IP = "ip", _("IP address")
        CIDR = "cidr", _("IP range (CIDR, e.g. 203.0.113.0/24)")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    value = models.CharField(_("value"), max_length=254)
    # IP and CIDR entries as a range of 32-hex-digit IPv6 addresses (IPv4 mapped into ::ffff:0/96),
    # so one indexed comparison finds every entry covering an address.
    range_start = models.CharField(max_length=32, blank=True, editable=False)
    range_end = models.CharField(max_length=32, blank=True, editable=False)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("blacklist entry")
        verbose_name_plural = _("blacklist")
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="listentry_unique_value"),
            models.CheckConstraint(
                condition=models.Q(kind__in=["email", "email_domain"])
                | (~models.Q(range_start="") & ~models.Q(range_end="")),
                name="listentry_ip_has_range",
            ),
        ]
        indexes = [
            models.Index(fields=["range_start", "range_end"], name="listentry_ip_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"

    def clean(self) -> None:
        """Normalise the value (lower-case emails and domains, canonical addresses and networks)
        and compute the address range of IP and CIDR entries."""
        value = (self.value or "").strip().lower()
        try:
            if self.kind == self.Kind.EMAIL:
                if "@" not in value:
                    raise ValueError
            elif self.kind == self.Kind.EMAIL_DOMAIN:
                value = value.lstrip("@").rstrip(".")
                if not value or "@" in value or "." not in value:
                    raise ValueError
            elif self.kind == self.Kind.IP:
                address = ipaddress.ip_address(value)
                value = str(address)
                self.range_start = self.range_end = address_key(value)
            elif self.kind == self.Kind.CIDR:
                network = ipaddress.ip_network(value, strict=False)
                value = str(network)
                self.range_start = address_key(str(network.network_address))
                self.range_end = address_key(str(network.broadcast_address))
        except ValueError:
            raise ValidationError(
                {"value": _("Not a valid %(kind)s.") % {"kind": self.get_kind_display()}}
            ) from None
        self.value = value


def address_key(address: str) -> str:
    """An IPv4 or IPv6 address as 32 hex digits of its IPv6 form (IPv4 as ::ffff:a.b.c.d), so
    ranges of both families compare as strings."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        parsed = ipaddress.IPv6Address(f"::ffff:{parsed}")
    elif parsed.ipv4_mapped is not None:
        parsed = ipaddress.IPv6Address(f"::ffff:{parsed.ipv4_mapped}")
    return f"{int(parsed):032x}"


class RiskDecision(models.Model):
    """Every screening, whatever its outcome: what was decided, by which rule, on what inputs.
    The email is kept as a keyed hash (for counting) and masked (for people), never in full."""

    class Outcome(models.TextChoices):
        ALLOW = "allow", _("Allowed")
        CAPTCHA = "captcha", _("Captcha required")
        CAPTCHA_PASSED = "captcha_passed", _("Allowed after a captcha")
        BLOCK = "block", _("Blocked")
        HOLD = "hold", _("Held for review")

    order = models.ForeignKey(
        Order,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="risk_decisions",
        verbose_name=_("order"),
    )
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("merchant"),
    )
    stage = models.CharField(_("stage"), max_length=8, choices=Stage.choices)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    rule = models.ForeignKey(
        RiskRule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="decisions",
        verbose_name=_("rule"),
    )
    list_entry = models.ForeignKey(
        ListEntry,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="decisions",
        verbose_name=_("blacklist entry"),
    )
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    email_hash = models.CharField(max_length=64, blank=True, editable=False)
    email_masked = models.CharField(_("email"), max_length=254, blank=True)
    device_id = models.CharField(_("device cookie"), max_length=64, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=200, blank=True)
    amount = models.DecimalField(
        _("amount"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    currency = models.CharField(_("currency"), max_length=4, blank=True)
    created_at = models.DateTimeField(_("at"), db_index=False)

    class Meta:
        verbose_name = _("risk decision")
        verbose_name_plural = _("risk decisions")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The velocity and unpaid-order counts: one identity, a recent window.
            models.Index(fields=["ip", "created_at"], name="riskdecision_ip_recent"),
            models.Index(fields=["email_hash", "created_at"], name="riskdecision_email_recent"),
            models.Index(
                fields=["device_id", "created_at"],
                condition=~models.Q(device_id=""),
                name="riskdecision_device_recent",
            ),
            models.Index(fields=["created_at"], name="riskdecision_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.get_stage_display()}: {self.get_outcome_display()}"
