"""Two people deciding one dispute at the same instant: one outcome, one refund. Real threads,
real PostgreSQL transactions, no wrapping test transaction."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import close_old_connections

from disputes import services
from disputes.exceptions import DecisionInProgress, DisputeClosed
from disputes.models import Dispute, DisputeDecision, DisputeEvent
from ledger import selectors as ledger_selectors
from orders.models import Order, Refund
from shop.models import CardKey
from tests.conftest import assert_real_postgres_transactions
from tests.disputes.factories import StaffFactory
from tests.orders.test_races import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def decide(dispute_id: int, staff_id: int, *, action: str, request_id: str, amount=None):
    close_old_connections()
    from django.contrib.auth import get_user_model

    return services.resolve_dispute(
        dispute_id=dispute_id,
        action=action,
        reason=f"decided by {staff_id}",
        actor=get_user_model().objects.get(pk=staff_id),
        role="staff",
        request_id=request_id,
        amount=amount,
    )


def assert_one_outcome(dispute_id: int, results) -> Dispute:
    winners = [r for r in results if isinstance(r, Dispute)]
    losers = [r for r in results if not isinstance(r, Dispute)]
    assert len(winners) == 1, results
    assert all(isinstance(e, DecisionInProgress | DisputeClosed) for e in losers), losers
    dispute = Dispute.objects.get(pk=dispute_id)
    assert dispute.status == Dispute.Status.RESOLVED
    assert DisputeDecision.objects.filter(dispute=dispute).count() == 1
    assert DisputeEvent.objects.filter(dispute=dispute, kind="resolved").count() == 1
    assert ledger_selectors.unbalanced_journal_ids() == []
    return dispute


@pytest.fixture
def case(delivered):
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    return delivered.order, dispute, [StaffFactory().pk for _ in range(4)]


@pytest.mark.parametrize("round_number", range(3))
def test_two_staff_refunding_at_once_refund_once(case, round_number):
    assert_real_postgres_transactions()
    order, dispute, staff_ids = case

    results = run_together(
        2,
        lambda i: decide(
            dispute.pk, staff_ids[i], action="refund", request_id=f"form-{round_number}-{i}"
        ),
    )

    resolved = assert_one_outcome(dispute.pk, results)
    assert resolved.resolution == Dispute.Resolution.REFUNDED
    assert Refund.objects.filter(order=order).count() == 1
    assert Refund.objects.get(order=order).amount == Decimal("10.00")
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED


def test_refund_against_reject_and_replace_gives_exactly_one_outcome(case):
    assert_real_postgres_transactions()
    order, dispute, staff_ids = case
    actions = ["refund", "reject", "replace", "refund"]

    results = run_together(
        4, lambda i: decide(dispute.pk, staff_ids[i], action=actions[i], request_id=f"f{i}")
    )

    resolved = assert_one_outcome(dispute.pk, results)
    refunds = Refund.objects.filter(order=order).count()
    burned = CardKey.objects.filter(status=CardKey.Status.BURNED).count()
    deliveries = order.deliveries.count()
    expected = {
        Dispute.Resolution.REFUNDED: (1, 0, 1),
        Dispute.Resolution.REJECTED: (0, 0, 1),
        Dispute.Resolution.REPLACED: (0, 1, 2),
    }[resolved.resolution]
    assert (refunds, burned, deliveries) == expected


def test_the_same_request_sent_twice_at_once_refunds_once(case):
    assert_real_postgres_transactions()
    order, dispute, staff_ids = case

    results = run_together(
        2,
        lambda _i: decide(
            dispute.pk,
            staff_ids[0],
            action="refund",
            request_id="double-click",
            amount=Decimal("4.00"),
        ),
    )

    # Both copies of the one request get its outcome (or one is told it is in progress).
    assert any(isinstance(r, Dispute) for r in results), results
    assert all(isinstance(r, Dispute | DecisionInProgress) for r in results), results
    dispute.refresh_from_db()
    assert dispute.resolution == Dispute.Resolution.PARTIALLY_REFUNDED
    assert Refund.objects.filter(order=order).count() == 1
    assert DisputeEvent.objects.filter(dispute=dispute, kind="resolved").count() == 1


def test_merchant_answer_and_escalation_race(case):
    """The merchant refunds at the last second while the escalation job runs: either the refund
    wins (resolved) or the escalation (the merchant is told staff decide now), never both."""
    assert_real_postgres_transactions()
    order, dispute, _staff_ids = case
    merchant_user_id = order.merchant.owner_id
    due = dispute.answer_due_at

    def work(i: int):
        close_old_connections()
        if i == 0:
            return services.escalate_overdue_disputes(now=due + timedelta(seconds=1))
        from django.contrib.auth import get_user_model

        return services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="sorry",
            actor=get_user_model().objects.get(pk=merchant_user_id),
            role="merchant",
            request_id="m",
            now=due,
        )

    escalated, answered = run_together(2, work)

    dispute.refresh_from_db()
    if isinstance(answered, Dispute):
        assert escalated == 0
        assert dispute.resolution == Dispute.Resolution.REFUNDED
        assert Refund.objects.count() == 1
    else:
        assert escalated == 1, answered
        assert type(answered).__name__ == "AnswerWindowClosed"
        assert dispute.status == Dispute.Status.ESCALATED
        assert Refund.objects.count() == 0
