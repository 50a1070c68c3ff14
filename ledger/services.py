"""Writes to the ledger. Every function posts inside the caller's transaction (the business
change that causes it), except the withdrawal and settlement services, which own theirs.

Posting is idempotent per ``(kind, reference)``: the same sale, refund or settlement posted twice
(a retried task, a replayed callback) is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from ledger import accounts
from ledger.exceptions import UnbalancedJournal, WithdrawalNotAllowed
from ledger.models import Account, Entry, Journal, Withdrawal
from merchants.models import Merchant
from shop.exceptions import CardvaultError
from webhooks import notifications as merchant_notices

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Line:
    account: Account
    amount: Decimal  # debit > 0, credit < 0


def post(
    *,
    kind: str,
    reference: str,
    currency: str,
    lines: list[Line],
    order_id: int | None = None,
    merchant: Merchant | None = None,
    memo: str = "",
    actor: User | None = None,
) -> Journal:
    """Write one balanced journal, or return the one already written for ``(kind, reference)``.
    Raises ``UnbalancedJournal`` (nothing written)."""
    lines = [Line(line.account, line.amount.quantize(CENT)) for line in lines if line.amount]
    if not lines or sum((line.amount for line in lines), Decimal(0)) != 0:
        raise UnbalancedJournal(f"{kind}:{reference} does not balance")
    if any(line.account.currency != currency for line in lines):
        raise UnbalancedJournal(f"{kind}:{reference} mixes currencies")
    existing = Journal.objects.filter(kind=kind, reference=reference).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            journal = Journal.objects.create(
                kind=kind,
                reference=reference[:80],
                currency=currency,
                order_id=order_id,
                merchant=merchant,
                memo=memo[:300],
                created_by=actor if actor is not None and actor.is_authenticated else None,
            )
            Entry.objects.bulk_create(
                Entry(journal=journal, account=line.account, amount=line.amount) for line in lines
            )
    except IntegrityError:
        # Another transaction posted the same event first.
        return Journal.objects.get(kind=kind, reference=reference)
    return journal


def fee_rate(merchant: Merchant) -> Decimal:
    if merchant.fee_rate is not None:
        return merchant.fee_rate
    return Decimal(str(settings.PLATFORM_FEE_RATE))


# --- sales and refunds (called from orders.services inside their transactions) -----------------
def record_sale(*, order_id: int, merchant: Merchant, amount: Decimal, currency: str) -> Journal:
    """A paid order: the gateway holds the money for us (clearing); the merchant is owed it
    minus the platform fee, pending until settlement. A reseller's order is split between the
    supplier (``merchant``) and the reseller (``affiliates.services.resale_sale_lines``)."""
    from affiliates import services as affiliate_services

    resale_lines = affiliate_services.resale_sale_lines(
        order_id=order_id, supplier=merchant, amount=amount, currency=currency
    )
    if resale_lines is not None:
        return post(
            kind=Journal.Kind.SALE,
            reference=f"order:{order_id}",
            currency=currency,
            order_id=order_id,
            merchant=merchant,
            lines=resale_lines,
        )
    fee = (amount * fee_rate(merchant)).quantize(CENT, rounding=ROUND_HALF_UP)
    clearing, pending, fees = _sale_accounts(merchant, currency)
    return _post_once(
        kind=Journal.Kind.SALE,
        reference=f"order:{order_id}",
        currency=currency,
        order_id=order_id,
        merchant=merchant,
        lines=[Line(clearing, amount), Line(pending, -(amount - fee)), Line(fees, -fee)],
    )


def _sale_accounts(merchant: Merchant, currency: str) -> tuple[Account, Account, Account]:
    """Clearing, the merchant's pending and fees in one query once they exist (every sale after
    the first in a currency); ``accounts`` creates any that does not."""
    codes = {
        "platform:clearing": accounts.clearing,
        f"merchant:{merchant.pk}:pending": lambda c: accounts.merchant_pending(merchant, c),
        "platform:fees": accounts.fees,
    }
    found = {a.code: a for a in Account.objects.filter(currency=currency, code__in=list(codes))}
    clearing, pending, fees = (
        found[code] if code in found else make(currency) for code, make in codes.items()
    )
    return clearing, pending, fees


def _post_once(
    *,
    kind: str,
    reference: str,
    currency: str,
    lines: list[Line],
    order_id: int | None = None,
    merchant: Merchant | None = None,
) -> Journal:
    """``post`` for the sale journal in two statements instead of five: the journal row is
    inserted with ``ON CONFLICT (kind, reference) DO NOTHING`` (the ``journal_unique_event``
    constraint), so no look-up first and no savepoint; if it already exists, it is returned
    and nothing is written, exactly as ``post`` does."""
    if connection.vendor != "postgresql":
        return post(
            kind=kind,
            reference=reference,
            currency=currency,
            lines=lines,
            order_id=order_id,
            merchant=merchant,
        )
    lines = [Line(line.account, line.amount.quantize(CENT)) for line in lines if line.amount]
    if not lines or sum((line.amount for line in lines), Decimal(0)) != 0:
        raise UnbalancedJournal(f"{kind}:{reference} does not balance")
    if any(line.account.currency != currency for line in lines):
        raise UnbalancedJournal(f"{kind}:{reference} mixes currencies")
    journal = Journal(
        kind=kind,
        reference=reference[:80],
        currency=currency,
        order_id=order_id,
        merchant=merchant,
        memo="",
        created_at=timezone.now(),
    )
    table = connection.ops.quote_name(Journal._meta.db_table)
    # The table name from the model; every value a bound parameter.
    sql = (
        f"INSERT INTO {table}"  # noqa: S608  # nosec B608
        " (kind, reference, currency, order_id, merchant_id, memo, created_by_id, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, NULL, %s)"
        " ON CONFLICT (kind, reference) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                journal.kind,
                journal.reference,
                journal.currency,
                order_id,
                merchant.pk if merchant is not None else None,
                journal.memo,
                journal.created_at,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        # Posted before (a replay, a retried task, another transaction first).
        return Journal.objects.get(kind=kind, reference=reference[:80])
    journal.pk = row[0]
    journal._state.adding = False
    journal._state.db = connection.alias
    Entry.objects.bulk_create(
        Entry(journal=journal, account=line.account, amount=line.amount) for line in lines
    )
    return journal


def record_unallocated(
    *, payment_id: int, order_id: int, amount: Decimal, currency: str
) -> Journal:
    """Money for an order that was already paid or closed: held for the buyer until refunded."""
    return post(
        kind=Journal.Kind.UNALLOCATED,
        reference=f"payment:{payment_id}",
        currency=currency,
        order_id=order_id,
        lines=[
            Line(accounts.clearing(currency), amount),
            Line(accounts.suspense(currency), -amount),
        ],
    )


def record_refund(
    *,
    refund_id: int,
    order_id: int,
    merchant: Merchant,
    amount: Decimal,
    currency: str,
    of_sale: bool,
    funded_by_platform: bool = False,
    actor: User | None = None,
) -> Journal:
    """Money back to a buyer. For a sale, the merchant gives back its share (from pending if the
    order is not settled yet, else from available) and the platform its fee share; with
    ``funded_by_platform`` (先行赔付) the guarantee fund pays instead and the merchant's share is
    clawed back from its available balance at once (it may go negative). A reseller's order takes
    the reseller's margin share back from the reseller; an affiliate's credited commission is
    reversed in proportion (``affiliates.services.reverse_commission``)."""
    from affiliates import services as affiliate_services

    clearing = accounts.clearing(currency)
    reference = f"refund:{refund_id}"
    if not of_sale:
        return post(
            kind=Journal.Kind.REFUND,
            reference=reference,
            currency=currency,
            order_id=order_id,
            lines=[Line(accounts.suspense(currency), amount), Line(clearing, -amount)],
        )
    sale = Journal.objects.get(kind=Journal.Kind.SALE, reference=f"order:{order_id}")
    sale_amount = _line_amount(sale, accounts.clearing(currency))
    sale_fee = -_line_amount(sale, accounts.fees(currency))
    # Cumulative: the fee share of everything refunded so far, less what earlier refunds gave
    # back, so rounding never drifts and the refund that completes the sale returns exactly
    # the rest of the fee.
    before = sale_refunds(order_id=order_id, currency=currency, excluding=reference)
    fee_share = (sale_fee * (before.amount + amount) / sale_amount).quantize(
        CENT, rounding=ROUND_HALF_UP
    ) - before.fee
    merchant_share = amount - fee_share
    share_lines = _merchant_share_lines(
        merchant, order_id, currency, merchant_share, reference=reference
    )
    affiliate_services.reverse_commission(
        refund_id=refund_id,
        order_id=order_id,
        amount=amount,
        merchant_share=merchant_share,
        currency=currency,
    )
    if funded_by_platform:
        journal = post(
            kind=Journal.Kind.COMPENSATION,
            reference=reference,
            currency=currency,
            order_id=order_id,
            merchant=merchant,
            actor=actor,
            lines=[
                Line(accounts.guarantee(currency), merchant_share),
                Line(accounts.fees(currency), fee_share),
                Line(clearing, -amount),
            ],
        )
        post(
            kind=Journal.Kind.CLAWBACK,
            reference=reference,
            currency=currency,
            order_id=order_id,
            merchant=merchant,
            actor=actor,
            lines=[*share_lines, Line(accounts.guarantee(currency), -merchant_share)],
        )
        return journal
    return post(
        kind=Journal.Kind.REFUND,
        reference=reference,
        currency=currency,
        order_id=order_id,
        merchant=merchant,
        actor=actor,
        lines=[*share_lines, Line(accounts.fees(currency), fee_share), Line(clearing, -amount)],
    )


def _line_amount(journal: Journal, account: Account) -> Decimal:
    return journal.entries.filter(account=account).aggregate(s=Sum("amount"))["s"] or Decimal(0)


# A refund of the sale names the order's merchant; the automatic refund of a duplicate or late
# payment (``record_refund(of_sale=False)``: suspense → clearing) names none and never touches
# the sale's shares.
SALE_REFUND_KINDS = (Journal.Kind.REFUND, Journal.Kind.COMPENSATION)


def sale_refund_journals(*, order_id: int, excluding: str = "") -> Q:
    """Entries of the journals refunding an order's sale (``excluding`` one reference: the
    refund being recorded, so a replay computes what the first run did)."""
    condition = Q(
        journal__order_id=order_id,
        journal__kind__in=SALE_REFUND_KINDS,
        journal__merchant__isnull=False,
    )
    if excluding:
        condition &= ~Q(journal__reference=excluding)
    return condition


@dataclass(frozen=True, slots=True)
class SaleRefunds:
    amount: Decimal  # what buyers got back of the sale (clearing credits)
    fee: Decimal  # the platform fee share given back with it


def sale_refunds(*, order_id: int, currency: str, excluding: str = "") -> SaleRefunds:
    """What buyers got back of an order's sale so far, and the fee share returned with it; a
    refund of a payment that was never the sale's is not counted."""
    clearing, fees = accounts.clearing(currency), accounts.fees(currency)
    sums = {
        row["account_id"]: row["s"]
        for row in Entry.objects.filter(
            sale_refund_journals(order_id=order_id, excluding=excluding),
            account__in=[clearing, fees],
        )
        .values("account_id")
        .annotate(s=Sum("amount"))
        .order_by()
    }
    return SaleRefunds(
        amount=-(sums.get(clearing.pk) or Decimal(0)), fee=sums.get(fees.pk) or Decimal(0)
    )


