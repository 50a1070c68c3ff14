"""The double-entry ledger: every money movement is one journal whose entries sum to zero.

Amounts are signed: a debit is positive, a credit negative. Balances are sums of entries, never
stored figures; an account's ``normal`` side says how to show it (merchant balances are what the
platform owes, so credit-normal: shown as the negated sum).
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from merchants.models import Merchant
from shop.models import CURRENCIES


class Account(models.Model):
    class Normal(models.TextChoices):
        DEBIT = "debit", _("Debit")
        CREDIT = "credit", _("Credit")

    code = models.CharField(_("code"), max_length=80)
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    normal = models.CharField(_("normal side"), max_length=6, choices=Normal.choices)
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="accounts",
        verbose_name=_("merchant"),
    )
    affiliate = models.ForeignKey(
        "affiliates.Affiliate",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="accounts",
        verbose_name=_("affiliate"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        ordering = ["code", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["code", "currency"], name="account_unique_code"),
            models.CheckConstraint(
                condition=models.Q(normal__in=["debit", "credit"]), name="account_normal_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.currency})"


class Journal(models.Model):
    """One money movement. ``(kind, reference)`` is unique: posting the same business event twice
    (a retried task, a replayed callback) writes it once."""

    class Kind(models.TextChoices):
        SALE = "sale", _("Sale")
        UNALLOCATED = "unallocated", _("Payment for no open order")
        REFUND = "refund", _("Refund")
        SETTLEMENT = "settlement", _("Settlement")
        COMPENSATION = "compensation", _("Platform pays first")
        CLAWBACK = "clawback", _("Claw-back from merchant")
        WITHDRAWAL_HOLD = "withdrawal_hold", _("Withdrawal requested")
        WITHDRAWAL_RELEASE = "withdrawal_release", _("Withdrawal rejected")
        WITHDRAWAL_PAID = "withdrawal_paid", _("Withdrawal paid")
        COMMISSION = "commission", _("Affiliate commission")
        COMMISSION_REVERSAL = "commission_reversal", _("Affiliate commission reversed")

    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    reference = models.CharField(_("reference"), max_length=80)
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="journals",
        verbose_name=_("order"),
    )
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="journals",
        verbose_name=_("merchant"),
    )
    memo = models.CharField(_("memo"), max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("journal")
        verbose_name_plural = _("journals")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "reference"], name="journal_unique_event"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.reference}"


class Entry(models.Model):
    journal = models.ForeignKey(
        Journal, on_delete=models.PROTECT, related_name="entries", verbose_name=_("journal")
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", verbose_name=_("account")
    )
    # Signed: debit > 0, credit < 0. Never zero.
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)

    class Meta:
        verbose_name = _("entry")
        verbose_name_plural = _("entries")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="entry_amount_nonzero"),
        ]
        indexes = [models.Index(fields=["account", "journal"], name="entry_account_journal")]

    def __str__(self) -> str:
        return f"{self.account.code} {self.amount}"


class PayoutRequest(models.Model):
    """What a merchant's ``Withdrawal`` and an affiliate's ``AffiliateWithdrawal`` share: an
    amount held for a payout that staff make (with a payout reference) or refuse (with a note).
    Each concrete model adds its owner, its payout details and its own ``Meta`` (names, and
    ``payout_request_constraints`` with its own prefix)."""

    class Status(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        PAID = "paid", _("Paid")
        REJECTED = "rejected", _("Rejected")

    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=4, choices=CURRENCIES)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.REQUESTED
    )
    payout_reference = models.CharField(_("payout reference"), max_length=128, blank=True)
    decision_note = models.CharField(_("note"), max_length=300, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    created_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


def payout_request_constraints(prefix: str) -> list[models.BaseConstraint]:
    """A payout request's checks, named ``<prefix>_amount_positive`` and
    ``<prefix>_status_valid``."""
    return [
        models.CheckConstraint(condition=models.Q(amount__gt=0), name=f"{prefix}_amount_positive"),
        models.CheckConstraint(
            condition=models.Q(status__in=["requested", "paid", "rejected"]),
            name=f"{prefix}_status_valid",
        ),
    ]


class Withdrawal(PayoutRequest):
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="withdrawals", verbose_name=_("merchant")
    )
    payout_details = models.CharField(
        _("payout details"),
        max_length=300,
        help_text=_("Where to send the money (account, wallet address)."),
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requested by"),
    )

    class Meta(PayoutRequest.Meta):
        verbose_name = _("withdrawal")
        verbose_name_plural = _("withdrawals")
        constraints = payout_request_constraints("withdrawal")

    def __str__(self) -> str:
        return f"{self.merchant} {self.amount} {self.currency} ({self.status})"
