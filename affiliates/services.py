"""Writes of the affiliates app: joining, clicks, attribution, commission, affiliate withdrawals,
and reselling (offers, listings, checkout, the ledger split).

The ledger hooks (``resale_sale_lines``, ``resale_refund_line``, ``settle_order_extras``,
``reverse_commission``) are called by ``ledger.services`` inside its callers' transactions;
they post through ``ledger.services.post``, so each is idempotent per ``(kind, reference)``.
"""

from __future__ import annotations

import re
import secrets
from decimal import ROUND_HALF_UP, Decimal
from functools import partial

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from affiliates import lock_objects, notifications
from affiliates.exceptions import (
    AffiliateWithdrawalNotAllowed,
    ResaleUnavailable,
    SignUpRefused,
)
from affiliates.models import (
    Affiliate,
    AffiliateProgramme,
    AffiliateWithdrawal,
    Referral,
    ResaleListing,
    ResaleSale,
)
from ledger import accounts
from ledger.models import Entry, Journal
from ledger.selectors import balance
from ledger.services import (
    Line,
    check_payout_covered,
    check_payout_request,
    fee_rate,
    merchant_source,
    post,
    sale_refunds,
)
from merchants.models import Merchant
from orders import services as order_services
from orders.models import Order

CENT = Decimal("0.01")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CODE_RE = re.compile(r"^[A-Za-z0-9]{6,16}$")


def _q(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# --- joining --------------------------------------------------------------------------------------
def is_well_formed_code(code: str) -> bool:
    return bool(_CODE_RE.match(code))


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _i in range(8))


def join_as_affiliate(*, user: User) -> Affiliate:
    """Give a user an affiliate identity (idempotent: a second call returns the first)."""
    existing = Affiliate.objects.filter(user=user).first()
    if existing is not None:
        return existing
    for _attempt in range(5):
        try:
            with transaction.atomic():
                affiliate = Affiliate(user=user, code=_new_code())
                affiliate.full_clean()
                affiliate.save()
                return affiliate
        except (IntegrityError, ValidationError):
            existing = Affiliate.objects.filter(user=user).first()
            if existing is not None:
                return existing
    raise SignUpRefused(_("Could not create your referral code; try again."))