def _merchant_share_lines(
    merchant: Merchant, order_id: int, currency: str, share: Decimal, *, reference: str
) -> list[Line]:
    """What the seller side gives back of a refund: all from the merchant, or, for a reseller's
    order, split between supplier and reseller as the sale was."""
    from affiliates import services as affiliate_services

    reseller_line = affiliate_services.resale_refund_line(
        order_id=order_id, share=share, currency=currency, reference=reference
    )
    if reseller_line is None:
        return [Line(merchant_source(merchant, order_id, currency), share)]
    return [
        Line(merchant_source(merchant, order_id, currency), share - reseller_line.amount),
        reseller_line,
    ]


def merchant_source(merchant: Merchant, order_id: int, currency: str) -> Account:
    """Take a merchant's share back from pending while the order is unsettled, else from
    available."""
    settled = Journal.objects.filter(
        kind=Journal.Kind.SETTLEMENT, reference=f"order:{order_id}"
    ).exists()
    if settled:
        return accounts.merchant_available(merchant, currency)
    return accounts.merchant_pending(merchant, currency)


# --- settlement ----------------------------------------------------------------------------------
def settle_due_orders(*, now: datetime | None = None) -> int:
    """Move each order's net sale from pending to available once its hold has passed, unless it
    is disputed. One short transaction per order (``settle_order``); safe to run twice at once."""
    from disputes.selectors import order_ids_with_open_disputes
    from orders.models import Order

    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.SETTLEMENT_HOLD_DAYS)
    due = list(
        Order.objects.filter(
            delivered_at__lte=cutoff,
            status__in=[Order.Status.DELIVERED, Order.Status.PARTIALLY_REFUNDED],
            journals__kind=Journal.Kind.SALE,
        )
        .exclude(journals__kind=Journal.Kind.SETTLEMENT)
        # A commission without a settlement took the merchant's whole share (capped at it):
        # nothing is left to settle, and the order must not fill every batch forever.
        .exclude(journals__kind=Journal.Kind.COMMISSION)
        .values_list("id", flat=True)[:1000]
    )
    # A cheap first pass; ``settle_order`` asks again under the order's lock.
    disputed = order_ids_with_open_disputes(order_ids=due)
    return sum(
        1
        for order_id in due
        if order_id not in disputed and settle_order(order_id=order_id, now=now)
    )


