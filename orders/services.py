"""Writes of the orders app: placing orders, taking payments, fulfilling, expiring.

Every function that changes stock, orders or payments runs in one transaction it owns
(``durable=True``), takes row locks through ``orders.lock_objects`` in the global order
(payment → order → keys), and queues side effects with ``on_commit``. No gateway or other HTTP
call ever happens while a lock is held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

import httpx
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from ledger import services as ledger_services
from orders import lock_objects, tasks, tokens
from orders.exceptions import (
    AmountMismatch,
    CurrencyMismatch,
    GatewayUnavailable,
    IgnoredNotification,
    IllegalTransition,
    InvalidOrderInput,
    NotDeliverable,
    NotHeld,
    OrderNotPayable,
    OutOfStock,
    PaymentRejected,
    RefundNotAllowed,
    RefundReported,
    TradeAlreadyBound,
    UnknownPayment,
)
from orders.gateways.base import (
    CallbackReply,
    CallbackRequest,
    Gateway,
    PaymentAction,
    RefundResult,
    VerifiedEvent,
)
from orders.gateways.registry import build_gateway, get_gateway
from orders.models import (
    ORDER_TRANSITIONS,
    Delivery,
    GatewayAlert,
    GatewayConfig,
    Order,
    OrderStatusChange,
    Payment,
    PaymentEvent,
    PaymentNotification,
    Refund,
)
from promotions import selectors as promotions_selectors
from promotions import services as promotions_services
from risk import screening as risk_screening
from risk import services as risk_services
from risk.exceptions import RiskRefused
from risk.models import RiskDecision
from shop import cache as storefront_cache
from shop import vault
from shop.exceptions import CardvaultError, ProductUnavailable
from shop.manual_fields import clean_manual_inputs
from shop.models import CardKey, Product
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")


# --- state machine ---------------------------------------------------------------------------
def transition_order(
    *,
    order: Order,
    to_status: str,
    source: str,
    actor: User | None = None,
    note: str = "",
    extra_fields: tuple[str, ...] = (),
) -> Order:
    """Move a locked order to ``to_status`` if the transition table allows it, writing the audit
    row in the caller's transaction. Raises ``IllegalTransition``."""
    from_status = order.status
    if to_status not in ORDER_TRANSITIONS.get(from_status, frozenset()):
        raise IllegalTransition(f"order {order.pk}: {from_status} → {to_status} is not allowed")
    order.status = to_status
    actor = actor if actor is not None and actor.is_authenticated else None
    if connection.vendor != "postgresql":
        order.save(update_fields=["status", *extra_fields])
        OrderStatusChange.objects.create(
            order=order,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            source=source,
            note=note[:300],
        )
        return order
    # The same two writes in one statement (a paid callback makes two transitions). Order and
    # OrderStatusChange have no save() override, signal receiver or auto_now field to skip.
    concrete = {field.name: field for field in Order._meta.concrete_fields}
    fields = [concrete[name] for name in ("status", *extra_fields)]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = (
        f"WITH updated AS (UPDATE {quote(Order._meta.db_table)} SET {assignments}"  # noqa: S608  # nosec B608
        " WHERE id = %s RETURNING id)"
        f" INSERT INTO {quote(OrderStatusChange._meta.db_table)}"
        " (order_id, from_status, to_status, actor_id, source, note, created_at)"
        " SELECT id, %s, %s, %s, %s, %s, %s FROM updated"
    )
    # Table and column names from the models; every value a bound parameter.
    values = [field.get_db_prep_save(getattr(order, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                *values,
                order.pk,
                from_status,
                to_status,
                actor.pk if actor is not None else None,
                source,
                note[:300],
                timezone.now(),
            ],
        )
        if cursor.rowcount != 1:
            raise IntegrityError(f"order {order.pk}: no row to move to {to_status}")
    return order


# --- placing an order ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlacedOrder:
    order: Order
    token: str


def place_order(
    *,
    product: Product,
    quantity: int,
    email: str,
    query_password: str = "",
    manual_inputs: dict[str, str] | None = None,
    buyer_ip: str | None = None,
    user_agent: str = "",
    language: str = "en",
    now: datetime | None = None,
    device_id: str = "",
    captcha_passed: bool = False,
    unit_price: Decimal | None = None,
    attach: Callable[[Order], object] | None = None,
    coupon_code: str = "",
    gateway: Gateway | None = None,
) -> PlacedOrder:
    """Create a pending order and reserve its stock for ``ORDER_TTL_MINUTES``.

    ``unit_price`` replaces the product's price (a reseller's price; ``affiliates``);
    ``attach(order)`` runs inside the transaction once the order holds its stock, to record
    order-linked facts (referral, resale); whatever it raises rolls the order back.
    Pricing (``promotions``): the wholesale tier's unit price for ``quantity``, then
    ``coupon_code``'s discount; the coupon's use is counted under its row lock, the last lock
    taken (``CouponRejected``, an ``InvalidOrderInput``, when it does not apply).

    Screened by the risk rules first (``risk.services.screen_checkout``; ``captcha_passed``: the
    edge verified a captcha for this checkout). Locks: per-buyer advisory locks, then free keys
    of the product (``SKIP LOCKED``). Guarantees: either the order exists with all ``quantity``
    keys reserved to it, or no order was written (a refusal is recorded as a ``RiskDecision``).
    ``gateway``: the payment method chosen with the order (``checkout``), recorded on it if
    the gateway takes this amount, as ``start_payment`` would.

    Raises ``ProductUnavailable``, ``InvalidOrderInput``, ``OutOfStock``, ``RiskBlocked``,
    ``CaptchaRequired``.
    """
    now = now or timezone.now()
    if (
        not product.is_active
        or not product.merchant.is_selling
        # Held by the prohibited-term screening (or under a held listing): not sellable.
        or product.review_status != Product.ReviewStatus.PUBLISHED
        or (
            product.variant_of is not None
            and (
                not product.variant_of.is_active
                or product.variant_of.review_status != Product.ReviewStatus.PUBLISHED
            )
        )
    ):
        raise ProductUnavailable(f"product {product.pk} is not on sale")
    errors: dict[str, list[str]] = {}
    if not (product.min_quantity <= quantity <= product.max_quantity):
        errors["quantity"] = [
            _("Choose between %(min)d and %(max)d.")
            % {"min": product.min_quantity, "max": product.max_quantity}
        ]
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = [_("Enter a valid email address.")]
    if len(query_password) > 64:
        errors["query_password"] = [_("At most 64 characters.")]
    cleaned_inputs: dict[str, str] = {}
    if product.delivery_mode == Product.DeliveryMode.MANUAL:
        try:
            cleaned_inputs = clean_manual_inputs(product.manual_fields, manual_inputs or {})
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise InvalidOrderInput("invalid order input", errors=errors)
    # Already sold out when this request read the listing (the free-stock count annotated by
    # ``shop.selectors.with_stock``): answer now instead of screening, locking, inserting and
    # rolling back an order; in a drop most buyers get this answer (``make bench``,
    # docs/performance.md). Without the annotation the claim below decides, as it always does.
    free_keys = getattr(product, "free_keys", None)
    if (
        product.delivery_mode == Product.DeliveryMode.AUTO
        and free_keys is not None
        and free_keys < quantity
    ):
        raise OutOfStock(f"product {product.pk}: {free_keys} of {quantity} free when listed")
    # Wholesale tier (or the given unit price), then the coupon; a bad code is rejected here,
    # before anything is written, and checked again under the coupon's lock below.
    quote = promotions_selectors.quote_order(
        product=product,
        quantity=quantity,
        unit_price=unit_price,
        coupon_code=coupon_code,
        email=email,
        now=now,
    )

    number = tokens.new_order_number()
    nonce = tokens.new_token_nonce()
    token = tokens.derive_token(number=number, nonce=nonce)
    # The slow password hash runs before the transaction, never while holding key locks.
    password_hash = make_password(query_password) if query_password else ""
    expires_at = now + timedelta(minutes=settings.ORDER_TTL_MINUTES)
    price = quote.unit_price
    amount = quote.amount
    buyer = risk_screening.Buyer(
        ip=buyer_ip, email=email, device_id=device_id, user_agent=user_agent
    )
    # A cache read (fails open), so before the transaction, never while holding locks.
    lookup_failures = risk_services.lookup_failures(ip=buyer_ip)
    gateway_name = (
        gateway.name
        if gateway is not None and gateway.accepts(amount=amount, currency=product.currency)
        else ""
    )

    try:
        with transaction.atomic(durable=True):
            screening = risk_services.screen_checkout(
                merchant_id=product.merchant_id,
                amount=amount,
                currency=product.currency,
                buyer=buyer,
                captcha_passed=captcha_passed,
                lookup_failure_count=lookup_failures,
                now=now,
            )
            order = _create_order(
                product=product,
                quantity=quantity,
                unit_price=price,
                amount=amount,
                discount=quote.discount,
                coupon_id=quote.coupon.pk if quote.coupon is not None else None,
                number=number,
                nonce=nonce,
                token=token,
                email=email,
                password_hash=password_hash,
                cleaned_inputs=cleaned_inputs,
                language=language,
                buyer_ip=buyer_ip,
                user_agent=user_agent,
                expires_at=expires_at,
                now=now,
                gateway_name=gateway_name,
            )
            if attach is not None:
                attach(order)
            if quote.coupon is not None:
                # Last lock of the transaction (the coupon row), after the order's keys.
                promotions_services.redeem_coupon(
                    coupon_id=quote.coupon.pk,
                    order=order,
                    product=product,
                    subtotal=quote.subtotal,
                    email=email,
                    expected_discount=quote.discount,
                    now=now,
                )
            risk_services.record_screening(screening=screening, order=order, now=now)
    except RiskRefused as exc:
        risk_services.record_refusal(screening=exc.screening)
        raise
    return PlacedOrder(order=order, token=token)


def _create_order(
    *,
    product: Product,
    quantity: int,
    unit_price: Decimal,
    amount: Decimal,
    discount: Decimal,
    coupon_id: int | None,
    number: str,
    nonce: str,
    token: str,
    email: str,
    password_hash: str,
    cleaned_inputs: dict[str, str],
    language: str,
    buyer_ip: str | None,
    user_agent: str,
    expires_at: datetime,
    now: datetime,
    gateway_name: str = "",
) -> Order:
    """Inside ``place_order``'s transaction: the order row, its reservation, its audit row."""
    order = Order.objects.create(
        number=number,
        merchant_id=product.merchant_id,
        product=product,
        quantity=quantity,
        unit_price=unit_price,
        amount=amount,
        discount=discount,
        coupon_id=coupon_id,
        currency=product.currency,
        email=email,
        token_nonce=nonce,
        token_hash=tokens.hash_token(token),
        query_password_hash=password_hash,
        manual_inputs=cleaned_inputs,
        language=language[:8],
        buyer_ip=buyer_ip,
        buyer_user_agent=user_agent[:300],
        expires_at=expires_at,
        gateway=gateway_name,
    )
    if product.delivery_mode == Product.DeliveryMode.AUTO:
        claimed = _claim_free_keys(
            product_id=product.pk,
            order_id=order.pk,
            count=quantity,
            reserved_until=expires_at,
            now=now,
        )
        if claimed < quantity:
            raise OutOfStock(f"product {product.pk}: {claimed} of {quantity} free")
    elif product.delivery_mode == Product.DeliveryMode.REUSABLE and not _reusable_has_capacity(
        product=product, quantity=quantity
    ):
        raise OutOfStock(f"product {product.pk}: reusable key sold out")
    OrderStatusChange.objects.create(
        order=order, from_status="", to_status=order.status, source="checkout"
    )
    return order


def _claim_free_keys(
    *, product_id: int, order_id: int, count: int, reserved_until: datetime | None, now: datetime
) -> int:
    """Reserve up to ``count`` free keys of a product to an order; returns how many it got.

    The conditional update re-checks freeness, so the claim is correct even where row locks are
    not available (SQLite) — it then retries with fresh candidates.
    """
    got = 0
    for _attempt in range(5):
        ids = lock_objects.lock_free_key_ids(product_id=product_id, count=count - got, now=now)
        if not ids:
            break
        got += CardKey.objects.filter(lock_objects.key_ids_still_free(ids, now)).update(
            status=CardKey.Status.RESERVED, order_id=order_id, reserved_until=reserved_until
        )
        if got >= count:
            break
    if got:
        storefront_cache.catalogue_changed(product_id=product_id)  # the shown stock count
    return got


def _reusable_has_capacity(*, product: Product, quantity: int) -> bool:
    if not CardKey.objects.filter(product=product, status=CardKey.Status.AVAILABLE).exists():
        return False
    return product.reusable_cap is None or product.reusable_sold + quantity <= product.reusable_cap


# --- starting a payment -----------------------------------------------------------------------
def start_payment(
    *,
    order: Order,
    gateway_name: str,
    base_url: str,
    mobile: bool = False,
    gateway: Gateway | None = None,
) -> PaymentAction:
    """Open a payment for a pending order at the chosen gateway. The payment row is committed
    first, then the gateway is called outside any lock. ``base_url`` is the site root the buyer
    and the gateway reach us at; ``gateway``: the adapter this request already built for
    ``gateway_name`` (``checkout``), saving its configuration query. Raises ``OrderNotPayable``,
    ``GatewayUnavailable``."""
    # ``checkout`` passes the adapter and wrote its name with the order it has just created.
    preset = gateway if gateway is not None and gateway.name == gateway_name else None
    gateway = preset or get_gateway(gateway_name)
    if order.status != Order.Status.PENDING or order.expires_at <= timezone.now():
        raise OrderNotPayable(f"order {order.pk} is {order.status}")
    if not gateway.accepts(amount=order.amount, currency=order.currency):
        raise GatewayUnavailable(f"{gateway_name} does not take {order.currency} {order.amount}")
    with transaction.atomic(durable=True):
        payment = Payment.objects.create(
            reference=tokens.new_payment_reference(),
            order=order,
            gateway=gateway.name,
            amount=order.amount,
            currency=order.currency,
        )
        if preset is None or order.gateway != gateway.name:
            Order.objects.filter(pk=order.pk).update(gateway=gateway.name)
            order.gateway = gateway.name
    base_url = base_url.rstrip("/")
    token = tokens.page_token(order)
    action = gateway.create_payment(
        payment=payment,
        return_url=base_url + reverse("orders:detail", args=[token]),
        callback_url=base_url + reverse("orders:callback", args=[gateway.name]),
        mobile=mobile,
    )
    if action.data:
        payment.gateway_data = dict(action.data)
        Payment.objects.filter(pk=payment.pk).update(gateway_data=payment.gateway_data)
    return action


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: Order
    token: str
    redirect_url: str


def checkout(
    *,
    product: Product,
    quantity: int,
    email: str,
    gateway_name: str,
    base_url: str,
    query_password: str = "",
    manual_inputs: dict[str, str] | None = None,
    buyer_ip: str | None = None,
    user_agent: str = "",
    language: str = "en",
    mobile: bool = False,
    device_id: str = "",
    captcha_passed: bool = False,
    unit_price: Decimal | None = None,
    attach: Callable[[Order], object] | None = None,
    coupon_code: str = "",
) -> CheckoutResult:
    """Place the order and open its payment: what the product page's Buy button does. The
    gateway is checked first, so a bad choice writes nothing. If opening the payment fails after
    the order exists, the buyer lands on the order page, which offers to pay again."""
    gateway = get_gateway(gateway_name)
    placed = place_order(
        product=product,
        quantity=quantity,
        email=email,
        query_password=query_password,
        manual_inputs=manual_inputs,
        buyer_ip=buyer_ip,
        user_agent=user_agent,
        language=language,
        device_id=device_id,
        captcha_passed=captcha_passed,
        unit_price=unit_price,
        attach=attach,
        coupon_code=coupon_code,
        gateway=gateway,
    )
    try:
        action = start_payment(
            order=placed.order,
            gateway_name=gateway_name,
            base_url=base_url,
            mobile=mobile,
            gateway=gateway,
        )
    except (CardvaultError, httpx.HTTPError) as exc:
        # The order and its reservation stand; its page offers to pay again.
        logger.warning(
            "could not open a payment at checkout",
            extra={"order_id": placed.order.pk, "gateway": gateway_name, "error": type(exc)},
        )
        return CheckoutResult(
            order=placed.order,
            token=placed.token,
            redirect_url=reverse("orders:detail", args=[placed.token]),
        )
    return CheckoutResult(order=placed.order, token=placed.token, redirect_url=action.redirect_url)


# --- callbacks ----------------------------------------------------------------------------------
def handle_callback(*, gateway_name: str, request: CallbackRequest) -> CallbackReply:
    """The one shape of webhook handling: verify → store the event under its unique id → act →
    record the notification and its outcome. Forged, stale, replayed or mismatched notifications
    change nothing but the notification log."""
    gateway = get_gateway(gateway_name)
    body_text = request.body.decode("utf-8", errors="replace")[:10000]
    verified: VerifiedEvent | None = None
    try:
        verified = gateway.verify_callback(request)
        # The accepted (or duplicate) notification's row is written in confirm_payment's own
        # transaction: one commit, and one wait for the disk, per callback.
        log_applied = partial(
            _log_applied_notification, gateway.name, request, body_text, verified.payment_reference
        )
        _event, duplicate = confirm_payment(
            gateway_name=gateway.name, verified=verified, record=log_applied
        )
    except IgnoredNotification as exc:
        _log_notification(
            gateway.name, request, body_text, PaymentNotification.Result.IGNORED, str(exc)[:300]
        )
        if isinstance(exc, RefundReported):
            _ask_about_reported_refund(
                gateway_name=gateway.name, gateway_refund_id=exc.gateway_refund_id
            )
        return gateway.reply_accepted()
    except PaymentRejected as exc:
        # Gateways that detect a mismatch themselves (a USDT underpayment) name the payment.
        reference = (
            verified.payment_reference
            if verified is not None
            else str(getattr(exc, "payment_reference", ""))
        )
        _log_notification(
            gateway.name,
            request,
            body_text,
            PaymentNotification.Result.REJECTED,
            exc.code,
            reference=reference,
        )
        logger.warning(
            "payment callback rejected", extra={"gateway": gateway.name, "code": exc.code}
        )
        if isinstance(exc, AmountMismatch | CurrencyMismatch) and reference:
            # Genuine but wrong: the buyer paid something else. Never deliver; a person decides.
            flag_payment_order(reference=reference, reason=f"callback {exc.code}: {exc}")
        return gateway.reply_rejected(exc)
    return gateway.reply_duplicate() if duplicate else gateway.reply_accepted()


def _log_applied_notification(
    gateway_name: str,
    request: CallbackRequest,
    body_text: str,
    reference: str,
    event: PaymentEvent,
    duplicate: bool,
) -> None:
    result = (
        PaymentNotification.Result.DUPLICATE if duplicate else PaymentNotification.Result.ACCEPTED
    )
    _log_notification(
        gateway_name, request, body_text, result, event.outcome, event=event, reference=reference
    )


# Headers worth keeping to process a notification again; never cookies or authorization.
_DROPPED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})


