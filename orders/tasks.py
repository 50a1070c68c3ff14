"""Celery tasks: thin, idempotent, called with ids only (never keys or tokens in a payload)."""

from smtplib import SMTPException

from celery import shared_task


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_order_receipt_task(*, order_id: int) -> bool:
    from orders import notifications

    return notifications.send_order_receipt(order_id=order_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def notify_merchant_order_paid_task(*, order_id: int) -> bool:
    from orders import notifications

    return notifications.notify_merchant_order_paid(order_id=order_id)


@shared_task
def expire_pending_orders_task() -> int:
    from orders import services

    return services.expire_pending_orders()