def settle_order(*, order_id: int, now: datetime) -> bool:
    """Settle one due order (``settle_due_orders`` selected it) in its own transaction: the
    affiliate's commission and a reseller's margin, then the merchant's pending share. Under the
    order's lock, the lock a buyer opening a dispute takes, it checks again that no dispute is
    open, so one opened since the order was selected holds it (and the commission) back. Returns
    whether this call posted the settlement."""
    from affiliates import services as affiliate_services
    from disputes.selectors import order_ids_with_open_disputes
    from orders.models import Order

    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update().select_related("merchant").get(pk=order_id)
        if order.status not in (
            Order.Status.DELIVERED,
            Order.Status.PARTIALLY_REFUNDED,
        ) or order_ids_with_open_disputes(order_ids=[order_id]):
            return False
        # The affiliate's commission comes out of the merchant's pending share first, and a
        # reseller's margin settles with the supplier's share.
        affiliate_services.settle_order_extras(order=order)
        pending = accounts.merchant_pending(order.merchant, order.currency)
        owed = -(
            Entry.objects.filter(account=pending, journal__order_id=order_id).aggregate(
                s=Sum("amount")
            )["s"]
            or Decimal(0)
        )
        if owed <= 0:
            return False
        journal = post(
            kind=Journal.Kind.SETTLEMENT,
            reference=f"order:{order_id}",
            currency=order.currency,
            order_id=order_id,
            merchant=order.merchant,
            lines=[
                Line(pending, owed),
                Line(accounts.merchant_available(order.merchant, order.currency), -owed),
            ],
        )
        return journal.created_at >= now


