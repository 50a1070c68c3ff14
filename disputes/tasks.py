"""Celery tasks: thin, idempotent, called with ids only."""

from smtplib import SMTPException

from celery import shared_task


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def notify_merchant_dispute_opened_task(*, dispute_id: int) -> bool:
    from disputes import notifications

    return notifications.notify_merchant_dispute_opened(dispute_id=dispute_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_buyer_event_notice_task(*, event_id: int) -> bool:
    from disputes import notifications

    return notifications.send_buyer_event_notice(event_id=event_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_buyer_message_notice_task(*, message_id: int) -> bool:
    from disputes import notifications

    return notifications.send_buyer_message_notice(message_id=message_id)


@shared_task
def escalate_overdue_disputes_task() -> int:
    """Beat job: escalate unanswered disputes, and finish decisions a crash interrupted."""
    from disputes import services

    escalated = services.escalate_overdue_disputes()
    services.finish_stalled_decisions()
    return escalated
