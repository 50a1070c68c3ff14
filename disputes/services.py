"""Writes of the disputes app: opening a dispute, the conversation, the merchant's answer, the
escalation job, staff arbitration and the audited key reveal.

Every function owns a short transaction (``durable=True``) and takes locks in the global order
payment → order → dispute → card keys (``orders.lock_objects`` for the order and free stock,
``disputes.lock_objects`` for the rest). Every status change goes through ``transition_dispute``,
which checks ``DISPUTE_TRANSITIONS`` and writes the ``DisputeEvent`` in the same transaction.
Emails go out after commit.

One outcome per dispute: a decision is a ``DisputeDecision`` row (unique per dispute), inserted
under the dispute's lock before any money moves. A refund then runs through
``orders.services.request_refund`` under an id derived from that row, outside any lock of ours
(the refund service talks to the gateway), and a second transaction records the outcome. A
decision interrupted between the two is finished by the escalation job, with the same refund id,
so it never refunds twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from disputes import evidence, lock_objects, selectors, tasks
from disputes.exceptions import (
    AnswerWindowClosed,
    DecisionInProgress,
    DisputeAlreadyOpen,
    DisputeClosed,
    DisputeError,
    DisputeNotAllowed,
    DisputeWindowClosed,
    IllegalDisputeTransition,
    InvalidDisputeInput,
    ReplacementNotPossible,
    ReplacementOutOfStock,
)
from disputes.models import (
    BUYER_NOTIFIED_EVENTS,
    DISPUTE_TRANSITIONS,
    OPEN_STATUSES,
    Dispute,
    DisputeDecision,
    DisputeEvent,
    DisputeKeyReport,
    DisputeMessage,
    Role,
)
from merchants.selectors import merchant_for_user
from orders import lock_objects as order_locks
from orders import selectors as order_selectors
from orders import services as order_services
from orders.exceptions import RefundNotAllowed
from orders.models import Delivery, Order, Refund
from shop.exceptions import CardvaultError
from shop.models import CardKey, Product
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 5000
# A decision older than this and still unfinished was interrupted (a crash between the refund and
# recording it); the escalation job finishes it.
STALLED_DECISION_AGE = timedelta(minutes=10)
_COUNTED_REFUNDS = (Refund.Status.PENDING, Refund.Status.SUCCEEDED, Refund.Status.MANUAL)


# --- state machine -----------------------------------------------------------------------------
def transition_dispute(
    *,
    dispute: Dispute,
    to_status: str,
    kind: str,
    role: str,
    actor: User | None = None,
    note: str = "",
    extra_fields: tuple[str, ...] = (),
) -> DisputeEvent:
    """Move a locked dispute to ``to_status`` if the transition table allows it, writing its
    audit event in the caller's transaction (and queueing the buyer's email for the events the
    buyer is told about). Raises ``IllegalDisputeTransition``."""
    from_status = dispute.status
    if to_status not in DISPUTE_TRANSITIONS.get(from_status, frozenset()):
        raise IllegalDisputeTransition(
            f"dispute {dispute.pk}: {from_status} → {to_status} is not allowed"
        )
    dispute.status = to_status
    dispute.save(update_fields=["status", *extra_fields])
    event = _record_event(
        dispute=dispute,
        kind=kind,
        from_status=from_status,
        role=role,
        actor=actor,
        note=note,
    )
    if kind in BUYER_NOTIFIED_EVENTS:
        transaction.on_commit(partial(tasks.send_buyer_event_notice_task.delay, event_id=event.pk))
    return event


def _record_event(
    *,
    dispute: Dispute,
    kind: str,
    from_status: str,
    role: str,
    actor: User | None,
    note: str,
) -> DisputeEvent:
    return DisputeEvent.objects.create(
        dispute=dispute,
        kind=kind,
        from_status=from_status,
        to_status=dispute.status,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_role=role,
        note=note[:MAX_TEXT_LENGTH],
    )


def _clean_text(text: str, *, field: str, required_message: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidDisputeInput(f"{field} missing", errors={field: [required_message]})
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidDisputeInput(
            f"{field} too long",
            errors={field: [_("At most %(n)d characters.") % {"n": MAX_TEXT_LENGTH}]},
        )
    return text


# --- the buyer opens a dispute --------------------------------------------------------------------
def check_can_open(*, order: Order, now: datetime | None = None) -> None:
    """Raise ``DisputeNotAllowed`` or ``DisputeWindowClosed`` if the buyer cannot open a dispute
    on this order now (open disputes are checked when opening)."""
    now = now or timezone.now()
    closes_at = selectors.window_closes_at(order)
    if order.status not in selectors.DISPUTABLE_ORDER_STATUSES or closes_at is None:
        raise DisputeNotAllowed(f"order {order.pk} is {order.status}")
    if now > closes_at:
        raise DisputeWindowClosed(days=settings.DISPUTE_WINDOW_DAYS)


def open_dispute(
    *,
    order_id: int,
    reason: str,
    message: str,
    key_index: int | None = None,
    screenshot: UploadedFile | None = None,
    now: datetime | None = None,
) -> Dispute:
    """The buyer reports a problem with a delivered order, within ``DISPUTE_WINDOW_DAYS`` of
    delivery, optionally pointing at one delivered key (its position on the order page) and
    attaching a screenshot (an image, checked by content).

    Locks: the order. Guarantees: at most one open dispute per order (also a database
    constraint); a key reported invalid or used is marked (``DisputeKeyReport``); the merchant's
    answer is due ``DISPUTE_ANSWER_HOURS`` from now; the merchant is emailed after commit. A
    refused dispute leaves no file behind. Raises ``DisputeNotAllowed``, ``DisputeWindowClosed``,
    ``DisputeAlreadyOpen``, ``InvalidDisputeInput``."""
    now = now or timezone.now()
    check_can_open(order=Order.objects.get(pk=order_id), now=now)
    errors: dict[str, list[str]] = {}
    if reason not in Dispute.Reason.values:
        errors["reason"] = [_("Choose a reason.")]
    try:
        message = _clean_text(message, field="message", required_message=_("Describe the problem."))
    except InvalidDisputeInput as exc:
        errors.update(exc.errors)
    kind = None
    if screenshot is not None:
        try:
            kind = evidence.inspect_screenshot(screenshot)
        except InvalidDisputeInput as exc:
            errors.update(exc.errors)
    if errors:
        raise InvalidDisputeInput("invalid dispute", errors=errors)

    stored = evidence.store_screenshot(screenshot, kind) if screenshot and kind else ""
    try:
        with transaction.atomic(durable=True):
            order = order_locks.lock_order(order_id=order_id)
            check_can_open(order=order, now=now)
            delivery = _pick_delivery(order=order, key_index=key_index)
            if Dispute.objects.filter(order=order, status__in=OPEN_STATUSES).exists():
                raise DisputeAlreadyOpen(f"order {order.pk} has an open dispute")
            dispute = Dispute(
                order=order,
                reason=reason,
                message=message,
                delivery=delivery,
                key_index=_index_of(order=order, delivery=delivery),
                screenshot=stored,
                screenshot_content_type=kind.content_type if kind else "",
                answer_due_at=selectors.answer_due_from(now),
            )
            dispute.full_clean(validate_constraints=False)
            try:
                with transaction.atomic():
                    dispute.save()
            except IntegrityError:
                raise DisputeAlreadyOpen(f"order {order.pk} has an open dispute") from None
            _record_event(
                dispute=dispute,
                kind=DisputeEvent.Kind.OPENED,
                from_status="",
                role=Role.BUYER,
                actor=None,
                note=reason,
            )
            if (
                reason in selectors.INVALID_KEY_REASONS
                and delivery is not None
                and delivery.card_key_id is not None
            ):
                DisputeKeyReport.objects.create(
                    dispute=dispute, card_key_id=delivery.card_key_id, reason=reason
                )
            transaction.on_commit(
                partial(tasks.notify_merchant_dispute_opened_task.delay, dispute_id=dispute.pk)
            )
            webhook_services.emit_after_commit(
                event=WebhookEvent.DISPUTE_OPENED, object_id=dispute.pk
            )
    except BaseException:
        evidence.delete_screenshot(stored)
        raise
    return dispute


def _pick_delivery(*, order: Order, key_index: int | None) -> Delivery | None:
    """The delivery at position ``key_index`` (1-based, the order page's numbering); with no
    index, the order's only delivery if it has exactly one."""
    deliveries = Delivery.objects.filter(order=order).order_by("id")
    if key_index is None:
        first_two = list(deliveries[:2])
        return first_two[0] if len(first_two) == 1 else None
    delivery = deliveries[key_index - 1 : key_index].first() if key_index >= 1 else None
    if delivery is None:
        raise InvalidDisputeInput(
            "no such key", errors={"key_index": [_("Choose one of the order's keys.")]}
        )
    return delivery


def _index_of(*, order: Order, delivery: Delivery | None) -> int | None:
    if delivery is None:
        return None
    return Delivery.objects.filter(order=order, id__lte=delivery.pk).count()


# --- the merchant is told -------------------------------------------------------------------------
def claim_merchant_notice(*, dispute_id: int) -> bool:
    """Take the right to send the merchant's notice (at most once, like receipts)."""
    return bool(
        Dispute.objects.filter(pk=dispute_id, merchant_notified_at__isnull=True).update(
            merchant_notified_at=timezone.now()
        )
    )


def release_merchant_notice(*, dispute_id: int) -> None:
    Dispute.objects.filter(pk=dispute_id).update(merchant_notified_at=None)


def mark_awaiting_merchant(*, dispute_id: int) -> Dispute:
    """The merchant has been told: the dispute now waits for its answer."""
    with transaction.atomic(durable=True):
        dispute = lock_objects.lock_dispute(dispute_id=dispute_id)
        if dispute.status == Dispute.Status.OPEN:
            transition_dispute(
                dispute=dispute,
                to_status=Dispute.Status.AWAITING_MERCHANT,
                kind=DisputeEvent.Kind.MERCHANT_NOTIFIED,
                role=Role.SYSTEM,
                note="merchant emailed",
            )
    return dispute


# --- the conversation -----------------------------------------------------------------------------
def post_message(
    *, dispute_id: int, role: str, text: str, author: User | None = None
) -> DisputeMessage:
    """Add a message to the conversation. The buyer writes by token (no ``author``); a merchant
    user only on its own merchant's disputes; staff anywhere. A message from the merchant or staff
    is emailed to the buyer. Raises ``InvalidDisputeInput``, ``DisputeClosed``,
    ``DisputeError`` (not a party)."""
    text = _clean_text(text, field="text", required_message=_("Write a message."))
    with transaction.atomic(durable=True):
        dispute = lock_objects.lock_dispute(dispute_id=dispute_id)
        _check_party(dispute=dispute, role=role, actor=author)
        if dispute.is_resolved:
            raise DisputeClosed(f"dispute {dispute.pk} is resolved")
        message = DisputeMessage.objects.create(
            dispute=dispute,
            author_role=role,
            author=author if role != Role.BUYER else None,
            text=text,
        )
        if role in (Role.MERCHANT, Role.STAFF):
            transaction.on_commit(
                partial(tasks.send_buyer_message_notice_task.delay, message_id=message.pk)
            )
    return message


def _check_party(*, dispute: Dispute, role: str, actor: User | None) -> None:
    """Defence in depth behind the views' scoping: the actor really is that party."""
    if role == Role.BUYER:
        return
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise DisputeError(f"no {role} user")
    if role == Role.STAFF:
        if not actor.is_staff:
            raise DisputeError(f"user {actor.pk} is not staff")
        return
    if role == Role.MERCHANT:
        merchant = merchant_for_user(actor)
        if merchant is None or merchant.pk != dispute.order.merchant_id:
            raise DisputeError(f"user {actor.pk} is not of the dispute's merchant")
        return
    raise DisputeError(f"unknown role {role!r}")


# --- the merchant contests ------------------------------------------------------------------------
def contest_dispute(
    *, dispute_id: int, actor: User, message: str, now: datetime | None = None
) -> Dispute:
    """The merchant disagrees, within its answer window: its message joins the conversation and
    the dispute goes to staff. Raises ``InvalidDisputeInput``, ``AnswerWindowClosed``,
    ``DisputeClosed``."""
    now = now or timezone.now()
    message = _clean_text(
        message, field="message", required_message=_("Say why you contest the dispute.")
    )
    with transaction.atomic(durable=True):
        dispute = lock_objects.lock_dispute(dispute_id=dispute_id)
        _check_party(dispute=dispute, role=Role.MERCHANT, actor=actor)
        _check_merchant_may_answer(dispute=dispute, now=now)
        # Told to the buyer through the "contested" event's email, not a second message email.
        DisputeMessage.objects.create(
            dispute=dispute, author_role=Role.MERCHANT, author=actor, text=message
        )
        dispute.escalated_at = now
        transition_dispute(
            dispute=dispute,
            to_status=Dispute.Status.ESCALATED,
            kind=DisputeEvent.Kind.CONTESTED,
            role=Role.MERCHANT,
            actor=actor,
            note=message,
            extra_fields=("escalated_at",),
        )
    return dispute


def _check_merchant_may_answer(*, dispute: Dispute, now: datetime) -> None:
    if dispute.is_resolved:
        raise DisputeClosed(f"dispute {dispute.pk} is resolved")
    if dispute.status not in (Dispute.Status.OPEN, Dispute.Status.AWAITING_MERCHANT):
        raise AnswerWindowClosed(f"dispute {dispute.pk} is {dispute.status}")
    if now > dispute.answer_due_at:
        raise AnswerWindowClosed(f"dispute {dispute.pk} was due {dispute.answer_due_at}")
    if DisputeDecision.objects.filter(dispute=dispute).exists():
        raise DecisionInProgress(f"dispute {dispute.pk} is being decided")


# --- escalation -----------------------------------------------------------------------------------
def escalate_overdue_disputes(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Hand staff every dispute the merchant left unanswered past ``answer_due_at``. Idempotent
    and safe to run twice at once: each dispute is re-checked under its lock; one short
    transaction per dispute."""
    now = now or timezone.now()
    escalated = 0
    seen: set[int] = set()
    while True:
        ids = list(
            Dispute.objects.filter(
                status__in=[Dispute.Status.OPEN, Dispute.Status.AWAITING_MERCHANT],
                answer_due_at__lt=now,
                decision__isnull=True,
            )
            .exclude(pk__in=seen)
            .order_by("answer_due_at", "id")
            .values_list("id", flat=True)[:batch_size]
        )
        for dispute_id in ids:
            seen.add(dispute_id)
            escalated += _escalate_one(dispute_id=dispute_id, now=now)
        if len(ids) < batch_size:
            return escalated


def _escalate_one(*, dispute_id: int, now: datetime) -> int:
    with transaction.atomic(durable=True):
        dispute = lock_objects.lock_dispute(dispute_id=dispute_id)
        if (
            dispute.status not in (Dispute.Status.OPEN, Dispute.Status.AWAITING_MERCHANT)
            or dispute.answer_due_at >= now
            or DisputeDecision.objects.filter(dispute=dispute).exists()
        ):
            return 0
        dispute.escalated_at = now
        transition_dispute(
            dispute=dispute,
            to_status=Dispute.Status.ESCALATED,
            kind=DisputeEvent.Kind.ESCALATED,
            role=Role.SYSTEM,
            note=f"no answer from the merchant within {settings.DISPUTE_ANSWER_HOURS} hours",
            extra_fields=("escalated_at",),
        )
    return 1


# --- decisions: replace, refund, reject -----------------------------------------------------------
def resolve_dispute(
    *,
    dispute_id: int,
    action: str,
    reason: str,
    actor: User,
    role: str,
    request_id: str,
    amount: Decimal | None = None,
    funded_by_platform: bool = False,
    key_index: int | None = None,
    now: datetime | None = None,
) -> Dispute:
    """Decide a dispute, once: ``replace`` the reported key (a new one from stock, the bad one
    burned), ``refund`` it (``amount=None``: everything still refundable; with
    ``funded_by_platform`` the guarantee fund pays first and the merchant's share is clawed back)
    or ``reject`` it, always with a written reason both sides see.

    The merchant (``role="merchant"``) may replace or refund within its answer window; staff may
    do anything while the dispute is unresolved. ``request_id`` is the caller's idempotency key:
    the same request again returns the same outcome (finishing it if it was interrupted).

    Locks: the order, then the dispute (then card keys for a replacement). Guarantees: one
    decision and one outcome per dispute however many people decide at once; a replacement is
    all or nothing; a refund is requested once. Raises ``InvalidDisputeInput``,
    ``DisputeClosed``, ``DecisionInProgress``, ``AnswerWindowClosed``,
    ``ReplacementNotPossible``, ``ReplacementOutOfStock``, ``RefundNotAllowed``."""
    now = now or timezone.now()
    reason = _clean_text(
        reason, field="reason", required_message=_("Write the reason both sides will see.")
    )
    _validate_decision(
        action=action, role=role, amount=amount, funded_by_platform=funded_by_platform
    )
    request_id = request_id.strip()[:80]
    if not request_id:
        raise DisputeError("a decision needs the caller's request id")
    replay = DisputeDecision.objects.filter(dispute_id=dispute_id, request_id=request_id).first()
    if replay is not None:
        return _complete_decision(decision_id=replay.pk)

    with transaction.atomic(durable=True):
        dispute = Dispute.objects.only("order_id").get(pk=dispute_id)
        order = order_locks.lock_order(order_id=dispute.order_id)
        dispute = lock_objects.lock_dispute(dispute_id=dispute_id)
        _check_party(dispute=dispute, role=role, actor=actor)
        existing = DisputeDecision.objects.filter(dispute=dispute).first()
        if existing is not None and existing.request_id == request_id:
            decision = existing  # a concurrent copy of this very request took it first
        else:
            if dispute.is_resolved:
                raise DisputeClosed(f"dispute {dispute.pk} is resolved")
            if existing is not None:
                raise DecisionInProgress(f"dispute {dispute.pk} is being decided")
            if role == Role.MERCHANT:
                _check_merchant_may_answer(dispute=dispute, now=now)
            decision = DisputeDecision.objects.create(
                dispute=dispute,
                action=action,
                amount=amount,
                funded_by_platform=funded_by_platform,
                reason=reason,
                decided_by=actor,
                decided_by_role=role,
                request_id=request_id,
            )
            if action == DisputeDecision.Action.REPLACE:
                decision.replacement = _replace_key(
                    order=order, dispute=dispute, key_index=key_index, now=now
                )
                _finish(dispute=dispute, decision=decision, resolution=Dispute.Resolution.REPLACED)
            elif action == DisputeDecision.Action.REJECT:
                _finish(dispute=dispute, decision=decision, resolution=Dispute.Resolution.REJECTED)
    if decision.completed_at is not None:
        return dispute
    # A refund: the refund service owns its transactions and calls the gateway, so it runs
    # after the decision is committed, never inside our lock.
    return _complete_decision(decision_id=decision.pk)


def _validate_decision(
    *, action: str, role: str, amount: Decimal | None, funded_by_platform: bool
) -> None:
    errors: dict[str, list[str]] = {}
    allowed: set[str] = set()
    if role == Role.MERCHANT:
        allowed = {DisputeDecision.Action.REPLACE, DisputeDecision.Action.REFUND}
    elif role == Role.STAFF:
        allowed = set(DisputeDecision.Action.values)
    if action not in allowed:
        errors["action"] = [_("Choose what to do.")]
    if amount is not None:
        if action != DisputeDecision.Action.REFUND:
            errors["amount"] = [_("An amount is for refunds only.")]
        elif amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
            errors["amount"] = [_("Enter a positive amount with at most two decimal places.")]
    if funded_by_platform and (role != Role.STAFF or action != DisputeDecision.Action.REFUND):
        errors["funded_by_platform"] = [_("Only staff can pay a refund from the guarantee fund.")]
    if errors:
        raise InvalidDisputeInput("invalid decision", errors=errors)


def _finish(*, dispute: Dispute, decision: DisputeDecision, resolution: str) -> None:
    """Inside the caller's transaction, with the dispute locked: record the outcome."""
    now = timezone.now()
    decision.completed_at = now
    decision.save(update_fields=["replacement", "refund", "completed_at"])
    dispute.resolution = resolution
    dispute.resolution_reason = decision.reason
    dispute.resolved_at = now
    transition_dispute(
        dispute=dispute,
        to_status=Dispute.Status.RESOLVED,
        kind=DisputeEvent.Kind.RESOLVED,
        role=decision.decided_by_role,
        actor=decision.decided_by,
        note=decision.reason,
        extra_fields=("resolution", "resolution_reason", "resolved_at"),
    )


def refund_request_id(decision: DisputeDecision) -> str:
    return f"dispute:{decision.dispute_id}:decision:{decision.pk}"


def _complete_decision(*, decision_id: int) -> Dispute:
    """Carry out a taken decision (for a refund: request it, then record the outcome). Safe to
    call again at any point: the refund id is derived from the decision."""
    decision = DisputeDecision.objects.select_related("dispute", "decided_by").get(pk=decision_id)
    if decision.completed_at is not None:
        return decision.dispute
    if decision.action != DisputeDecision.Action.REFUND:
        # Replace and reject complete in the transaction that takes them.
        raise DecisionInProgress(f"decision {decision.pk} is incomplete")
    dispute = decision.dispute
    try:
        refund = order_services.request_refund(
            request_id=refund_request_id(decision),
            order_id=dispute.order_id,
            reason=decision.reason,
            source="dispute",
            amount=decision.amount,
            actor=decision.decided_by,
            funded_by_platform=decision.funded_by_platform,
        )
    except RefundNotAllowed:
        # Nothing was refunded (no refund row exists under this id): free the dispute for another
        # decision.
        with transaction.atomic(durable=True):
            lock_objects.lock_dispute(dispute_id=dispute.pk)
            if not Refund.objects.filter(request_id=refund_request_id(decision)).exists():
                DisputeDecision.objects.filter(pk=decision.pk, completed_at__isnull=True).delete()
        raise
    with transaction.atomic(durable=True):
        order_locks.lock_order(order_id=dispute.order_id)
        dispute = lock_objects.lock_dispute(dispute_id=dispute.pk)
        decision = DisputeDecision.objects.select_related("decided_by").get(pk=decision.pk)
        if decision.completed_at is not None:
            return dispute
        decision.refund = refund
        _finish(dispute=dispute, decision=decision, resolution=_refund_resolution(refund))
    return dispute


def _refund_resolution(refund: Refund) -> str:
    """Refunded when, with this refund, everything the payment took goes back."""
    others = (
        Refund.objects.filter(payment_id=refund.payment_id, status__in=_COUNTED_REFUNDS)
        .exclude(pk=refund.pk)
        .aggregate(s=Sum("amount"))["s"]
    ) or Decimal(0)
    paid = refund.payment.amount
    if others + refund.amount >= paid:
        return Dispute.Resolution.REFUNDED
    return Dispute.Resolution.PARTIALLY_REFUNDED


def finish_stalled_decisions(*, now: datetime | None = None) -> int:
    """Finish refund decisions a crash left between the refund and its record. Idempotent."""
    now = now or timezone.now()
    finished = 0
    for decision_id in DisputeDecision.objects.filter(
        completed_at__isnull=True, created_at__lt=now - STALLED_DECISION_AGE
    ).values_list("id", flat=True)[:100]:
        try:
            _complete_decision(decision_id=decision_id)
        except CardvaultError as exc:
            logger.warning(
                "stalled dispute decision could not be finished",
                extra={"decision_id": decision_id, "error": type(exc).__name__},
            )
            continue
        finished += 1
    return finished


# --- replacement ----------------------------------------------------------------------------------
def _replace_key(
    *, order: Order, dispute: Dispute, key_index: int | None, now: datetime
) -> Delivery:
    """Inside the caller's transaction, with the order and dispute locked: sell a free key of the
    same product to this order (a new delivery) and burn the reported one, so it is never sold
    again. Raises ``ReplacementNotPossible``, ``ReplacementOutOfStock`` (the caller's
    transaction then rolls back: nothing changes)."""
    if (
        order.status not in selectors.DISPUTABLE_ORDER_STATUSES
        or order.product.delivery_mode != Product.DeliveryMode.AUTO
    ):
        raise ReplacementNotPossible(f"order {order.pk} is {order.status}")
    if key_index is not None:
        delivery: Delivery | None = _pick_delivery(order=order, key_index=key_index)
    else:
        delivery = dispute.delivery
    if delivery is None or delivery.card_key_id is None or delivery.shared:
        raise ReplacementNotPossible(f"dispute {dispute.pk}: no replaceable key chosen")
    bad = lock_objects.lock_sold_key(key_id=delivery.card_key_id, order_id=order.pk)
    if bad is None:
        raise ReplacementNotPossible(f"card key {delivery.card_key_id} is not sold to the order")
    new_key_id = _claim_replacement_key(product_id=order.product_id, order_id=order.pk, now=now)
    if new_key_id is None:
        raise ReplacementOutOfStock(f"product {order.product_id}: no free key")
    CardKey.objects.filter(pk=bad.pk).update(status=CardKey.Status.BURNED)
    if order.product.low_stock_threshold is not None:  # the replacement came out of stock
        webhook_services.check_low_stock_after_commit(product_id=order.product_id)
    return Delivery.objects.create(order=order, card_key_id=new_key_id)


def _claim_replacement_key(*, product_id: int, order_id: int, now: datetime) -> int | None:
    """One free key of the product, sold to the order; None if stock has none. The same claim as
    checkout's: ``SKIP LOCKED`` candidates, then a conditional update that re-checks freeness."""
    for _attempt in range(5):
        ids = order_locks.lock_free_key_ids(product_id=product_id, count=1, now=now)
        if not ids:
            return None
        if CardKey.objects.filter(order_locks.key_ids_still_free(ids, now)).update(
            status=CardKey.Status.SOLD, order_id=order_id, sold_at=now, reserved_until=None
        ):
            return ids[0]
    return None


# --- staff: the audited key reveal ----------------------------------------------------------------
def reveal_key(*, dispute_id: int, key_index: int, actor: User) -> str:
    """Show staff one delivered key of the disputed order. The audit row (who, when, which key)
    is committed before the plaintext is decrypted. Raises ``DisputeError`` (not staff),
    ``InvalidDisputeInput`` (no such key)."""
    dispute = Dispute.objects.select_related("order").get(pk=dispute_id)
    _check_party(dispute=dispute, role=Role.STAFF, actor=actor)
    deliveries = list(
        Delivery.objects.filter(order=dispute.order).order_by("id").values_list("id", flat=True)
    )
    if not 1 <= key_index <= len(deliveries):
        raise InvalidDisputeInput(
            "no such key", errors={"key_index": [_("Choose one of the order's keys.")]}
        )
    with transaction.atomic(durable=True):
        _record_event(
            dispute=dispute,
            kind=DisputeEvent.Kind.KEY_REVEALED,
            from_status=dispute.status,
            role=Role.STAFF,
            actor=actor,
            note=f"key #{key_index} (delivery {deliveries[key_index - 1]})",
        )
    keys = order_selectors.delivered_keys(order=dispute.order)
    return keys[key_index - 1].text