def sign_up_affiliate(*, email: str, password: str) -> Affiliate:
    """A new user account (username = e-mail) with an affiliate identity, in one transaction.
    Raises ``SignUpRefused``."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise SignUpRefused(_("Enter a valid email address.")) from None
    user_model = get_user_model()
    candidate = user_model(username=email, email=email)
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as exc:
        raise SignUpRefused(" ".join(exc.messages)) from None
    with transaction.atomic(durable=True):
        if user_model.objects.filter(username__iexact=email).exists():
            raise SignUpRefused(_("An account with this email exists; sign in instead."))
        candidate.set_password(password)
        try:
            with transaction.atomic():
                candidate.save()
        except IntegrityError:
            raise SignUpRefused(_("An account with this email exists; sign in instead.")) from None
        return join_as_affiliate(user=candidate)


def record_click(*, code: str, visitor_id: int | None = None) -> bool:
    """Count one arrival through an affiliate link: a single conditional UPDATE. Returns whether
    the code belongs to an active affiliate other than the signed-in visitor (``visitor_id``): an
    affiliate opening its own link is neither a click nor a referral."""
    affiliates = Affiliate.objects.filter(code=code.upper(), is_active=True)
    if visitor_id is not None:
        affiliates = affiliates.exclude(user_id=visitor_id)
    return bool(affiliates.update(clicks=F("clicks") + 1))


# --- attribution ----------------------------------------------------------------------------------
def attribute_order(*, order: Order, code: str, buyer_id: int | None = None) -> Referral | None:
    """Inside ``place_order``'s transaction: remember which affiliate brought this order, if the
    order's merchant runs an enabled programme. Self-referrals (the affiliate buying, signed in
    as ``buyer_id`` or with its own e-mail, or working for the merchant) earn nothing."""
    if not code or not is_well_formed_code(code):
        return None
    programme = AffiliateProgramme.objects.filter(
        merchant_id=order.merchant_id, enabled=True
    ).first()
    if programme is None:
        return None
    affiliate = (
        Affiliate.objects.filter(code=code.upper(), is_active=True).select_related("user").first()
    )
    if affiliate is None:
        return None
    user = affiliate.user
    if buyer_id is not None and buyer_id == user.pk:
        return None
    if order.email.lower() in {user.email.lower(), user.username.lower()} - {""}:
        return None
    if Merchant.objects.filter(
        Q(owner=user) | Q(memberships__user=user), pk=order.merchant_id
    ).exists():
        return None
    if ResaleSale.objects.filter(order=order).exists():
        return None
    referral = Referral(
        order=order,
        affiliate=affiliate,
        merchant_id=order.merchant_id,
        commission_rate=programme.commission_rate,
        currency=order.currency,
    )
    referral.full_clean()
    referral.save()
    return referral


def referral_attacher(*, code: str, buyer_id: int | None = None) -> partial[Referral | None] | None:
    """What the storefront hands ``place_order(attach=...)`` for a visitor with a referral
    (``buyer_id``: the signed-in visitor's user id, if any)."""
    if not code:
        return None
    return partial(_attach_referral, code=code, buyer_id=buyer_id)


def _attach_referral(order: Order, *, code: str, buyer_id: int | None = None) -> Referral | None:
    return attribute_order(order=order, code=code, buyer_id=buyer_id)


# --- commission (ledger hooks) --------------------------------------------------------------------
def _refunded_total(order_id: int, currency: str) -> Decimal:
    """What buyers got back of this order's sale so far, from the ledger (clearing credits of
    the sale's refunds: the automatic refund of a duplicate payment was never part of it)."""
    return sale_refunds(order_id=order_id, currency=currency).amount


def _order_balance(account_id: int, order_id: int) -> Decimal:
    """Credit balance of one account from one order's journals."""
    total = Entry.objects.filter(account_id=account_id, journal__order_id=order_id).aggregate(
        s=Sum("amount")
    )["s"] or Decimal(0)
    return -total


def settle_order_extras(*, order: Order) -> None:
    """Inside ``settle_due_orders``' transaction, the order locked, before the merchant's own
    settlement: credit the affiliate's commission out of the merchant's pending share, and settle
    a reseller's margin."""
    sale = ResaleSale.objects.filter(order_id=order.pk).select_related("reseller").first()
    if sale is not None:
        pending = accounts.merchant_pending(sale.reseller, order.currency)
        owed = _order_balance(pending.pk, order.pk)
        if owed > 0:
            post(
                kind=Journal.Kind.SETTLEMENT,
                reference=f"order:{order.pk}:reseller",
                currency=order.currency,
                order_id=order.pk,
                merchant=sale.reseller,
                lines=[
                    Line(pending, owed),
                    Line(accounts.merchant_available(sale.reseller, order.currency), -owed),
                ],
            )
    referral = lock_objects.lock_referral_for_order(order_id=order.pk)
    if referral is None or referral.status != Referral.Status.PENDING:
        return
    base = order.amount - _refunded_total(order.pk, order.currency)
    merchant_pending = accounts.merchant_pending(order.merchant, order.currency)
    commission = min(
        _q(base * referral.commission_rate), _order_balance(merchant_pending.pk, order.pk)
    )
    if commission <= 0:
        referral.status = Referral.Status.VOID
        referral.save(update_fields=["status"])
        return
    post(
        kind=Journal.Kind.COMMISSION,
        reference=f"order:{order.pk}",
        currency=order.currency,
        order_id=order.pk,
        merchant=order.merchant,
        memo=f"affiliate {referral.affiliate.code}",
        lines=[
            Line(merchant_pending, commission),
            Line(accounts.affiliate_available(referral.affiliate, order.currency), -commission),
        ],
    )
    referral.status = Referral.Status.CREDITED
    referral.commission = commission
    referral.save(update_fields=["status", "commission"])


def _merchant_net_of_order(merchant: Merchant, order_id: int, currency: str) -> Decimal:
    """What the merchant keeps of an order so far: its share of the sale less its shares of the
    refunds (merchant-funded or clawed back), before any commission."""
    total = Entry.objects.filter(
        journal__order_id=order_id,
        journal__kind__in=[Journal.Kind.SALE, Journal.Kind.REFUND, Journal.Kind.CLAWBACK],
        account__in=[
            accounts.merchant_pending(merchant, currency),
            accounts.merchant_available(merchant, currency),
        ],
    ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return -total


def reverse_commission(
    *, refund_id: int, order_id: int, amount: Decimal, merchant_share: Decimal, currency: str
) -> None:
    """Inside the refund's transaction, before its journal is posted: bring a credited commission
    down to what the order still earns after this refund, ``rate × (amount − refunded)`` capped
    by the merchant's remaining net share (``merchant_share``: the merchant's part of this
    refund), so a commission never outlives the sale nor exceeds what the merchant keeps. The
    affiliate's balance may go negative, blocking withdrawals until it recovers. A refund before
    settlement needs no journal (the commission is computed net of it); one that refunds the
    whole order voids the referral, as that order never settles."""
    referral = lock_objects.lock_referral_for_order(order_id=order_id)
    if referral is None or referral.status == Referral.Status.VOID:
        return
    reference = f"refund:{refund_id}"
    if Journal.objects.filter(
        order_id=order_id,
        reference=reference,
        kind__in=[
            Journal.Kind.REFUND,
            Journal.Kind.COMPENSATION,
            Journal.Kind.COMMISSION_REVERSAL,
        ],
    ).exists():
        return  # this refund was recorded already (a replay)
    order_amount = Order.objects.values_list("amount", flat=True).get(pk=order_id)
    refunded = _refunded_total(order_id, currency) + amount
    if referral.status == Referral.Status.PENDING:
        if refunded >= order_amount:
            referral.status = Referral.Status.VOID
            referral.save(update_fields=["status"])
        return
    merchant_net = _merchant_net_of_order(referral.merchant, order_id, currency) - merchant_share
    target = max(
        min(_q((order_amount - refunded) * referral.commission_rate), merchant_net), Decimal(0)
    )
    back = referral.commission - referral.reversed_amount - target
    if back <= 0:
        return
    post(
        kind=Journal.Kind.COMMISSION_REVERSAL,
        reference=reference,
        currency=currency,
        order_id=order_id,
        merchant=referral.merchant,
        memo=f"affiliate {referral.affiliate.code}",
        lines=[
            Line(accounts.affiliate_available(referral.affiliate, currency), back),
            # Where this refund takes the merchant's share from: available once the order
            # settled; pending if the commission took the whole share, so nothing settled.
            Line(merchant_source(referral.merchant, order_id, currency), -back),
        ],
    )
    Referral.objects.filter(pk=referral.pk).update(reversed_amount=F("reversed_amount") + back)


# --- affiliate withdrawals ------------------------------------------------------------------------
def request_affiliate_withdrawal(
    *, affiliate: Affiliate, amount: Decimal, currency: str, payout_details: str
) -> AffiliateWithdrawal:
    """Hold ``amount`` of the affiliate's available commission for a payout staff will make.
    Locks the affiliate row, so two requests cannot spend the same money. Raises
    ``AffiliateWithdrawalNotAllowed`` (nothing written)."""
    payout_details = check_payout_request(
        amount=amount,
        currency=currency,
        payout_details=payout_details,
        refusal=AffiliateWithdrawalNotAllowed,
    )
    with transaction.atomic(durable=True):
        lock_objects.lock_affiliate(affiliate_id=affiliate.pk)
        available_account = accounts.affiliate_available(affiliate, currency)
        check_payout_covered(
            amount=amount,
            available=balance(available_account),
            currency=currency,
            refusal=AffiliateWithdrawalNotAllowed,
        )
        withdrawal = AffiliateWithdrawal(
            affiliate=affiliate,
            amount=amount,
            currency=currency,
            payout_details=payout_details[:300],
        )
        withdrawal.full_clean()
        withdrawal.save()
        post(
            kind=Journal.Kind.WITHDRAWAL_HOLD,
            reference=f"affiliate-withdrawal:{withdrawal.pk}",
            currency=currency,
            lines=[
                Line(available_account, amount),
                Line(accounts.affiliate_withdrawing(affiliate, currency), -amount),
            ],
        )
        notifications.remember_request_language(withdrawal=withdrawal)
    return withdrawal


def decide_affiliate_withdrawal(
    *, withdrawal_id: int, paid: bool, actor: User, payout_reference: str = "", note: str = ""
) -> AffiliateWithdrawal:
    """Staff paid (with the payout reference) or rejected (money back to available) a request.
    Raises ``AffiliateWithdrawalNotAllowed``."""
    payout_reference = payout_reference.strip()
    if paid and not payout_reference:
        raise AffiliateWithdrawalNotAllowed(_("Record the payout reference."))
    with transaction.atomic(durable=True):
        withdrawal = lock_objects.lock_withdrawal(withdrawal_id=withdrawal_id)
        if withdrawal.status != AffiliateWithdrawal.Status.REQUESTED:
            raise AffiliateWithdrawalNotAllowed(_("This withdrawal was already decided."))
        withdrawal.status = (
            AffiliateWithdrawal.Status.PAID if paid else AffiliateWithdrawal.Status.REJECTED
        )
        withdrawal.payout_reference = payout_reference[:128]
        withdrawal.decision_note = note.strip()[:300]
        withdrawal.decided_by = actor
        withdrawal.decided_at = timezone.now()
        withdrawal.save(
            update_fields=[
                "status",
                "payout_reference",
                "decision_note",
                "decided_by",
                "decided_at",
            ]
        )
        affiliate, currency, amount = withdrawal.affiliate, withdrawal.currency, withdrawal.amount
        post(
            kind=Journal.Kind.WITHDRAWAL_PAID if paid else Journal.Kind.WITHDRAWAL_RELEASE,
            reference=f"affiliate-withdrawal:{withdrawal.pk}",
            currency=currency,
            actor=actor,
            lines=[
                Line(accounts.affiliate_withdrawing(affiliate, currency), amount),
                Line(
                    accounts.payouts(currency)
                    if paid
                    else accounts.affiliate_available(affiliate, currency),
                    -amount,
                ),
            ],
        )
        notifications.queue_withdrawal_decided_after_commit(withdrawal_id=withdrawal.pk)
    return withdrawal


# --- reselling ------------------------------------------------------------------------------------
def checkout_resale(
    *,
    listing: ResaleListing,
    quantity: int,
    email: str,
    gateway_name: str,
    base_url: str,
    query_password: str = "",
    buyer_ip: str | None = None,
    user_agent: str = "",
    language: str = "en",
    mobile: bool = False,
    device_id: str = "",
    captcha_passed: bool = False,
) -> order_services.CheckoutResult:
    """Buy a reseller's listing: ``orders.services.checkout`` on the supplier's product at the
    reseller's price, so the supplier's stock is claimed in the same transaction that writes
    the order and its ``ResaleSale``. Raises what ``checkout`` raises, and ``ResaleUnavailable``."""
    return order_services.checkout(
        product=listing.offer.product,
        quantity=quantity,
        email=email,
        gateway_name=gateway_name,
        base_url=base_url,
        query_password=query_password,
        buyer_ip=buyer_ip,
        user_agent=user_agent,
        language=language,
        mobile=mobile,
        device_id=device_id,
        captcha_passed=captcha_passed,
        unit_price=listing.price,
        attach=partial(_attach_resale, listing_id=listing.pk, price=listing.price),
    )


def _attach_resale(order: Order, *, listing_id: int, price: Decimal) -> ResaleSale:
    """Inside ``place_order``'s transaction: re-read the listing (it may have been paused or
    repriced since the page was shown) and record the sale with the supplier's floor price
    frozen. Raises ``ResaleUnavailable`` (rolling the order and its stock claim back)."""
    from affiliates.selectors import sellable_listings_filter

    listing = (
        ResaleListing.objects.filter(sellable_listings_filter(), pk=listing_id)
        .select_related("offer")
        .first()
    )
    if (
        listing is None
        or listing.price != price
        or listing.offer.product_id != order.product_id
        or listing.price < listing.offer.floor_price
    ):
        raise ResaleUnavailable(f"listing {listing_id} is not sellable at {price}")
    sale = ResaleSale(
        order=order,
        listing=listing,
        reseller_id=listing.merchant_id,
        supplier_id=listing.offer.merchant_id,
        unit_price=price,
        supplier_unit_price=listing.offer.floor_price,
    )
    sale.full_clean()
    sale.save()
    return sale


def resale_sale_lines(
    *, order_id: int, supplier: Merchant, amount: Decimal, currency: str
) -> list[Line] | None:
    """The sale journal of a reseller's order, or None for an ordinary order: the gateway holds
    A = S + M (S the supplier's floor price × quantity, M the reseller's margin). The supplier
    is owed S − Fs, the reseller M − Fr, the platform Fs + Fr: each side pays the platform fee at
    its own rate on its own part, so reselling is never a way around the fee."""
    # Nearly every order is an ordinary one: a plain look-up first (cheap to build), the joins
    # only for a reseller's order.
    sale_id = ResaleSale.objects.filter(order_id=order_id).values_list("pk", flat=True).first()
    if sale_id is None:
        return None
    sale = ResaleSale.objects.select_related("reseller", "order").get(pk=sale_id)
    supplier_total = _q(sale.supplier_unit_price * sale.order.quantity)
    margin = amount - supplier_total
    supplier_fee = _q(supplier_total * fee_rate(supplier))
    reseller_fee = _q(margin * fee_rate(sale.reseller))
    return [
        Line(accounts.clearing(currency), amount),
        Line(accounts.merchant_pending(supplier, currency), -(supplier_total - supplier_fee)),
        Line(accounts.merchant_pending(sale.reseller, currency), -(margin - reseller_fee)),
        Line(accounts.fees(currency), -(supplier_fee + reseller_fee)),
    ]


def resale_refund_line(
    *, order_id: int, share: Decimal, currency: str, reference: str
) -> Line | None:
    """The reseller's part of a refund's seller share (in the same proportion as the sale split
    it), debited from its pending margin while unsettled, else from available; None for an
    ordinary order. Cumulative: its proportion of the seller shares of every refund so far
    (``reference``, this refund's, excluded from "so far") less what earlier refunds already
    took, so the refund that completes the sale takes exactly the rest of the margin."""
    sale = ResaleSale.objects.filter(order_id=order_id).select_related("reseller").first()
    if sale is None:
        return None
    journal = Journal.objects.get(kind=Journal.Kind.SALE, reference=f"order:{order_id}")
    reseller_pending = accounts.merchant_pending(sale.reseller, currency)
    supplier_pending = accounts.merchant_pending(sale.supplier, currency)
    sold = {
        row["account_id"]: -row["s"]
        for row in journal.entries.filter(account__in=[reseller_pending, supplier_pending])
        .values("account_id")
        .annotate(s=Sum("amount"))
    }
    margin = sold.get(reseller_pending.pk, Decimal(0))
    seller_total = margin + sold.get(supplier_pending.pk, Decimal(0))
    if seller_total <= 0:
        return None
    before = sale_refunds(order_id=order_id, currency=currency, excluding=reference)
    taken = Entry.objects.filter(
        journal__order_id=order_id,
        # A platform-funded refund takes the seller shares back in its claw-back journal.
        journal__kind__in=[Journal.Kind.REFUND, Journal.Kind.CLAWBACK],
        journal__reference__startswith="refund:",
        account__in=[reseller_pending, accounts.merchant_available(sale.reseller, currency)],
    ).exclude(journal__reference=reference).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    reseller_share = _q((before.amount - before.fee + share) * margin / seller_total) - taken
    settled = Journal.objects.filter(
        kind=Journal.Kind.SETTLEMENT, reference=f"order:{order_id}:reseller"
    ).exists()
    source = accounts.merchant_available(sale.reseller, currency) if settled else reseller_pending
    return Line(source, reseller_share)
