"""Reads of the disputes app: what each party may see, the staff queue and case file, and the
rates risk control uses (a merchant's invalid-key and dispute rates, a batch's defect rate).

Merchant-facing reads are scoped through ``*_for_merchant``; buyer-facing reads take the order the
page token opened. Nothing here decrypts a key: the staff reveal goes through
``disputes.services.reveal_key``, which audits it first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from disputes.models import (
    BUYER_VISIBLE_EVENTS,
    OPEN_STATUSES,
    Dispute,
    DisputeDecision,
    DisputeEvent,
    DisputeKeyReport,
    DisputeMessage,
)
from merchants.models import Merchant
from orders.models import Delivery, Order, Refund
from shop.models import CardKey

# Kept under this name: settlement (ledger) and data retention (orders.privacy) import it.
OPEN_STATES = tuple(OPEN_STATUSES)
DISPUTABLE_ORDER_STATUSES = (Order.Status.DELIVERED, Order.Status.PARTIALLY_REFUNDED)
INVALID_KEY_REASONS = (Dispute.Reason.KEY_INVALID, Dispute.Reason.KEY_USED)


def order_ids_with_open_disputes(*, order_ids: Iterable[int]) -> set[int]:
    return set(
        Dispute.objects.filter(order_id__in=list(order_ids), status__in=OPEN_STATES).values_list(
            "order_id", flat=True
        )
    )


# --- the buyer ---------------------------------------------------------------------------------
def window_closes_at(order: Order) -> datetime | None:
    if order.delivered_at is None:
        return None
    return order.delivered_at + timedelta(days=settings.DISPUTE_WINDOW_DAYS)


def answer_due_from(opened_at: datetime) -> datetime:
    return opened_at + timedelta(hours=settings.DISPUTE_ANSWER_HOURS)


def disputes_for_order(*, order: Order) -> list[Dispute]:
    return list(Dispute.objects.filter(order=order).order_by("-created_at", "-id"))


def delivery_count(*, order: Order) -> int:
    return Delivery.objects.filter(order=order).count()


def get_dispute_for_order(*, order: Order, dispute_id: int) -> Dispute | None:
    """A dispute of the order the buyer's token opened, with what its page shows, in a fixed
    number of queries whatever the length of the conversation."""
    return (
        Dispute.objects.filter(order=order, pk=dispute_id)
        .select_related("order", "order__merchant", "order__product", "decision")
        .prefetch_related(
            Prefetch("messages", queryset=DisputeMessage.objects.order_by("created_at", "id")),
            Prefetch(
                "events",
                queryset=DisputeEvent.objects.filter(kind__in=BUYER_VISIBLE_EVENTS).order_by(
                    "created_at", "id"
                ),
                to_attr="buyer_events",
            ),
        )
        .first()
    )


def replacement_index(*, dispute: Dispute) -> int | None:
    """The position on the order page of the key that replaced the reported one."""
    decision = getattr(dispute, "decision", None)
    if decision is None or decision.replacement_id is None:
        return None
    return Delivery.objects.filter(
        order_id=dispute.order_id, id__lte=decision.replacement_id
    ).count()


def decision_refund(*, dispute: Dispute) -> Refund | None:
    """The refund a dispute was decided with, as it stands now (it may still be pending at the
    gateway, or have failed there after the dispute was marked resolved)."""
    decision = (
        DisputeDecision.objects.filter(dispute=dispute, refund__isnull=False)
        .select_related("refund")
        .first()
    )
    return decision.refund if decision is not None else None


# --- the merchant ------------------------------------------------------------------------------
def disputes_for_merchant(*, merchant: Merchant) -> QuerySet[Dispute]:
    return Dispute.objects.filter(order__merchant=merchant)


def get_dispute_for_merchant(*, merchant: Merchant, dispute_id: int) -> Dispute | None:
    return (
        disputes_for_merchant(merchant=merchant)
        .select_related("order", "order__product")
        .filter(pk=dispute_id)
        .first()
    )


def conversation(*, dispute: Dispute) -> list[DisputeMessage]:
    return list(dispute.messages.select_related("author").order_by("created_at", "id"))


def timeline(*, dispute: Dispute, staff: bool) -> list[DisputeEvent]:
    events = dispute.events.select_related("actor").order_by("created_at", "id")
    if not staff:
        events = events.filter(kind__in=BUYER_VISIBLE_EVENTS)
    return list(events)


def merchant_may_answer(*, dispute: Dispute, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        dispute.status in (Dispute.Status.OPEN, Dispute.Status.AWAITING_MERCHANT)
        and now <= dispute.answer_due_at
        and not DisputeDecision.objects.filter(dispute=dispute).exists()
    )


@dataclass(frozen=True, slots=True)
class DeliveredKeyRow:
    """A delivered key as staff and merchants see it: position and provenance, no plaintext."""

    index: int
    delivery_id: int
    card_key_id: int | None
    key_status: str
    batch_id: int | None
    shared: bool
    replaceable: bool


def delivered_key_rows(*, order: Order) -> list[DeliveredKeyRow]:
    rows = []
    deliveries = Delivery.objects.filter(order=order).select_related("card_key").order_by("id")
    for index, delivery in enumerate(deliveries, start=1):
        key = delivery.card_key
        rows.append(
            DeliveredKeyRow(
                index=index,
                delivery_id=delivery.pk,
                card_key_id=key.pk if key is not None else None,
                key_status=key.status if key is not None else "",
                batch_id=key.batch_id if key is not None else None,
                shared=delivery.shared,
                replaceable=key is not None
                and not delivery.shared
                and key.status == CardKey.Status.SOLD,
            )
        )
    return rows


# --- rates ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    base: int

    @property
    def rate(self) -> Decimal | None:
        """``count / base`` to four places; None when nothing was sold yet."""
        if not self.base:
            return None
        return (Decimal(self.count) / Decimal(self.base)).quantize(Decimal("0.0001"))

    @property
    def percent(self) -> str:
        rate = self.rate
        return "—" if rate is None else f"{rate * 100:.1f}%"


_SOLD = (CardKey.Status.SOLD, CardKey.Status.BURNED)  # a burned key was sold before it burned


def _defective_q() -> Q:
    return Q(status=CardKey.Status.BURNED) | Q(dispute_reports__isnull=False)


def batch_defect_rate(*, batch_id: int) -> Rate:
    """Keys of an import batch that turned out bad (burned, or reported invalid or used) over
    the keys of it that were sold."""
    keys = CardKey.objects.filter(batch_id=batch_id)
    return Rate(
        count=keys.filter(_defective_q()).values("id").distinct().count(),
        base=keys.filter(status__in=_SOLD).count(),
    )


def merchant_invalid_key_rate(*, merchant_id: int, since: datetime | None = None) -> Rate:
    """Distinct keys of the merchant reported invalid or used (or burned) over its keys sold."""
    keys = CardKey.objects.filter(merchant_id=merchant_id)
    if since is not None:
        keys = keys.filter(sold_at__gte=since)
    return Rate(
        count=keys.filter(_defective_q()).values("id").distinct().count(),
        base=keys.filter(status__in=_SOLD).count(),
    )


def merchant_dispute_rate(*, merchant_id: int, since: datetime | None = None) -> Rate:
    """Orders of the merchant that got a dispute over its delivered orders."""
    orders = Order.objects.filter(merchant_id=merchant_id, delivered_at__isnull=False)
    if since is not None:
        orders = orders.filter(delivered_at__gte=since)
    return Rate(
        count=orders.filter(disputes__isnull=False).values("id").distinct().count(),
        base=orders.count(),
    )


@dataclass(frozen=True, slots=True)
class MerchantDisputeHistory:
    total: int
    open: int
    outcomes: dict[str, int]  # resolution label → count
    invalid_key_rate: Rate
    dispute_rate: Rate


def merchant_dispute_history(*, merchant_id: int) -> MerchantDisputeHistory:
    rows = (
        Dispute.objects.filter(order__merchant_id=merchant_id)
        .values("status", "resolution")
        .annotate(n=Count("id"))
    )
    total = 0
    still_open = 0
    outcomes: Counter[str] = Counter()
    labels = dict(Dispute.Resolution.choices)
    for row in rows:
        total += row["n"]
        if row["status"] in OPEN_STATES:
            still_open += row["n"]
        elif row["resolution"]:
            outcomes[str(labels.get(row["resolution"], row["resolution"]))] += row["n"]
    return MerchantDisputeHistory(
        total=total,
        open=still_open,
        outcomes=dict(sorted(outcomes.items())),
        invalid_key_rate=merchant_invalid_key_rate(merchant_id=merchant_id),
        dispute_rate=merchant_dispute_rate(merchant_id=merchant_id),
    )


# --- staff ----------------------------------------------------------------------------------------
def staff_queue() -> QuerySet[Dispute]:
    """Everything still open, oldest first: what staff work through."""
    return (
        Dispute.objects.filter(status__in=OPEN_STATES)
        .select_related("order", "order__merchant")
        .order_by("created_at", "id")
    )


@dataclass(frozen=True, slots=True)
class BatchDefects:
    batch_id: int
    rate: Rate


@dataclass(frozen=True, slots=True)
class StaffCase:
    """Everything staff weigh in one dispute, without any key's plaintext."""

    dispute: Dispute
    keys: list[DeliveredKeyRow]
    batches: list[BatchDefects]
    messages: list[DisputeMessage]
    events: list[DisputeEvent]
    history: MerchantDisputeHistory
    refunds: list[Refund]
    decision: DisputeDecision | None


def staff_case(*, dispute: Dispute) -> StaffCase:
    keys = delivered_key_rows(order=dispute.order)
    batch_ids = sorted({row.batch_id for row in keys if row.batch_id is not None})
    return StaffCase(
        dispute=dispute,
        keys=keys,
        batches=[BatchDefects(batch_id=b, rate=batch_defect_rate(batch_id=b)) for b in batch_ids],
        messages=conversation(dispute=dispute),
        events=timeline(dispute=dispute, staff=True),
        history=merchant_dispute_history(merchant_id=dispute.order.merchant_id),
        refunds=list(dispute.order.refunds.order_by("created_at")),
        decision=DisputeDecision.objects.filter(dispute=dispute).select_related("refund").first(),
    )


def key_reports(*, dispute: Dispute) -> list[DisputeKeyReport]:
    return list(dispute.key_reports.order_by("id"))
