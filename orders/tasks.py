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


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_refund_notice_task(*, refund_id: int) -> bool:
    from orders import notifications

    return notifications.send_refund_notice(refund_id=refund_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_gateway_alert_task(*, alert_id: int) -> bool:
    from orders import notifications

    return notifications.send_gateway_alert(alert_id=alert_id)


@shared_task
def refund_payment_task(*, payment_id: int, request_id: str, reason: str) -> int:
    """An automatic refund (late or duplicate payment); idempotent on ``request_id``."""
    from orders import services
    from orders.models import Payment

    payment = Payment.objects.get(pk=payment_id)
    refund = services.request_refund(
        request_id=request_id,
        order_id=payment.order_id,
        payment_id=payment.pk,
        reason=reason,
        source="automatic",
    )
    return refund.pk


@shared_task
def check_pending_refund_task(*, refund_id: int) -> str:
    """A gateway reported a change to a pending refund: ask it now; idempotent."""
    from orders import services

    return services.check_pending_refund(refund_id=refund_id)


@shared_task
def reconcile_payments_task() -> int:
    from orders import services

    return services.reconcile_pending_payments()


@shared_task
def repair_paid_orders_task() -> int:
    from orders import services

    return services.repair_paid_orders()


@shared_task
def check_gateway_health_task() -> int:
    from orders import services

    return len(services.check_gateway_health())


@shared_task
def anonymise_buyer_data_task() -> int:
    from orders import privacy

    return privacy.anonymise_settled_orders()