# --- withdrawals ----------------------------------------------------------------------------------
def check_payout_request(
    *, amount: Decimal, currency: str, payout_details: str, refusal: type[CardvaultError]
) -> str:
    """The checks a withdrawal request (a merchant's or an affiliate's) passes before anything is
    locked: at most two decimal places, at least ``WITHDRAWAL_MIN_AMOUNT``, and somewhere to send
    the money. Returns the payout details stripped; raises ``refusal`` with the reason."""
    payout_details = payout_details.strip()
    minimum = Decimal(str(settings.WITHDRAWAL_MIN_AMOUNT))
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise refusal(_("Use at most two decimal places."))
    if amount < minimum:
        raise refusal(
            _("The minimum withdrawal is %(min)s %(currency)s.")
            % {"min": minimum, "currency": currency}
        )
    if not payout_details:
        raise refusal(_("Say where the money should go."))
    return payout_details


def check_payout_covered(
    *, amount: Decimal, available: Decimal, currency: str, refusal: type[CardvaultError]
) -> None:
    """Raise ``refusal`` when ``amount`` is more than the ``available`` balance (read under the
    owner's row lock)."""
    if amount > available:
        raise refusal(
            _("You can withdraw at most %(available)s %(currency)s.")
            % {"available": max(available, Decimal(0)), "currency": currency}
        )


