"""Writes of the orders app: placing orders, taking payments, fulfilling, expiring.

Every function that changes stock, orders or payments runs in one transaction it owns
(``durable=True``), takes row locks through ``orders.lock_objects`` in the global order
(payment → order → keys), and queues side effects with ``on_commit``. No gateway or other HTTP
call ever happens while a lock is held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from orders import lock_objects, tasks, tokens
from orders.exceptions import (
    AmountMismatch,
    CurrencyMismatch,
    GatewayUnavailable,
    IllegalTransition,
    InvalidOrderInput,
    NotDeliverable,
    OrderNotPayable,
    OutOfStock,
    TradeAlreadyBound,
    UnknownPayment,
)
from orders.gateways.base import CallbackReply, CallbackRequest, PaymentAction, VerifiedEvent
from orders.gateways.registry import get_gateway
from orders.models import (
    ORDER_TRANSITIONS,
    Delivery,
    Order,
    OrderStatusChange,
    Payment,
    PaymentEvent,
    PaymentNotification,
)
from shop import vault
from shop.exceptions import ProductUnavailable
from shop.manual_fields import clean_manual_inputs
from shop.models import CardKey, Product

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
    order.save(update_fields=["status", *extra_fields])
    OrderStatusChange.objects.create(
        order=order,
        from_status=from_status,
        to_status=to_status,
        actor=actor if actor is not None and actor.is_authenticated else None,
        source=source,
        note=note[:300],
    )
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
) -> PlacedOrder:
    """Create a pending order and reserve its stock for ``ORDER_TTL_MINUTES``.

    Locks: free keys of the product (``SKIP LOCKED``). Guarantees: either the order exists with
    all ``quantity`` keys reserved to it, or nothing was written. Raises ``ProductUnavailable``,
    ``InvalidOrderInput``, ``OutOfStock``.
    """
    now = now or timezone.now()
    if not product.is_active or not product.merchant.is_selling:
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

    number = tokens.new_order_number()
    nonce = tokens.new_token_nonce()
    token = tokens.derive_token(number=number, nonce=nonce)
    # The slow password hash runs before the transaction, never while holding key locks.
    password_hash = make_password(query_password) if query_password else ""
    expires_at = now + timedelta(minutes=settings.ORDER_TTL_MINUTES)

    with transaction.atomic(durable=True):
        order = Order.objects.create(
            number=number,
            merchant_id=product.merchant_id,
            product=product,
            quantity=quantity,
            unit_price=product.price,
            amount=(product.price * quantity).quantize(CENT),
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
    return PlacedOrder(order=order, token=token)


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
    return got


def _reusable_has_capacity(*, product: Product, quantity: int) -> bool:
    if not CardKey.objects.filter(product=product, status=CardKey.Status.AVAILABLE).exists():
        return False
    return product.reusable_cap is None or product.reusable_sold + quantity <= product.reusable_cap


# --- starting a payment -----------------------------------------------------------------------
def start_payment(*, order: Order, gateway_name: str, base_url: str) -> PaymentAction:
    """Open a payment for a pending order at the chosen gateway. The payment row is committed
    first, then the gateway is called outside any lock. ``base_url`` is the site root the buyer
    and the gateway reach us at. Raises ``OrderNotPayable``, ``GatewayUnavailable``."""
    gateway = get_gateway(gateway_name)
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
        Order.objects.filter(pk=order.pk).update(gateway=gateway.name)
    base_url = base_url.rstrip("/")
    token = tokens.derive_token(number=order.number, nonce=order.token_nonce)
    return gateway.create_payment(
        payment=payment,
        return_url=base_url + reverse("orders:detail", args=[token]),
        callback_url=base_url + reverse("orders:callback", args=[gateway.name]),
    )


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
) -> CheckoutResult:
    """Place the order and open its payment: what the product page's Buy button does. The
    gateway is checked first, so a bad choice writes nothing. If opening the payment fails after
    the order exists, the buyer lands on the order page, which offers to pay again."""
    get_gateway(gateway_name)
    placed = place_order(
        product=product,
        quantity=quantity,
        email=email,
        query_password=query_password,
        manual_inputs=manual_inputs,
        buyer_ip=buyer_ip,
        user_agent=user_agent,
        language=language,
    )
    action = start_payment(order=placed.order, gateway_name=gateway_name, base_url=base_url)
    return CheckoutResult(order=placed.order, token=placed.token, redirect_url=action.redirect_url)


# --- callbacks ----------------------------------------------------------------------------------
def handle_callback(*, gateway_name: str, request: CallbackRequest) -> CallbackReply:
    """The one shape of webhook handling: verify → store the event under its unique id → act →
    record the notification and its outcome. Forged, stale, replayed or mismatched notifications
    change nothing but the notification log."""
    from orders.exceptions import PaymentRejected

    gateway = get_gateway(gateway_name)
    body_text = request.body.decode("utf-8", errors="replace")[:10000]
    try:
        verified = gateway.verify_callback(request)
        event, duplicate = confirm_payment(gateway_name=gateway.name, verified=verified)
    except PaymentRejected as exc:
        _log_notification(
            gateway.name, request, body_text, PaymentNotification.Result.REJECTED, exc.code
        )
        logger.warning(
            "payment callback rejected", extra={"gateway": gateway.name, "code": exc.code}
        )
        return gateway.reply_rejected(exc)
    result = (
        PaymentNotification.Result.DUPLICATE if duplicate else PaymentNotification.Result.ACCEPTED
    )
    _log_notification(gateway.name, request, body_text, result, event.outcome, event=event)
    return gateway.reply_duplicate() if duplicate else gateway.reply_accepted()


def _log_notification(
    gateway_name: str,
    request: CallbackRequest,
    body_text: str,
    result: str,
    detail: str,
    event: PaymentEvent | None = None,
) -> None:
    PaymentNotification.objects.create(
        gateway=gateway_name,
        remote_ip=request.remote_ip,
        method=request.method[:8],
        body=body_text,
        result=result,
        detail=detail[:300],
        event=event,
    )


def confirm_payment(*, gateway_name: str, verified: VerifiedEvent) -> tuple[PaymentEvent, bool]:
    """Apply a verified gateway event at most once.

    Locks: the payment, then its order, then keys. Guarantees: the event row, the payment and
    order status, the claimed keys and their deliveries are written together or not at all; a
    second event with the same id returns ``(first_event, True)`` and changes nothing. Raises
    ``UnknownPayment``, ``AmountMismatch``, ``CurrencyMismatch``, ``TradeAlreadyBound``.
    """
    now = timezone.now()
    with transaction.atomic(durable=True):
        payment = lock_objects.lock_payment(reference=verified.payment_reference)
        # The gateway's settings and amount come from our payment row, never from the payload.
        if payment is None or payment.gateway != gateway_name:
            raise UnknownPayment(f"no {gateway_name} payment {verified.payment_reference!r}")
        existing = PaymentEvent.objects.filter(
            gateway=gateway_name, event_id=verified.event_id
        ).first()
        if existing is not None:
            return existing, True
        if verified.currency != payment.currency:
            raise CurrencyMismatch(f"payment {payment.pk}: currency {verified.currency!r}")
        if verified.amount != payment.amount:
            raise AmountMismatch(f"payment {payment.pk}: amount {verified.amount}")
        event = PaymentEvent.objects.create(
            gateway=gateway_name,
            event_id=verified.event_id,
            kind=verified.kind,
            payment=payment,
            amount=verified.amount,
            currency=verified.currency,
            gateway_trade_id=verified.gateway_trade_id,
        )
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
        try:
            with transaction.atomic():
                payment.save(update_fields=["status", "completed_at", "gateway_trade_id"])
        except IntegrityError:
            raise TradeAlreadyBound(
                f"trade {verified.gateway_trade_id!r} pays another order"
            ) from None

        order = lock_objects.lock_order(order_id=payment.order_id)
        if Order.Status.PAID not in ORDER_TRANSITIONS[order.status]:
            # Paid twice (another payment already paid it): recorded for staff to refund.
            logger.warning("second payment for order", extra={"order_id": order.pk})
            return _set_outcome(event, PaymentEvent.Outcome.ALREADY_PAID), False
        order.paid_at = now
        transition_order(
            order=order,
            to_status=Order.Status.PAID,
            source=f"gateway:{gateway_name}",
            note=f"event {verified.event_id}",
            extra_fields=("paid_at",),
        )
        outcome = _fulfil(order=order, now=now)
        return _set_outcome(event, outcome), False


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
        Delivery.objects.create(order=order, card_key=shared_key, shared=True)
        return _mark_delivered(order=order, now=now)

    if not _deliver_from_stock(order=order, now=now):
        return _mark_unfulfilled(order=order, note="not enough stock")
    return _mark_delivered(order=order, now=now)


def _deliver_from_stock(*, order: Order, now: datetime) -> bool:
    """Sell ``order.quantity`` keys to a locked order: those it still holds first, fresh ones for
    the rest. If stock cannot cover it, keep what it holds without expiry (a restock completes
    it) and return False; never deliver part of an order silently."""
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
    sold = CardKey.objects.filter(
        id__in=key_ids, order_id=order.pk, status=CardKey.Status.RESERVED
    ).update(status=CardKey.Status.SOLD, sold_at=now, reserved_until=None)
    if sold != len(key_ids):
        raise IntegrityError(f"order {order.pk}: sold {sold} of {len(key_ids)} locked keys")
    Delivery.objects.bulk_create([Delivery(order=order, card_key_id=key_id) for key_id in key_ids])
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
    Order.objects.filter(pk=order.pk, keys_first_viewed_at__isnull=True).update(
        keys_first_viewed_at=timezone.now(),
        keys_first_viewed_ip=ip,
        keys_first_viewed_user_agent=user_agent[:300],
    )


def mark_receipt_sent(*, order_id: int) -> None:
    Order.objects.filter(pk=order_id, receipt_sent_at__isnull=True).update(
        receipt_sent_at=timezone.now()
    )


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
        return 1
