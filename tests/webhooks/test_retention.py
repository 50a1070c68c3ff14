"""Old webhook deliveries and their attempt logs are deleted by a beat job after
``WEBHOOK_LOG_RETENTION_DAYS``; a delivery still pending a retry is never deleted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from config.celery import app
from webhooks import services, tasks
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

SUCCEEDED = WebhookDelivery.Status.SUCCEEDED
FAILED = WebhookDelivery.Status.FAILED
PENDING = WebhookDelivery.Status.PENDING


@pytest.fixture
def hook(merchant) -> WebhookEndpoint:
    return services.create_endpoint(
        merchant=merchant, url="https://hooks.example.com/in", events=["order.paid"]
    )


def delivery(hook: WebhookEndpoint, *, n: int, status: str, age_days: int) -> WebhookDelivery:
    row = WebhookDelivery.objects.create(
        endpoint=hook,
        merchant=hook.merchant,
        event="order.paid",
        event_key=f"order.paid:{n}",
        payload={"id": f"order.paid:{n}"},
        status=status,
        attempts=2,
        next_attempt_at=timezone.now() if status == PENDING else None,
    )
    for number in (1, 2):
        WebhookAttempt.objects.create(delivery=row, number=number, response_code=500)
    # created_at is auto_now_add: age the row afterwards.
    WebhookDelivery.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(days=age_days)
    )
    return row


def test_finished_deliveries_past_retention_are_deleted_with_their_attempts(hook, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 30
    old_ok = delivery(hook, n=1, status=SUCCEEDED, age_days=31)
    old_failed = delivery(hook, n=2, status=FAILED, age_days=400)
    old_pending = delivery(hook, n=3, status=PENDING, age_days=400)
    recent = delivery(hook, n=4, status=FAILED, age_days=29)

    deleted = services.purge_old_deliveries()

    assert deleted == 2
    kept = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert kept == {old_pending.pk, recent.pk}
    assert not WebhookAttempt.objects.filter(delivery_id__in=[old_ok.pk, old_failed.pk]).exists()
    assert WebhookAttempt.objects.filter(delivery=old_pending).count() == 2
    assert WebhookAttempt.objects.filter(delivery=recent).count() == 2


def test_a_second_run_deletes_nothing(hook, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 90
    delivery(hook, n=1, status=SUCCEEDED, age_days=91)
    delivery(hook, n=2, status=PENDING, age_days=91)

    assert services.purge_old_deliveries() == 1
    assert services.purge_old_deliveries() == 0
    assert WebhookDelivery.objects.filter(status=PENDING).count() == 1


def test_purge_works_through_the_backlog_in_batches(hook, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 90
    for n in range(5):
        delivery(hook, n=n, status=SUCCEEDED, age_days=100)
    delivery(hook, n=99, status=PENDING, age_days=100)

    assert services.purge_old_deliveries(batch_size=2) == 5
    assert list(WebhookDelivery.objects.values_list("event_key", flat=True)) == ["order.paid:99"]
    assert WebhookAttempt.objects.count() == 2


def test_a_resent_old_delivery_is_kept(hook, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 90
    old = delivery(hook, n=1, status=FAILED, age_days=120)
    services.resend_delivery(delivery=old)

    assert services.purge_old_deliveries() == 0
    assert WebhookDelivery.objects.filter(pk=old.pk, status=PENDING).exists()


def test_retention_job_is_scheduled_and_registered(hook, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 90
    delivery(hook, n=1, status=SUCCEEDED, age_days=91)
    entries = [
        entry
        for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "webhooks.tasks.purge_webhook_logs_task"
    ]

    assert len(entries) == 1
    assert "webhooks.tasks.purge_webhook_logs_task" in app.tasks
    assert tasks.purge_webhook_logs_task.delay().get() == 1
    assert WebhookDelivery.objects.count() == 0