def _log_notification(
    gateway_name: str,
    request: CallbackRequest,
    body_text: str,
    result: str,
    detail: str,
    event: PaymentEvent | None = None,
    reference: str = "",
) -> None:
    PaymentNotification.objects.create(
        gateway=gateway_name,
        remote_ip=request.remote_ip,
        method=request.method[:8],
        body=body_text,
        headers={k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS},
        query=dict(request.query),
        payment_reference=reference[:40],
        result=result,
        detail=detail[:300],
        event=event,
    )


def confirm_payment(
    *,
    gateway_name: str,
    verified: VerifiedEvent,
    actor: User | None = None,
    note: str = "",
    record: Callable[[PaymentEvent, bool], None] | None = None,
) -> tuple[PaymentEvent, bool]:
    """Apply a verified gateway event at most once.

    Locks: the payment, then its order, then keys. Guarantees: the event row, the payment and
    order status, the claimed keys and their deliveries are written together or not at all; a
    second event with the same id returns ``(first_event, True)`` and changes nothing. Raises
    ``UnknownPayment``, ``AmountMismatch``, ``CurrencyMismatch``, ``TradeAlreadyBound``.
    ``record(event, duplicate)`` runs last in the same transaction (the callback's log row).
    """
    with transaction.atomic(durable=True):
        event, duplicate = _apply_verified_event(
            gateway_name=gateway_name, verified=verified, actor=actor, note=note
        )
        if record is not None:
            record(event, duplicate)
    return event, duplicate


