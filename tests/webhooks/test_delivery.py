"""Outgoing webhooks: signature, retries with backoff, the delivery log, resend, idempotency,
SSRF refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.conftest import place
from tests.webhooks.conftest import buy
from webhooks import services, signing, targets, tasks
from webhooks.exceptions import UnsafeWebhookTarget
from webhooks.models import WebhookAttempt, WebhookDelivery

pytestmark = pytest.mark.django_db


def test_receiver_can_verify_the_signature_and_timestamp(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    before = int(time.time())
    order = buy(stocked_product, django_capture_on_commit_callbacks)

    assert receiver.events() == ["order.paid", "order.delivered"]
    secret = endpoint.get_secret()
    for request in receiver.requests:
        header = request.headers[signing.SIGNATURE_HEADER]
        parts = dict(item.split("=", 1) for item in header.split(","))
        # What a receiver does, written independently of our signing module.
        expected = hmac.new(
            secret.encode(), f"{parts['t']}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(parts["v1"], expected)
        assert before <= int(parts["t"]) <= int(time.time())
        assert signing.verify_signature(secret=secret, body=request.body, header=header)
        payload = json.loads(request.body)
        assert payload["data"]["order"]["number"] == order.number
        assert request.headers[signing.EVENT_HEADER] == payload["event"]
    # Tampered body, wrong secret and stale timestamp all fail.
    first = receiver.requests[0]
    header = first.headers[signing.SIGNATURE_HEADER]
    assert not signing.verify_signature(secret=secret, body=first.body + b" ", header=header)
    assert not signing.verify_signature(secret="other", body=first.body, header=header)
    assert not signing.verify_signature(
        secret=secret, body=first.body, header=header, now=time.time() + 301
    )


def test_failed_delivery_is_retried_with_backoff_until_it_succeeds(
    stocked_product, endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    receiver.codes = [500, 503, 200]
    endpoint.events = ["order.delivered"]
    endpoint.save(update_fields=["events"])

    buy(stocked_product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
    first_wait = delivery.next_attempt_at - timezone.now()
    assert timedelta(seconds=28) < first_wait <= timedelta(seconds=30)

    # Not due yet: the beat job sends nothing.
    assert services.retry_due_deliveries() == 0
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=True):
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.retry_due_webhooks_task() == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 2, 503)
        second_wait = delivery.next_attempt_at - timezone.now()
        assert timedelta(seconds=58) < second_wait <= timedelta(seconds=60)
    later = timezone.now() + timedelta(seconds=95)
    with (
        time_machine.travel(later, tick=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.retry_due_webhooks_task() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    assert delivery.next_attempt_at is None
    log = list(
        WebhookAttempt.objects.filter(delivery=delivery).values_list(
            "number", "response_code", "response_excerpt"
        )
    )
    assert log == [(1, 500, "answer 1"), (2, 503, "answer 2"), (3, 200, "answer 3")]
    assert len(receiver.requests) == 3
    assert len({r.headers[signing.DELIVERY_HEADER] for r in receiver.requests}) == 1


def test_retry_schedule_doubles_and_is_capped(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_MAX_SECONDS = 300
    waits = [services.retry_delay(n).total_seconds() for n in range(1, 7)]
    assert waits == [30, 60, 120, 240, 300, 300]


def test_delivery_gives_up_after_max_attempts(
    stocked_product, endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.codes = [500]
    endpoint.events = ["order.delivered"]
    endpoint.save(update_fields=["events"])
    buy(stocked_product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    with time_machine.travel(timezone.now() + timedelta(hours=1), tick=True):
        assert services.deliver(delivery_id=delivery.pk) is not None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 2, None)
    assert services.retry_due_deliveries(now=timezone.now() + timedelta(days=1)) == 0


def test_duplicated_tasks_send_once(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    receiver.codes = [200]
    order = buy(stocked_product, django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 2

    # The same emit task delivered again by Celery creates and sends nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        tasks.emit_event_task(event="order.paid", object_id=order.pk)
        tasks.emit_event_task(event="order.delivered", object_id=order.pk)
    delivery = WebhookDelivery.objects.get(event="order.paid")
    assert tasks.deliver_webhook_task(delivery_id=delivery.pk) is False
    assert WebhookDelivery.objects.count() == 2
    assert len(receiver.requests) == 2


def test_a_claimed_delivery_is_not_sent_twice(stocked_product, endpoint, receiver):
    """Two workers holding the same message: the first claim wins, the second sends nothing."""
    order = place(stocked_product).order
    [delivery_id] = services.emit_event(event="order.paid", object_id=order.pk)
    assert services._claim(delivery_id=delivery_id, now=timezone.now()) is True

    assert services.deliver(delivery_id=delivery_id) is None
    assert receiver.requests == []


def test_resend_sends_the_same_delivery_again(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint.events = ["order.paid"]
    endpoint.save(update_fields=["events"])
    buy(stocked_product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "succeeded"

    with django_capture_on_commit_callbacks(execute=True):
        services.resend_delivery(delivery=delivery)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert delivery.attempt_log.count() == 2
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    ids = {r.headers[signing.DELIVERY_HEADER] for r in receiver.requests}
    assert ids == {str(delivery.pk)}


def test_inactive_or_unsubscribed_endpoints_get_nothing(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint.is_active = False
    endpoint.save(update_fields=["is_active"])
    buy(stocked_product, django_capture_on_commit_callbacks)
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "https://user:pw@example.com/hook",
    ],
)
def test_private_and_non_http_targets_are_refused_in_production(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(UnsafeWebhookTarget):
        targets.check_url(url, resolve=True)


def test_public_literal_addresses_are_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    targets.check_url("https://93.184.216.34/hook", resolve=True)


def test_a_private_target_fails_the_delivery_without_any_request(
    stocked_product, endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    endpoint.events = ["order.paid"]
    endpoint.save(update_fields=["events"])
    buy(stocked_product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.response_code is None
    assert delivery.last_error.startswith("refused target")
    assert receiver.requests == []


def test_creating_an_endpoint_refuses_private_targets(merchant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(UnsafeWebhookTarget):
        services.create_endpoint(merchant=merchant, url="http://10.1.2.3/x", events=["order.paid"])
    endpoint = services.create_endpoint(
        merchant=merchant, url="https://hooks.example.com/x", events=["order.paid", "bogus"]
    )
    assert endpoint.events == ["order.paid"]
    assert len(endpoint.get_secret()) >= 40
    assert endpoint.get_secret().encode() not in bytes(endpoint.secret_ciphertext)
