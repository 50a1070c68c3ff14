"""No answer in time: the beat job hands the dispute to staff, once, however often it runs; it
also finishes a decision a crash interrupted between the refund and its record."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from disputes import services, tasks
from disputes.models import Dispute, DisputeDecision, DisputeEvent
from orders.models import Refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(delivered, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    mail.outbox.clear()
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.AWAITING_MERCHANT
    return delivered, dispute


def test_the_beat_job_is_scheduled():
    entries = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "disputes.tasks.escalate_overdue_disputes_task" in entries


def test_nothing_is_escalated_inside_the_answer_window(waiting):
    _delivered, dispute = waiting
    assert services.escalate_overdue_disputes(now=dispute.answer_due_at) == 0
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.AWAITING_MERCHANT


def test_after_the_window_the_dispute_goes_to_staff_once(
    waiting, django_capture_on_commit_callbacks
):
    delivered, dispute = waiting
    later = dispute.answer_due_at + timedelta(seconds=1)

    with django_capture_on_commit_callbacks(execute=True):
        first = services.escalate_overdue_disputes(now=later)
        second = services.escalate_overdue_disputes(now=later + timedelta(hours=1))

    assert (first, second) == (1, 0)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.ESCALATED
    assert dispute.escalated_at == later
    events = DisputeEvent.objects.filter(kind="escalated")
    assert list(events.values_list("from_status", "to_status", "actor_role", "actor")) == [
        ("awaiting_merchant", "escalated", "system", None)
    ]
    assert "48 hours" in events.get().note
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [delivered.order.email]
    assert "did not answer" in mail.outbox[0].body


def test_the_celery_task_escalates_with_the_real_clock(waiting):
    _delivered, dispute = waiting
    Dispute.objects.filter(pk=dispute.pk).update(answer_due_at=timezone.now() - timedelta(1))
    assert tasks.escalate_overdue_disputes_task.delay().get() == 1
    assert tasks.escalate_overdue_disputes_task.delay().get() == 0
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.ESCALATED


def test_an_open_dispute_whose_notice_never_went_out_is_escalated_too(delivered):
    # The owner has no email: the notice is never sent, the dispute stays "open".
    owner = delivered.order.merchant.owner
    owner.email = ""
    owner.save()
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN
    assert services.escalate_overdue_disputes(now=dispute.answer_due_at + timedelta(1)) == 1
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.ESCALATED


def test_a_dispute_being_decided_is_not_escalated(waiting, staff):
    _delivered, dispute = waiting
    DisputeDecision.objects.create(
        dispute=dispute,
        action="refund",
        reason="r",
        decided_by=staff,
        decided_by_role="staff",
        request_id="in-flight",
    )
    assert services.escalate_overdue_disputes(now=dispute.answer_due_at + timedelta(1)) == 0
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.AWAITING_MERCHANT


def test_a_decision_interrupted_after_the_refund_is_finished_once(waiting, staff):
    _delivered, dispute = waiting

    # The worker dies right after the refund went through, before the outcome is recorded.
    with (
        mock.patch("disputes.services._finish", side_effect=SystemExit("killed")),
        pytest.raises(SystemExit),
    ):
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="Broken key.",
            actor=staff,
            role="staff",
            request_id="req-1",
        )
    assert Refund.objects.count() == 1
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.AWAITING_MERCHANT

    # Too fresh to be called stalled: left alone.
    assert services.finish_stalled_decisions() == 0
    later = timezone.now() + timedelta(minutes=11)
    assert services.finish_stalled_decisions(now=later) == 1
    assert services.finish_stalled_decisions(now=later) == 0

    dispute.refresh_from_db()
    assert dispute.resolution == Dispute.Resolution.REFUNDED
    assert Refund.objects.count() == 1
    assert Refund.objects.get().amount == Decimal("10.00")
    assert DisputeEvent.objects.filter(kind="resolved").count() == 1
    # The same request again returns the outcome, no second refund.
    again = services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        reason="Broken key.",
        actor=staff,
        role="staff",
        request_id="req-1",
    )
    assert again.resolution == Dispute.Resolution.REFUNDED
    assert Refund.objects.count() == 1