def _apply_verified_event(
    *, gateway_name: str, verified: VerifiedEvent, actor: User | None, note: str
) -> tuple[PaymentEvent, bool]:
    """``confirm_payment``'s work, inside its transaction."""
    now = timezone.now()
    payment = lock_objects.lock_payment(reference=verified.payment_reference)
    # The gateway's settings and amount come from our payment row, never from the payload.
    if payment is None or payment.gateway != gateway_name:
        raise UnknownPayment(f"no {gateway_name} payment {verified.payment_reference!r}")
    matches = verified.currency == payment.currency and verified.amount == payment.amount
    # A matching event is stored right away under its unique id (one statement; a replay
    # stores nothing); a mismatched one is only looked up: a replay of a stored event still
    # answers as the duplicate it is, anything else is refused and nothing is written.
    event = (
        _store_event(gateway_name=gateway_name, verified=verified, payment=payment, now=now)
        if matches
        else None
    )
    if event is None:
        existing = PaymentEvent.objects.filter(
            gateway=gateway_name, event_id=verified.event_id
        ).first()
        if existing is not None:
            if existing.payment_id != payment.pk:
                # The same gateway event presented for another payment: a replay aimed at a
                # different order, never a duplicate of this one.
                raise TradeAlreadyBound(f"event {verified.event_id!r} belongs to another payment")
            return existing, True
        if verified.currency != payment.currency:
            raise CurrencyMismatch(f"payment {payment.pk}: currency {verified.currency!r}")
        raise AmountMismatch(f"payment {payment.pk}: amount {verified.amount}")
    if verified.kind == PaymentEvent.Kind.FAILED:
        if payment.status == Payment.Status.CREATED:
            payment.status = Payment.Status.FAILED
            payment.completed_at = now
            payment.save(update_fields=["status", "completed_at"])
        return _set_outcome(event, PaymentEvent.Outcome.FAILED_RECORDED), False

    if payment.status == Payment.Status.SUCCEEDED:
        # Same trade reported again under another event id (e.g. "finished" after "success").
        return _set_outcome(event, PaymentEvent.Outcome.ALREADY_PAID), False
    payment.status = Payment.Status.SUCCEEDED
    payment.completed_at = now
    payment.gateway_trade_id = verified.gateway_trade_id or None
    # No savepoint: a unique-trade violation aborts the whole transaction, which is exactly
    # what the raise below does anyway (nothing of this event is kept).
    try:
        payment.save(update_fields=["status", "completed_at", "gateway_trade_id"])
    except IntegrityError:
        raise TradeAlreadyBound(f"trade {verified.gateway_trade_id!r} pays another order") from None

    order = lock_objects.lock_order(order_id=payment.order_id)
    # Explicit, not "paid is allowed from here": a held order goes back to paid only when
    # staff release it, never because a second payment arrived.
    if order.status not in _PAYABLE_STATUSES:
        # Another payment already paid it, or it was refunded: never deliver over that.
        # This money goes back automatically.
        logger.warning("payment for an order already paid or closed", extra={"order_id": order.pk})
        ledger_services.record_unallocated(
            payment_id=payment.pk,
            order_id=order.pk,
            amount=payment.amount,
            currency=payment.currency,
        )
        _refund_after_commit(payment=payment, kind="duplicate")
        return _set_outcome(event, PaymentEvent.Outcome.DUPLICATE_PAYMENT), False
    # After its deadline, even if the expiry job has not run yet.
    late = order.status in (Order.Status.EXPIRED, Order.Status.CANCELLED) or order.expires_at <= now
    order.paid_at = now
    transition_order(
        order=order,
        to_status=Order.Status.PAID,
        source=f"gateway:{gateway_name}" if actor is None else "staff",
        actor=actor,
        note=note or f"event {verified.event_id}",
        extra_fields=("paid_at",),
    )
    webhook_services.emit_after_commit(event=WebhookEvent.ORDER_PAID, object_id=order.pk)
    ledger_services.record_sale(
        order_id=order.pk,
        merchant=order.merchant,
        amount=payment.amount,
        currency=payment.currency,
    )
    review = risk_services.screen_payment(order=order, now=now)
    if review.outcome == RiskDecision.Outcome.HOLD:
        outcome = _hold_for_review(order=order, now=now, reason=review.reason)
    else:
        outcome = _fulfil(order=order, now=now)
    if late and outcome == PaymentEvent.Outcome.UNFULFILLED:
        # Paid after it lapsed and the stock is gone: refund rather than keep the buyer
        # waiting for a restock they never agreed to.
        _refund_after_commit(payment=payment, kind="late")
        # Its coupon use, if the expiry job had not given it back yet, comes back now.
        promotions_services.release_redemption(order=order, now=now)
    elif late:
        # Its coupon use was given back when it expired or was cancelled; it counts again.
        promotions_services.reinstate_redemption(order=order)
    return _set_outcome(event, outcome), False


