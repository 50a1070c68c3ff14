"""Reads of the ledger: balances (always sums of entries), statements, the books' health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from ledger.models import Account, Entry, Journal
from merchants.models import Merchant


def balance(account: Account) -> Decimal:
    total = account.entries.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return -total if account.normal == Account.Normal.CREDIT else total


@dataclass(frozen=True, slots=True)
class MerchantBalance:
    currency: str
    pending: Decimal
    available: Decimal
    withdrawing: Decimal


def merchant_balances(*, merchant: Merchant) -> list[MerchantBalance]:
    """Per currency, in one query."""
    rows = (
        Entry.objects.filter(account__merchant=merchant)
        .values("account__code", "account__currency")
        .annotate(s=Sum("amount"))
    )
    figures: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        kind = row["account__code"].rsplit(":", 1)[-1]
        figures.setdefault(row["account__currency"], {})[kind] = -(row["s"] or Decimal(0))
    return [
        MerchantBalance(
            currency=currency,
            pending=values.get("pending", Decimal(0)),
            available=values.get("available", Decimal(0)),
            withdrawing=values.get("withdrawing", Decimal(0)),
        )
        for currency, values in sorted(figures.items())
    ]


def statement(
    *,
    merchant: Merchant,
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Entry]:
    """Every entry on the merchant's accounts, newest first, filterable."""
    entries = (
        Entry.objects.filter(account__merchant=merchant)
        .select_related("journal", "journal__order", "account")
        .order_by("-journal__created_at", "-id")
    )
    if kind:
        entries = entries.filter(journal__kind=kind)
    if since is not None:
        entries = entries.filter(journal__created_at__gte=since)
    if until is not None:
        entries = entries.filter(journal__created_at__lt=until)
    return entries


def unbalanced_journal_ids() -> list[int]:
    """Journals whose entries do not sum to zero (must always be empty)."""
    return list(
        Journal.objects.annotate(total=Sum("entries__amount"))
        .exclude(total=0)
        .values_list("id", flat=True)
    )


def misowned_account_ids() -> list[int]:
    """Accounts whose owner does not match their code (must always be empty): ``merchant:<id>:…``
    belongs to merchant <id> only, ``affiliate:<id>:…`` to affiliate <id> only, ``platform:…``
    to nobody."""
    bad: list[int] = []
    rows = Account.objects.values_list("id", "code", "merchant_id", "affiliate_id")
    for account_id, code, merchant_id, affiliate_id in rows:
        kind, _sep, rest = code.partition(":")
        owner = rest.split(":", 1)[0]
        expected = {
            "merchant": (owner, None),
            "affiliate": (None, owner),
            "platform": (None, None),
        }.get(kind)
        actual = (
            str(merchant_id) if merchant_id is not None else None,
            str(affiliate_id) if affiliate_id is not None else None,
        )
        if expected is None or actual != expected:
            bad.append(account_id)
    return bad


def trial_balance() -> dict[str, Decimal]:
    """Sum of every entry per currency: zero when the books balance."""
    rows = Entry.objects.values("account__currency").annotate(s=Sum("amount"))
    return {row["account__currency"]: row["s"] or Decimal(0) for row in rows}
