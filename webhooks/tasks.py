"""Celery tasks: thin, idempotent, called with ids only (never payloads, tokens or secrets)."""

from smtplib import SMTPException

from celery import shared_task

from webhooks.exceptions import TelegramError


@shared_task
def emit_event_task(*, event: str, object_id: int, key_suffix: str = "") -> int:
    from webhooks import services

    return len(services.emit_event(event=event, object_id=object_id, key_suffix=key_suffix))


@shared_task
def deliver_webhook_task(*, delivery_id: int) -> bool:
    """One attempt; failures are rescheduled in the database and picked up by the beat job
    ``retry_due_webhooks_task``, so the retry schedule survives worker restarts."""
    from webhooks import services

    return services.deliver(delivery_id=delivery_id) is not None


@shared_task
def retry_due_webhooks_task() -> int:
    from webhooks import services

    return services.retry_due_deliveries()


@shared_task
def purge_webhook_logs_task() -> int:
    from webhooks import services

    return services.purge_old_deliveries()


@shared_task
def check_low_stock_task(*, product_id: int) -> bool:
    from webhooks import services

    return services.check_low_stock(product_id=product_id)


@shared_task(
    autoretry_for=(SMTPException, OSError, TelegramError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_merchant_notice_task(*, kind: str, object_id: int, object_key: str, channel: str) -> bool:
    from webhooks import notifications

    return notifications.send_merchant_notice(
        kind=kind, object_id=object_id, object_key=object_key, channel=channel
    )


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_affiliate_notice_task(*, kind: str, object_id: int) -> bool:
    from affiliates import notifications

    if kind != notifications.WITHDRAWAL_DECIDED:
        raise ValueError(f"unknown affiliate notice {kind!r}")
    return notifications.send_withdrawal_decided(withdrawal_id=object_id)
