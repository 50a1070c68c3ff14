"""Celery tasks of the merchants app: thin, idempotent, called with ids only."""

from smtplib import SMTPException

from celery import shared_task


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_application_decision_task(*, application_id: int) -> bool:
    from merchants import notifications

    return notifications.send_application_decision(application_id=application_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_inspection_alert_task(*, report_id: int) -> bool:
    from merchants import notifications

    return notifications.send_inspection_alert(report_id=report_id)


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def send_suspension_notice_task(*, inspection_id: int) -> bool:
    from merchants import notifications

    return notifications.send_suspension_notice(inspection_id=inspection_id)


@shared_task
def inspect_merchants_task() -> int:
    """The daily inspection; scheduled hourly, it does the day's work once."""
    from merchants import services

    return services.run_daily_inspection().pk


@shared_task
def flush_product_views_task() -> int:
    """Copy the product page view counters from Redis into ProductViewDay (idempotent)."""
    from merchants import services

    return services.flush_product_views()
