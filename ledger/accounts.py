"""The chart of accounts: platform accounts and each merchant's, created on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.models import Account
from merchants.models import Merchant

if TYPE_CHECKING:
    from affiliates.models import Affiliate

DEBIT = Account.Normal.DEBIT
CREDIT = Account.Normal.CREDIT


def get(
    code: str,
    currency: str,
    normal: str,
    merchant: Merchant | None = None,
    affiliate: Affiliate | None = None,
) -> Account:
    account, _created = Account.objects.get_or_create(
        code=code,
        currency=currency,
        defaults={"normal": normal, "merchant": merchant, "affiliate": affiliate},
    )
    return account


def clearing(currency: str) -> Account:
    """Money gateways hold for the platform."""
    return get("platform:clearing", currency, DEBIT)


def fees(currency: str) -> Account:
    return get("platform:fees", currency, CREDIT)


def guarantee(currency: str) -> Account:
    """The guarantee fund's spending on buyers (先行赔付), recovered by claw-backs."""
    return get("platform:guarantee", currency, DEBIT)


def suspense(currency: str) -> Account:
    """Money received for no open order, owed back to its buyer."""
    return get("platform:suspense", currency, CREDIT)


def payouts(currency: str) -> Account:
    """Money paid out to merchants."""
    return get("platform:payouts", currency, CREDIT)


def merchant_pending(merchant: Merchant, currency: str) -> Account:
    return get(f"merchant:{merchant.pk}:pending", currency, CREDIT, merchant)


def merchant_available(merchant: Merchant, currency: str) -> Account:
    return get(f"merchant:{merchant.pk}:available", currency, CREDIT, merchant)


def merchant_withdrawing(merchant: Merchant, currency: str) -> Account:
    return get(f"merchant:{merchant.pk}:withdrawing", currency, CREDIT, merchant)


def affiliate_available(affiliate: Affiliate, currency: str) -> Account:
    """Commission earned on settled sales; withdrawable; may go negative after a reversal."""
    return get(f"affiliate:{affiliate.pk}:available", currency, CREDIT, affiliate=affiliate)


def affiliate_withdrawing(affiliate: Affiliate, currency: str) -> Account:
    return get(f"affiliate:{affiliate.pk}:withdrawing", currency, CREDIT, affiliate=affiliate)