def request_withdrawal(
    *, merchant: Merchant, amount: Decimal, currency: str, payout_details: str, actor: User
) -> Withdrawal:
    """Hold ``amount`` of the merchant's available balance for a payout staff will make. Raises
    ``WithdrawalNotAllowed`` (nothing written)."""
    from ledger.selectors import balance

    payout_details = check_payout_request(
        amount=amount,
        currency=currency,
        payout_details=payout_details,
        refusal=WithdrawalNotAllowed,
    )
    with transaction.atomic(durable=True):
        # One balance check at a time per merchant: two requests can't both spend the same money.
        Merchant.objects.select_for_update().get(pk=merchant.pk)
        available_account = accounts.merchant_available(merchant, currency)
        check_payout_covered(
            amount=amount,
            available=balance(available_account),
            currency=currency,
            refusal=WithdrawalNotAllowed,
        )
        withdrawal = Withdrawal.objects.create(
            merchant=merchant,
            amount=amount,
            currency=currency,
            payout_details=payout_details[:300],
            requested_by=actor,
        )
        post(
            kind=Journal.Kind.WITHDRAWAL_HOLD,
            reference=f"withdrawal:{withdrawal.pk}",
            currency=currency,
            merchant=merchant,
            actor=actor,
            lines=[
                Line(available_account, amount),
                Line(accounts.merchant_withdrawing(merchant, currency), -amount),
            ],
        )
        merchant_notices.queue_notice_after_commit(
            kind="withdrawal_requested", object_id=withdrawal.pk
        )
    return withdrawal


def mark_withdrawal_paid(*, withdrawal_id: int, payout_reference: str, actor: User) -> Withdrawal:
    """Staff paid the money out: the held amount leaves the merchant's books."""
    payout_reference = payout_reference.strip()
    if not payout_reference:
        raise WithdrawalNotAllowed(_("Record the payout reference."))
    return _decide_withdrawal(
        withdrawal_id=withdrawal_id,
        status=Withdrawal.Status.PAID,
        actor=actor,
        payout_reference=payout_reference[:128],
    )


def reject_withdrawal(*, withdrawal_id: int, note: str, actor: User) -> Withdrawal:
    """Staff refused: the held amount goes back to the merchant's available balance."""
    return _decide_withdrawal(
        withdrawal_id=withdrawal_id,
        status=Withdrawal.Status.REJECTED,
        actor=actor,
        decision_note=note[:300],
    )


def decide_withdrawal(
    *, withdrawal_id: int, paid: bool, actor: User, payout_reference: str = "", note: str = ""
) -> Withdrawal:
    """Staff's decision on a request: paid (``mark_withdrawal_paid``, with the payout reference)
    or rejected (``reject_withdrawal``, with the note). Raises ``WithdrawalNotAllowed``."""
    if paid:
        return mark_withdrawal_paid(
            withdrawal_id=withdrawal_id, payout_reference=payout_reference, actor=actor
        )
    return reject_withdrawal(withdrawal_id=withdrawal_id, note=note, actor=actor)


def _decide_withdrawal(
    *, withdrawal_id: int, status: str, actor: User, **fields: str
) -> Withdrawal:
    with transaction.atomic(durable=True):
        withdrawal = (
            Withdrawal.objects.select_for_update().select_related("merchant").get(pk=withdrawal_id)
        )
        if withdrawal.status != Withdrawal.Status.REQUESTED:
            raise WithdrawalNotAllowed(_("This withdrawal was already decided."))
        withdrawal.status = status
        for name, value in fields.items():
            setattr(withdrawal, name, value)
        withdrawal.decided_by = actor
        withdrawal.decided_at = timezone.now()
        withdrawal.save()
        merchant, currency, amount = withdrawal.merchant, withdrawal.currency, withdrawal.amount
        paid = status == Withdrawal.Status.PAID
        post(
            kind=Journal.Kind.WITHDRAWAL_PAID if paid else Journal.Kind.WITHDRAWAL_RELEASE,
            reference=f"withdrawal:{withdrawal.pk}",
            currency=currency,
            merchant=merchant,
            actor=actor,
            lines=[
                Line(accounts.merchant_withdrawing(merchant, currency), amount),
                Line(
                    accounts.payouts(currency)
                    if paid
                    else accounts.merchant_available(merchant, currency),
                    -amount,
                ),
            ],
        )
        merchant_notices.queue_notice_after_commit(
            kind="withdrawal_paid" if paid else "withdrawal_rejected", object_id=withdrawal.pk
        )
    return withdrawal