def _store_event(
    *, gateway_name: str, verified: VerifiedEvent, payment: Payment, now: datetime
) -> PaymentEvent | None:
    """Insert the event unless one with its (gateway, event_id) exists (``ON CONFLICT DO
    NOTHING`` on ``paymentevent_unique_id``): the stored event, or None if it was there."""
    event = PaymentEvent(
        gateway=gateway_name,
        event_id=verified.event_id,
        kind=verified.kind,
        payment=payment,
        amount=verified.amount,
        currency=verified.currency,
        gateway_trade_id=verified.gateway_trade_id,
        created_at=now,
    )
    if connection.vendor != "postgresql":
        if PaymentEvent.objects.filter(gateway=gateway_name, event_id=verified.event_id).exists():
            return None
        event.save()
        return event
    table = connection.ops.quote_name(PaymentEvent._meta.db_table)
    # The table name from the model; every value a bound parameter.
    sql = (
        f"INSERT INTO {table} (gateway, event_id, kind, payment_id, amount, currency,"  # noqa: S608  # nosec B608
        " gateway_trade_id, outcome, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, '', %s)"
        " ON CONFLICT (gateway, event_id) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                event.gateway,
                event.event_id,
                event.kind,
                payment.pk,
                event.amount,
                event.currency,
                event.gateway_trade_id,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    event.pk = row[0]
    event._state.adding = False
    event._state.db = connection.alias
    return event


_PAYABLE_STATUSES = frozenset({Order.Status.PENDING, Order.Status.EXPIRED, Order.Status.CANCELLED})


def _set_outcome(event: PaymentEvent, outcome: str) -> PaymentEvent:
    event.outcome = outcome
    event.save(update_fields=["outcome"])
    return event


def _fulfil(*, order: Order, now: datetime) -> str:
    """Deliver a locked, paid order from stock, all or nothing. Called inside the caller's
    transaction. Returns the payment-event outcome."""
    product = order.product
    if product.delivery_mode == Product.DeliveryMode.MANUAL:
        transaction.on_commit(
            partial(tasks.notify_merchant_order_paid_task.delay, order_id=order.pk)
        )
        return PaymentEvent.Outcome.AWAITING_MERCHANT

    if product.delivery_mode == Product.DeliveryMode.REUSABLE:
        shared_key = (
            CardKey.objects.filter(product=product, status=CardKey.Status.AVAILABLE)
            .order_by("-id")
            .first()
        )
        capacity = Q(reusable_cap__isnull=True) | Q(
            reusable_cap__gte=F("reusable_sold") + order.quantity
        )
        if shared_key is None or not Product.objects.filter(capacity, pk=product.pk).update(
            reusable_sold=F("reusable_sold") + order.quantity
        ):
            return _mark_unfulfilled(order=order, note="reusable key sold out")
        storefront_cache.catalogue_changed(merchant_id=order.merchant_id)  # reusable_sold
        Delivery.objects.create(order=order, card_key=shared_key, shared=True)
        return _mark_delivered(order=order, now=now)

    if not _deliver_from_stock(order=order, now=now):
        return _mark_unfulfilled(order=order, note="not enough stock")
    return _mark_delivered(order=order, now=now)


def _deliver_from_stock(*, order: Order, now: datetime) -> bool:
    """Sell ``order.quantity`` keys to a locked order: those it still holds first, fresh ones for
    the rest. If stock cannot cover it, keep what it holds without expiry (a restock completes
    it) and return False; never deliver part of an order silently."""
    # Usually the order still holds all its keys: lock, sell and deliver them in one statement.
    sold = lock_objects.sell_held_keys_and_deliver(
        order_id=order.pk, quantity=order.quantity, now=now
    )
    if sold == order.quantity:
        return True
    if sold:
        raise IntegrityError(f"order {order.pk}: sold {sold} of {order.quantity} locked keys")
    held = lock_objects.lock_keys_held_by_order(order_id=order.pk)
    missing = order.quantity - len(held)
    if missing > 0:
        _claim_free_keys(
            product_id=order.product_id,
            order_id=order.pk,
            count=missing,
            reserved_until=None,
            now=now,
        )
        held = lock_objects.lock_keys_held_by_order(order_id=order.pk)
    if len(held) < order.quantity:
        CardKey.objects.filter(id__in=held).update(reserved_until=None)
        return False
    key_ids = held[: order.quantity]
    sold = lock_objects.sell_keys_and_deliver(order_id=order.pk, key_ids=key_ids, now=now)
    if sold != len(key_ids):
        raise IntegrityError(f"order {order.pk}: sold {sold} of {len(key_ids)} locked keys")
    return True


def _mark_delivered(*, order: Order, now: datetime, actor: User | None = None) -> str:
    order.delivered_at = now
    transition_order(
        order=order,
        to_status=Order.Status.DELIVERED,
        source="fulfilment" if actor is None else "merchant",
        actor=actor,
        extra_fields=("delivered_at",),
    )
    transaction.on_commit(partial(tasks.send_order_receipt_task.delay, order_id=order.pk))
    webhook_services.emit_after_commit(event=WebhookEvent.ORDER_DELIVERED, object_id=order.pk)
    if order.product.low_stock_threshold is not None:
        webhook_services.check_low_stock_after_commit(product_id=order.product_id)
    return PaymentEvent.Outcome.DELIVERED


def _mark_unfulfilled(*, order: Order, note: str) -> str:
    transition_order(
        order=order, to_status=Order.Status.UNFULFILLED, source="fulfilment", note=note
    )
    logger.warning("paid order unfulfilled", extra={"order_id": order.pk})
    return PaymentEvent.Outcome.UNFULFILLED


def retry_fulfilment(*, order_id: int, actor: User | None = None) -> Order:
    """After a restock: deliver a paid-but-unfulfilled auto-delivery order, all or nothing.
    Raises ``NotDeliverable``, ``OutOfStock`` (nothing changes then)."""
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        if (
            order.status != Order.Status.UNFULFILLED
            or order.product.delivery_mode != Product.DeliveryMode.AUTO
        ):
            raise NotDeliverable(f"order {order.pk} is {order.status}")
        if not _deliver_from_stock(order=order, now=timezone.now()):
            raise OutOfStock(f"order {order.pk}: still not enough stock")
        _mark_delivered(order=order, now=timezone.now(), actor=actor)
    return order


# --- risk holds -----------------------------------------------------------------------------------
def _hold_for_review(*, order: Order, now: datetime, reason: str) -> str:
    """Inside ``confirm_payment``'s transaction, instead of ``_fulfil``: a paid order the risk
    rules want a person to look at. Delivers nothing; an auto order keeps its keys (claiming any
    it lost after a late payment) without expiry, so they neither lapse nor go to another buyer
    while staff decide. Returns the payment-event outcome."""
    transition_order(
        order=order, to_status=Order.Status.HELD, source="risk", note=reason or "risk review"
    )
    if order.product.delivery_mode == Product.DeliveryMode.AUTO:
        held = lock_objects.lock_keys_held_by_order(order_id=order.pk)
        if len(held) < order.quantity:
            _claim_free_keys(
                product_id=order.product_id,
                order_id=order.pk,
                count=order.quantity - len(held),
                reserved_until=None,
                now=now,
            )
        CardKey.objects.filter(order_id=order.pk, status=CardKey.Status.RESERVED).update(
            reserved_until=None
        )
    order.needs_attention = f"held for risk review: {reason}"[:300]
    order.save(update_fields=["needs_attention"])
    logger.warning("paid order held for risk review", extra={"order_id": order.pk})
    return PaymentEvent.Outcome.HELD


def release_held_order(*, order_id: int, actor: User | None, note: str = "") -> Order:
    """Staff cleared a held order: back to paid, then the same fulfilment a callback runs
    (delivered, unfulfilled when stock is short, or waiting for the merchant's manual delivery).
    One transaction. Raises ``NotHeld`` (nothing changes then)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        if order.status != Order.Status.HELD:
            raise NotHeld(f"order {order.pk} is {order.status}")
        transition_order(
            order=order,
            to_status=Order.Status.PAID,
            source="risk:release",
            actor=actor,
            note=note or "released after risk review",
        )
        order.needs_attention = ""
        order.save(update_fields=["needs_attention"])
        outcome = _fulfil(order=order, now=now)
        if outcome == PaymentEvent.Outcome.UNFULFILLED:
            order.needs_attention = "released after review, but not enough stock"
            order.save(update_fields=["needs_attention"])
    return order


# --- manual delivery -----------------------------------------------------------------------------
def deliver_manually(*, order: Order, content: str, actor: User) -> Order:
    """The merchant types in the goods for a paid manual-delivery order. The content is sealed
    like a card key and bound to this order. Raises ``NotDeliverable``, ``InvalidOrderInput``."""
    content = content.strip()
    if not content or len(content) > 5000:
        raise InvalidOrderInput(
            "bad manual content",
            errors={"content": [_("Enter the goods (up to 5000 characters).")]},
        )
    with transaction.atomic(durable=True):
        locked = lock_objects.lock_order(order_id=order.pk)
        if (
            locked.status != Order.Status.PAID
            or locked.product.delivery_mode != Product.DeliveryMode.MANUAL
        ):
            raise NotDeliverable(f"order {locked.pk} is {locked.status}")
        sealed = vault.seal(
            content,
            merchant_id=locked.merchant_id,
            product_id=locked.product_id,
            fingerprint=manual_delivery_binding(locked),
        )
        Delivery.objects.create(
            order=locked,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            delivered_by=actor,
        )
        _mark_delivered(order=locked, now=timezone.now(), actor=actor)
    return locked


def manual_delivery_binding(order: Order) -> str:
    """What a manual delivery's ciphertext is bound to, in place of a stock fingerprint."""
    return f"order:{order.pk}:{order.number}"


# --- page views ---------------------------------------------------------------------------------
def record_keys_viewed(*, order: Order, ip: str | None, user_agent: str) -> None:
    """Remember the first time the keys were shown (evidence for disputes); later views change
    nothing. A conditional update, so concurrent first views record exactly one."""
    if order.keys_first_viewed_at is not None:
        return
    # An anonymised order records no new address (orders.privacy).
    Order.objects.filter(
        pk=order.pk, keys_first_viewed_at__isnull=True, anonymised_at__isnull=True
    ).update(
        keys_first_viewed_at=timezone.now(),
        keys_first_viewed_ip=ip,
        keys_first_viewed_user_agent=user_agent[:300],
    )


RECEIPT_LEASE = timedelta(minutes=10)


def claim_receipt(*, order_id: int, now: datetime | None = None) -> bool:
    """Take the lease on an order's receipt; False if it was sent, or another sender holds a
    fresh lease. A sender killed mid-send leaves a lease that goes stale after
    ``RECEIPT_LEASE`` (then the repair job sends it)."""
    now = now or timezone.now()
    return bool(
        Order.objects.filter(pk=order_id, receipt_sent_at__isnull=True)
        .filter(Q(receipt_claimed_at__isnull=True) | Q(receipt_claimed_at__lt=now - RECEIPT_LEASE))
        .update(receipt_claimed_at=now)
    )


def mark_receipt_sent(*, order_id: int) -> None:
    Order.objects.filter(pk=order_id).update(receipt_sent_at=timezone.now())


def release_receipt_claim(*, order_id: int) -> None:
    Order.objects.filter(pk=order_id, receipt_sent_at__isnull=True).update(receipt_claimed_at=None)


def claim_merchant_notice(*, order_id: int) -> bool:
    return bool(
        Order.objects.filter(pk=order_id, merchant_notified_at__isnull=True).update(
            merchant_notified_at=timezone.now()
        )
    )


def release_merchant_notice_claim(*, order_id: int) -> None:
    Order.objects.filter(pk=order_id).update(merchant_notified_at=None)


# --- cancelling ---------------------------------------------------------------------------------
def cancel_order(*, order_id: int, source: str, actor: User | None = None) -> Order:
    """Cancel an unpaid order and release its reservation. A payment that still arrives later
    takes the late-payment path. Raises ``IllegalTransition``."""
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        transition_order(order=order, to_status=Order.Status.CANCELLED, source=source, actor=actor)
        CardKey.objects.filter(order_id=order.pk, status=CardKey.Status.RESERVED).update(
            status=CardKey.Status.AVAILABLE, order=None, reserved_until=None
        )
        storefront_cache.catalogue_changed(merchant_id=order.merchant_id)
        promotions_services.release_redemption(order=order, now=timezone.now())
    return order


# --- expiry -------------------------------------------------------------------------------------
def expire_pending_orders(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Expire unpaid orders past their deadline and release their keys; idempotent, batched, one
    short transaction per order so a long backlog never holds many locks."""
    now = now or timezone.now()
    expired = 0
    while True:
        ids = list(
            Order.objects.filter(status=Order.Status.PENDING, expires_at__lt=now)
            .order_by("expires_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return expired
        for order_id in ids:
            expired += _expire_one(order_id=order_id, now=now)
        if len(ids) < batch_size:
            return expired


def _expire_one(*, order_id: int, now: datetime) -> int:
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        if order.status != Order.Status.PENDING or order.expires_at >= now:
            return 0
        transition_order(order=order, to_status=Order.Status.EXPIRED, source="expiry")
        CardKey.objects.filter(order_id=order.pk, status=CardKey.Status.RESERVED).update(
            status=CardKey.Status.AVAILABLE, order=None, reserved_until=None
        )
        storefront_cache.catalogue_changed(merchant_id=order.merchant_id)
        promotions_services.release_redemption(order=order, now=now)
        return 1


# --- flags ----------------------------------------------------------------------------------------
def flag_order(*, order_id: int, reason: str) -> None:
    """Put an order in front of staff (the admin's "needs attention" filter)."""
    Order.objects.filter(pk=order_id).update(needs_attention=reason[:300])


def flag_payment_order(*, reference: str, reason: str) -> None:
    payment = Payment.objects.filter(reference=reference).only("order_id").first()
    if payment is not None:
        flag_order(order_id=payment.order_id, reason=reason)


def clear_flag(*, order_id: int) -> None:
    Order.objects.filter(pk=order_id).update(needs_attention="")


# --- refunds ------------------------------------------------------------------------------------
# What a payment can no longer refund: done, owed by hand, or taken by the gateway and not
# finished yet (a pending refund may still fail; then it is FAILED and its amount free again).
_OPEN_REFUND_STATES = (Refund.Status.PENDING, Refund.Status.SUCCEEDED, Refund.Status.MANUAL)
# What the order's refunded state and the ledger count.
_DONE_REFUND_STATES = (Refund.Status.SUCCEEDED, Refund.Status.MANUAL)


def _refund_after_commit(*, payment: Payment, kind: str) -> None:
    transaction.on_commit(
        partial(
            tasks.refund_payment_task.delay,
            payment_id=payment.pk,
            request_id=f"auto:{kind}:{payment.reference}",
            reason=kind,
        )
    )


def refundable_amount(*, payment: Payment) -> Decimal:
    already = sum(
        (r.amount for r in payment.refunds.filter(status__in=_OPEN_REFUND_STATES)), Decimal(0)
    )
    return payment.amount - already


def _paying_payment_id(order: Order) -> int | None:
    """The payment that paid the order (its first successful one that was not refunded as a
    duplicate)."""
    event = (
        PaymentEvent.objects.filter(payment__order=order, kind=PaymentEvent.Kind.PAID)
        .exclude(outcome=PaymentEvent.Outcome.DUPLICATE_PAYMENT)
        .exclude(outcome=PaymentEvent.Outcome.ALREADY_PAID)
        .order_by("id")
        .first()
    )
    return event.payment_id if event is not None else None


def request_refund(
    *,
    request_id: str,
    order_id: int,
    reason: str,
    source: str,
    amount: Decimal | None = None,
    payment_id: int | None = None,
    actor: User | None = None,
    funded_by_platform: bool = False,
) -> Refund:
    """The one refund service (staff, disputes, automatic cases). Idempotent: a second call with
    the same ``request_id`` returns the first refund (retrying it at the gateway if it failed).
    Full (``amount=None``) or partial; never more than what the payment took, counting every
    earlier refund. Through the gateway where it supports refunds, else recorded as a manual
    refund for staff to pay out. Raises ``RefundNotAllowed``."""
    existing = Refund.objects.filter(request_id=request_id).first()
    if existing is not None:
        if existing.status == Refund.Status.FAILED:
            _execute_refund(refund_id=existing.pk)
            existing.refresh_from_db()
        return existing

    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=order_id)
        existing = Refund.objects.filter(request_id=request_id).first()
        if existing is not None:
            return existing
        payment_id = payment_id or _paying_payment_id(order)
        payment = (
            Payment.objects.filter(pk=payment_id, order=order, status=Payment.Status.SUCCEEDED)
            .select_for_update(of=("self",))
            .first()
            if payment_id is not None
            else None
        )
        if payment is None:
            raise RefundNotAllowed(f"order {order.pk} has no successful payment to refund")
        left = refundable_amount(payment=payment)
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise RefundNotAllowed(f"refund {amount} exceeds the {left} left on {payment.pk}")
        gateway = build_gateway(payment.gateway)
        through_gateway = gateway is not None and gateway.supports_refund and gateway.is_enabled()
        refund = Refund.objects.create(
            request_id=request_id,
            order=order,
            payment=payment,
            amount=amount,
            currency=payment.currency,
            status=Refund.Status.PENDING if through_gateway else Refund.Status.MANUAL,
            reason=reason[:300],
            source=source[:40],
            requested_by=actor if actor is not None and actor.is_authenticated else None,
            funded_by_platform=funded_by_platform,
        )
        if not through_gateway:
            _apply_refund(order=order, refund=refund, actor=actor)
    if through_gateway:
        _execute_refund(refund_id=refund.pk)
        refund.refresh_from_db()
    return refund


def _execute_refund(*, refund_id: int) -> None:
    """Ask the gateway for a pending (or failed) refund, outside any lock; the gateway dedupes
    on our request id, so a repeat after a crash refunds once. A refund the gateway already took
    and left pending (it has a gateway refund id) is asked about, never sent again."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status not in (Refund.Status.PENDING, Refund.Status.FAILED):
        return
    gateway = build_gateway(refund.payment.gateway)
    if refund.status == Refund.Status.PENDING and refund.gateway_refund_id:
        _check_pending_refund(refund=refund, gateway=gateway)
        return
    # A refund the gateway took and then failed (it has the gateway's id) is retried as a new
    # refund at the gateway, under a seed naming the failed one: the original seed would only
    # get the failed refund back (Stripe replays an idempotency key's first answer for a day).
    # Deterministic, so a retry repeated after a crash is still one refund.
    seed = refund.request_id
    if refund.status == Refund.Status.FAILED and refund.gateway_refund_id:
        seed = f"{refund.request_id}|after:{refund.gateway_refund_id}"
    try:
        if gateway is None or not gateway.is_enabled():
            raise GatewayUnavailable(f"gateway {refund.payment.gateway!r} is not available")
        result = gateway.refund(payment=refund.payment, amount=refund.amount, reason=seed)
    except Exception as exc:  # any failure: recorded, flagged, retried by the repair job
        logger.warning(
            "refund failed at the gateway",
            extra={"refund_id": refund.pk, "error": type(exc).__name__},
        )
        with transaction.atomic(durable=True):
            # Unless another run recorded an attempt the gateway took meanwhile.
            Refund.objects.filter(
                pk=refund.pk,
                status__in=["pending", "failed"],
                gateway_refund_id=refund.gateway_refund_id,
            ).update(status=Refund.Status.FAILED, failure=f"{type(exc).__name__}"[:300])
            flag_order(order_id=refund.order_id, reason=f"refund {refund.request_id} failed")
        return
    _record_refund_result(refund_id=refund.pk, asked_about=refund.gateway_refund_id, result=result)


def _ask_about_reported_refund(*, gateway_name: str, gateway_refund_id: str) -> None:
    """A gateway reported that one of its refunds changed: if it is one of ours still pending,
    ask the gateway about it now (a task) rather than at the repair job's next run. The report
    itself decides nothing."""
    refund_id = (
        Refund.objects.filter(
            payment__gateway=gateway_name,
            gateway_refund_id=gateway_refund_id[:128],
            status=Refund.Status.PENDING,
        )
        .values_list("pk", flat=True)
        .first()
    )
    if refund_id is None:
        return
    try:
        tasks.check_pending_refund_task.delay(refund_id=refund_id)
    except Exception:  # the queue is down: the repair job asks within minutes anyway
        logger.warning("could not queue a refund check", extra={"refund_id": refund_id})


def check_pending_refund(*, refund_id: int) -> str:
    """Ask the gateway how a refund it took has ended, and record it (``_record_refund_result``
    under the refund's lock). Only a pending refund with the gateway's id is asked about; a
    failed one is never sent again from here. Returns the refund's status afterwards."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status == Refund.Status.PENDING and refund.gateway_refund_id:
        _check_pending_refund(refund=refund, gateway=build_gateway(refund.payment.gateway))
    return Refund.objects.values_list("status", flat=True).get(pk=refund_id)


def _check_pending_refund(*, refund: Refund, gateway: Gateway | None) -> None:
    """A refund the gateway took but had not finished: ask how it ended. Not knowing yet (an
    outage, a gateway switched off) leaves it pending for the next run: never marked failed on a
    guess, which would invite a second payout of money that may still be on its way."""
    try:
        if gateway is None or not gateway.is_enabled():
            raise GatewayUnavailable(f"gateway {refund.payment.gateway!r} is not available")
        if gateway.supports_refund_query:
            result = gateway.query_refund(
                payment=refund.payment,
                refund_id=refund.gateway_refund_id,
                amount=refund.amount,
            )
        else:
            # Cannot happen with today's adapters (only those that can query report pending);
            # sending the same request again is the same refund at the gateway.
            result = gateway.refund(
                payment=refund.payment, amount=refund.amount, reason=refund.request_id
            )
    except Exception as exc:
        logger.warning(
            "could not learn a pending refund's outcome",
            extra={"refund_id": refund.pk, "error": type(exc).__name__},
        )
        return
    if result.refund_id and result.refund_id != refund.gateway_refund_id[:128]:
        logger.warning("gateway answered about another refund", extra={"refund_id": refund.pk})
        return
    _record_refund_result(refund_id=refund.pk, asked_about=refund.gateway_refund_id, result=result)


def _record_refund_result(*, refund_id: int, asked_about: str, result: RefundResult) -> None:
    """Record what the gateway said about a refund, once: a refund already finished (by a
    concurrent run, a replayed answer) changes nothing, nor does an answer about an attempt that
    is no longer the refund's (``asked_about``: its gateway refund id when the gateway was asked;
    another run has recorded a newer attempt since). Pending: kept pending with the gateway's
    id, nothing booked. Succeeded: the order, ledger and buyer notice, in this transaction.
    Failed: marked failed with the reason and the order flagged; the amount is refundable again,
    so staff retry it or pay it out by hand."""
    with transaction.atomic(durable=True):
        order = lock_objects.lock_order(order_id=Refund.objects.get(pk=refund_id).order_id)
        locked = Refund.objects.select_for_update().get(pk=refund_id)
        if locked.status not in (Refund.Status.PENDING, Refund.Status.FAILED):
            if result.succeeded and locked.status == Refund.Status.MANUAL:
                # A retry of the failed refund was in flight while staff paid it by hand: the
                # buyer got the money twice. Nothing is booked twice; a person recovers it.
                logger.error(
                    "gateway refunded a refund paid by hand", extra={"refund_id": refund_id}
                )
                flag_order(
                    order_id=order.pk,
                    reason=f"refund {locked.request_id} paid twice (by hand and by the gateway"
                    f" {result.refund_id}): recover one",
                )
            return
        if locked.gateway_refund_id != asked_about:
            return
        if result.succeeded:
            locked.status = Refund.Status.SUCCEEDED
            if result.refund_id:
                locked.gateway_refund_id = result.refund_id[:128]
            locked.completed_at = timezone.now()
            locked.failure = ""
            locked.save(update_fields=["status", "gateway_refund_id", "completed_at", "failure"])
            _apply_refund(order=order, refund=locked, actor=locked.requested_by)
            return
        if result.pending:
            # Without the gateway's id (no adapter answers so) the repair job sends the same
            # request again, which the gateway dedupes; with it, the job asks about it.
            locked.status = Refund.Status.PENDING
            if result.refund_id:
                locked.gateway_refund_id = result.refund_id[:128]
            locked.failure = ""
            locked.save(update_fields=["status", "gateway_refund_id", "failure"])
            return
        locked.status = Refund.Status.FAILED
        # With an id, the gateway made a refund and it failed: a retry must be a new one
        # (``_execute_refund``). Without, nothing stands at the gateway: a retry sends the same
        # request again, which is the safe retry where the outcome was unclear.
        locked.gateway_refund_id = result.refund_id[:128]
        locked.failure = (result.failure or "the gateway declined the refund")[:300]
        locked.save(update_fields=["status", "gateway_refund_id", "failure"])
        flag_order(order_id=order.pk, reason=f"refund {locked.request_id} failed: {locked.failure}")


def _apply_refund(*, order: Order, refund: Refund, actor: User | None) -> None:
    """Inside the caller's transaction, with the order locked: move the order to (partially)
    refunded when this refund is for the payment that paid it, release stock an undelivered
    order still holds, post it to the ledger, and tell the buyer after commit."""
    of_sale = refund.payment_id == _paying_payment_id(order)
    ledger_services.record_refund(
        refund_id=refund.pk,
        order_id=order.pk,
        merchant=order.merchant,
        amount=refund.amount,
        currency=refund.currency,
        of_sale=of_sale,
        funded_by_platform=refund.funded_by_platform,
        actor=actor,
    )
    if of_sale:
        # Only money that went back (or that staff owe by hand): a refund still pending at the
        # gateway moves the order when it succeeds, never before.
        refunded = sum(
            (
                r.amount
                for r in Refund.objects.filter(
                    payment_id=refund.payment_id, status__in=_DONE_REFUND_STATES
                )
            ),
            Decimal(0),
        )
        target = (
            Order.Status.REFUNDED if refunded >= order.amount else Order.Status.PARTIALLY_REFUNDED
        )
        if target in ORDER_TRANSITIONS.get(order.status, frozenset()) and target != order.status:
            undelivered = order.status != Order.Status.DELIVERED and not order.deliveries.exists()
            transition_order(
                order=order,
                to_status=target,
                source=f"refund:{refund.source}",
                actor=actor,
                note=refund.reason,
            )
            if undelivered and target == Order.Status.REFUNDED:
                CardKey.objects.filter(order=order, status=CardKey.Status.RESERVED).update(
                    status=CardKey.Status.AVAILABLE, order=None, reserved_until=None
                )
                storefront_cache.catalogue_changed(merchant_id=order.merchant_id)
    transaction.on_commit(partial(tasks.send_refund_notice_task.delay, refund_id=refund.pk))
    if of_sale:
        webhook_services.emit_after_commit(event=WebhookEvent.ORDER_REFUNDED, object_id=refund.pk)


def record_manual_payout(*, refund_id: int, reference: str, actor: User) -> Refund:
    """Staff paid a manual refund out by hand; record how, once (a second record, a double
    click or a colleague's, would hide the first payout's reference)."""
    with transaction.atomic(durable=True):
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != Refund.Status.MANUAL:
            raise RefundNotAllowed(f"refund {refund.pk} is {refund.status}")
        if refund.paid_out_reference:
            raise RefundNotAllowed(f"refund {refund.pk} was paid out already")
        refund.paid_out_reference = reference[:128]
        refund.completed_at = timezone.now()
        refund.save(update_fields=["paid_out_reference", "completed_at"])
    return refund


def pay_failed_refund_by_hand(*, refund_id: int, reference: str, actor: User) -> Refund:
    """Staff paid a refund the gateway failed some other way (a bank transfer, a payout in the
    gateway's own console). The same refund row becomes a manual refund, already paid out, and
    is booked now as a manual refund is (ledger, order state, the buyer's notice), so a dispute
    decided with it shows the money as returned. One transaction with the order and the payment
    locked: a failed refund's amount is refundable again, so another refund may have taken it
    since. Raises ``RefundNotAllowed``, ``InvalidOrderInput`` (no reference)."""
    reference = reference.strip()
    if not reference:
        raise InvalidOrderInput(
            "a payout needs a reference",
            errors={"reference": [_("Give the payout's reference (transfer or transaction id).")]},
        )
    with transaction.atomic(durable=True):
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
        order = lock_objects.lock_order(order_id=order_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != Refund.Status.FAILED:
            raise RefundNotAllowed(f"refund {refund.pk} is {refund.status}, not failed")
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        left = refundable_amount(payment=payment)
        if refund.amount > left:
            raise RefundNotAllowed(f"refund {refund.pk}: only {left} is left to refund")
        refund.status = Refund.Status.MANUAL
        refund.paid_out_reference = reference[:128]
        refund.completed_at = timezone.now()
        refund.save(update_fields=["status", "paid_out_reference", "completed_at"])
        _apply_refund(order=order, refund=refund, actor=actor)
        if order.needs_attention.startswith(f"refund {refund.request_id} failed"):
            clear_flag(order_id=order.pk)
    return refund


# --- staff: marking paid by hand, processing a notification again --------------------------------
def mark_paid_manually(
    *, order_id: int, gateway_name: str, gateway_trade_id: str, reason: str, actor: User
) -> PaymentEvent:
    """Staff saw the money at the gateway but no notification came. The same path as a
    callback (``confirm_payment``), under an event id derived from the gateway's transaction id,
    so a later real notification for it changes nothing. Raises ``InvalidOrderInput``,
    ``PaymentRejected`` subclasses."""
    reason = reason.strip()
    gateway_trade_id = gateway_trade_id.strip()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = [_("Give a reason.")]
    if not gateway_trade_id:
        errors["gateway_trade_id"] = [_("Give the gateway's transaction id.")]
    if errors:
        raise InvalidOrderInput("manual payment needs a reason and a transaction id", errors=errors)
    order = Order.objects.get(pk=order_id)
    event_id = f"manual:{gateway_trade_id}"[:128]
    already = PaymentEvent.objects.filter(gateway=gateway_name, event_id=event_id).first()
    if already is not None:
        if already.payment.order_id != order.pk:
            raise TradeAlreadyBound(f"{gateway_trade_id!r} already paid another order")
        return already  # marked before: nothing more to do
    payment = (
        Payment.objects.filter(order=order, gateway=gateway_name)
        .exclude(status=Payment.Status.SUCCEEDED)
        .order_by("-created_at")
        .first()
    )
    if payment is None:
        with transaction.atomic(durable=True):
            payment = Payment.objects.create(
                reference=tokens.new_payment_reference(),
                order=order,
                gateway=gateway_name,
                amount=order.amount,
                currency=order.currency,
            )
    verified = VerifiedEvent(
        event_id=event_id,
        kind="paid",
        payment_reference=payment.reference,
        amount=payment.amount,
        currency=payment.currency,
        gateway_trade_id=gateway_trade_id[:128],
    )
    event, _duplicate = confirm_payment(
        gateway_name=gateway_name,
        verified=verified,
        actor=actor,
        note=f"marked paid by hand: {reason}",
    )
    return event


def reprocess_notification(*, notification_id: int) -> CallbackReply:
    """Run a stored notification through verification and processing again (after fixing a
    gateway's configuration, say). Logs a new notification; changes nothing if it was already
    processed."""
    stored = PaymentNotification.objects.get(pk=notification_id)
    form: dict[str, str] = {}
    content_type = {k.lower(): v for k, v in stored.headers.items()}.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        from urllib.parse import parse_qsl

        form = dict(parse_qsl(stored.body, keep_blank_values=True))
    request = CallbackRequest(
        method=stored.method,
        body=stored.body.encode(),
        headers=stored.headers,
        query=stored.query,
        form=form,
        remote_ip=stored.remote_ip,
    )
    return handle_callback(gateway_name=stored.gateway, request=request)


# --- never lose a paid order: the beat jobs -------------------------------------------------------
RECONCILE_MIN_AGE = timedelta(minutes=1)
RECONCILE_MAX_AGE = timedelta(hours=48)
RECONCILE_INTERVAL = timedelta(minutes=1)


def reconcile_pending_payments(*, now: datetime | None = None) -> int:
    """Ask gateways about payments still open after a minute; a paid one goes through
    ``confirm_payment`` like a callback. Safe to run twice at once: each payment is claimed by a
    conditional update of ``last_queried_at``, and events are applied at most once."""
    now = now or timezone.now()
    candidates = list(
        Payment.objects.filter(
            status=Payment.Status.CREATED,
            created_at__lt=now - RECONCILE_MIN_AGE,
            created_at__gt=now - RECONCILE_MAX_AGE,
            order__status__in=[Order.Status.PENDING, Order.Status.EXPIRED, Order.Status.CANCELLED],
        )
        .filter(Q(last_queried_at__isnull=True) | Q(last_queried_at__lt=now - RECONCILE_INTERVAL))
        .values_list("id", "gateway", "last_queried_at")[:500]
    )
    confirmed = 0
    for payment_id, gateway_name, last_queried in candidates:
        claimed = Payment.objects.filter(pk=payment_id, last_queried_at=last_queried).update(
            last_queried_at=now
        )
        if not claimed:
            continue  # another reconcile run took it
        gateway = build_gateway(gateway_name)
        if gateway is None or not gateway.is_enabled():
            continue
        payment = Payment.objects.get(pk=payment_id)
        try:
            verified = gateway.query_payment(payment=payment)
        except Exception as exc:  # a gateway outage must not stop the others
            logger.warning(
                "payment query failed",
                extra={"payment_id": payment_id, "error": type(exc).__name__},
            )
            continue
        if verified is None or verified.payment_reference != payment.reference:
            continue
        try:
            _event, duplicate = confirm_payment(gateway_name=gateway_name, verified=verified)
        except (AmountMismatch, CurrencyMismatch) as exc:
            flag_order(order_id=payment.order_id, reason=f"query {exc.code}")
            continue
        except PaymentRejected:
            continue
        confirmed += 0 if duplicate else 1
    return confirmed


def repair_paid_orders(*, now: datetime | None = None) -> int:
    """Paid but not delivered: deliver what stock allows now (each order in its own
    transaction, all or nothing), flag what still cannot be delivered, and re-send lost
    receipts and merchant notices; retry refunds a crash left pending and learn how refunds
    pending at the gateway ended. Idempotent."""
    now = now or timezone.now()
    repaired = 0
    settle = now - timedelta(minutes=2)
    stuck = Order.objects.filter(
        status__in=[Order.Status.PAID, Order.Status.UNFULFILLED],
        paid_at__lt=settle,
        product__delivery_mode__in=[Product.DeliveryMode.AUTO, Product.DeliveryMode.REUSABLE],
    ).values_list("id", flat=True)
    for order_id in list(stuck[:500]):
        with transaction.atomic(durable=True):
            order = lock_objects.lock_order(order_id=order_id)
            if order.status not in (Order.Status.PAID, Order.Status.UNFULFILLED):
                continue
            if order.status == Order.Status.PAID:
                outcome = _fulfil(order=order, now=now)
                delivered = outcome == PaymentEvent.Outcome.DELIVERED
            elif order.product.delivery_mode == Product.DeliveryMode.AUTO and (
                _deliver_from_stock(order=order, now=now)
            ):
                _mark_delivered(order=order, now=now)
                delivered = True
            else:
                delivered = False
            if delivered:
                order.needs_attention = ""
                order.save(update_fields=["needs_attention"])
                repaired += 1
            elif not order.needs_attention:
                order.needs_attention = "paid, not delivered: not enough stock"
                order.save(update_fields=["needs_attention"])
    for order_id in (
        Order.objects.filter(
            status=Order.Status.DELIVERED, receipt_sent_at__isnull=True, delivered_at__lt=settle
        )
        .filter(Q(receipt_claimed_at__isnull=True) | Q(receipt_claimed_at__lt=now - RECEIPT_LEASE))
        .values_list("id", flat=True)[:500]
    ):
        tasks.send_order_receipt_task.delay(order_id=order_id)
    for order_id in Order.objects.filter(
        status=Order.Status.PAID,
        product__delivery_mode=Product.DeliveryMode.MANUAL,
        merchant_notified_at__isnull=True,
        paid_at__lt=settle,
    ).values_list("id", flat=True)[:500]:
        tasks.notify_merchant_order_paid_task.delay(order_id=order_id)
    # Refunds a crash left unsent are sent again (the gateway dedupes them); refunds the
    # gateway took but had not finished are asked about (``_execute_refund``).
    for refund_id in (
        Refund.objects.filter(
            status=Refund.Status.PENDING, created_at__lt=now - timedelta(minutes=5)
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:100]
    ):
        _execute_refund(refund_id=refund_id)
    return repaired


FAILING_WINDOW = timedelta(minutes=15)
FAILING_MIN_REJECTED = 5
SILENT_WINDOW = timedelta(hours=2)
SILENT_MIN_PAYMENTS = 3
ALERT_QUIET_PERIOD = timedelta(hours=1)
_VERIFICATION_FAILURES = ("invalid_signature", "stale_timestamp", "malformed", "unconfirmed")


def check_gateway_health(*, now: datetime | None = None) -> list[GatewayAlert]:
    """Alert staff by email when a gateway's callbacks start failing verification (a rotated
    key, an attack) or stop arriving while buyers are paying (a changed notify URL, an outage).
    One alert per gateway and kind per hour."""
    now = now or timezone.now()
    alerts: list[GatewayAlert] = []
    for name in GatewayConfig.objects.filter(enabled=True).values_list("gateway", flat=True):
        recent = PaymentNotification.objects.filter(
            gateway=name, received_at__gte=now - FAILING_WINDOW
        )
        failing = recent.filter(
            result=PaymentNotification.Result.REJECTED, detail__in=_VERIFICATION_FAILURES
        ).count()
        if failing >= FAILING_MIN_REJECTED and failing * 2 >= recent.count():
            alerts += _alert(
                name,
                GatewayAlert.Kind.FAILING,
                f"{failing} of {recent.count()} callbacks failed verification in 15 minutes",
                now,
            )
        opened = Payment.objects.filter(
            gateway=name,
            created_at__gte=now - SILENT_WINDOW,
            created_at__lt=now - timedelta(minutes=10),
        ).count()
        heard = PaymentNotification.objects.filter(
            gateway=name, received_at__gte=now - SILENT_WINDOW
        ).exists()
        if opened >= SILENT_MIN_PAYMENTS and not heard:
            alerts += _alert(
                name,
                GatewayAlert.Kind.SILENT,
                f"no callback in 2 hours while {opened} payments were opened",
                now,
            )
    return alerts


def _alert(name: str, kind: str, detail: str, now: datetime) -> list[GatewayAlert]:
    with transaction.atomic(durable=True):
        # One alert per gateway and kind per quiet period, even with two checkers running.
        GatewayConfig.objects.select_for_update().filter(gateway=name).first()
        if GatewayAlert.objects.filter(
            gateway=name, kind=kind, created_at__gte=now - ALERT_QUIET_PERIOD
        ).exists():
            return []
        alert = GatewayAlert.objects.create(gateway=name, kind=kind, detail=detail[:300])
        transaction.on_commit(partial(tasks.send_gateway_alert_task.delay, alert_id=alert.pk))
    return [alert]
