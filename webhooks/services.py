"""Writes of the webhooks app: emitting events, delivering and re-sending webhooks, low-stock
crossings, endpoints and notification settings.

Other apps' services call the ``*_after_commit`` helpers inside their transactions; nothing is
queued for a transaction that rolls back. Webhook HTTP is never sent while a row lock is held:
a delivery is claimed with a conditional update (a lease), sent, then its outcome is written.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime, timedelta
from functools import partial

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from merchants.models import Merchant
from webhooks import lock_objects, selectors, signing, targets, tasks, transport
from webhooks.exceptions import TargetDoesNotResolve, UnsafeWebhookTarget
from webhooks.models import (
    LowStockState,
    NotificationSettings,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

DELIVERY_LEASE = timedelta(minutes=2)
RESPONSE_EXCERPT_CHARS = 500


# --- emitting -------------------------------------------------------------------------------
def emit_after_commit(*, event: str, object_id: int) -> None:
    """Queue ``event`` about ``object_id`` once the caller's transaction commits."""
    transaction.on_commit(partial(tasks.emit_event_task.delay, event=event, object_id=object_id))


def check_low_stock_after_commit(*, product_id: int) -> None:
    transaction.on_commit(partial(tasks.check_low_stock_task.delay, product_id=product_id))


def emit_event(*, event: str, object_id: int, key_suffix: str = "") -> list[int]:
    """Create one delivery per active endpoint subscribed to ``event`` and queue them. The
    delivery's ``event_key`` is unique per endpoint, so emitting the same event again (a task
    delivered twice) creates nothing new. Also queues the merchant notices the event calls for.
    Returns the ids of the event's deliveries."""
    from webhooks import notifications

    found = selectors.event_data(event=event, object_id=object_id)
    event_key = f"{event}:{object_id}{key_suffix}"
    endpoints = selectors.subscribed_endpoints(merchant_id=found.merchant_id, event=event)
    now = timezone.now()
    payload = {
        "id": event_key,
        "event": event,
        "created_at": now.isoformat(),
        "data": found.data,
    }
    with transaction.atomic(durable=True):
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint=endpoint,
                    merchant_id=found.merchant_id,
                    event=event,
                    event_key=event_key,
                    payload=payload,
                    next_attempt_at=now,
                )
                for endpoint in endpoints
            ],
            ignore_conflicts=True,
        )
        delivery_ids = list(
            WebhookDelivery.objects.filter(
                event_key=event_key,
                endpoint__in=endpoints,
                status=WebhookDelivery.Status.PENDING,
                attempts=0,
            ).values_list("id", flat=True)
        )
        for delivery_id in delivery_ids:
            transaction.on_commit(
                partial(tasks.deliver_webhook_task.delay, delivery_id=delivery_id)
            )
        notifications.queue_event_notices(
            event=event,
            object_id=object_id,
            object_key=f"{object_id}{key_suffix}",
            merchant_id=found.merchant_id,
        )
    return delivery_ids


# --- delivering -----------------------------------------------------------------------------
def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: base × 2^(attempts−1), capped."""
    seconds = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.WEBHOOK_RETRY_MAX_SECONDS))


def encode_payload(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _claim(*, delivery_id: int, now: datetime) -> bool:
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + DELIVERY_LEASE)
    )


def deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a due delivery. Claims it first (a conditional update), so a task
    delivered twice, or the beat job and a task at once, send it once; ``None`` if it was not
    due or someone else holds it. Records the attempt in the log; on a 2xx the delivery
    succeeds, otherwise it is retried after ``retry_delay`` until ``WEBHOOK_MAX_ATTEMPTS``."""
    now = timezone.now()
    if not _claim(delivery_id=delivery_id, now=now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    code: int | None = None
    excerpt = error = ""
    permanent = False
    started = time.monotonic()
    if not endpoint.is_active:
        error, permanent = "endpoint disabled", True
    else:
        body = encode_payload(delivery.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Cardvault-Webhooks/1.0",
            signing.EVENT_HEADER: delivery.event,
            signing.DELIVERY_HEADER: str(delivery.pk),
            signing.SIGNATURE_HEADER: signing.sign(
                secret=endpoint.get_secret(), body=body, timestamp=int(time.time())
            ),
        }
        try:
            # Resolves and checks the host, then connects to the checked address (SSRF).
            answer = transport.post(endpoint.url, body=body, headers=headers)
            code = answer.status_code
            excerpt = answer.text[:RESPONSE_EXCERPT_CHARS]
        except UnsafeWebhookTarget as exc:
            error, permanent = f"refused target: {exc}", True
        except TargetDoesNotResolve:
            error = "host does not resolve"  # DNS may be down for a moment: retried
        except httpx.HTTPError as exc:
            error = type(exc).__name__
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record_attempt(
        delivery=delivery,
        code=code,
        excerpt=excerpt,
        error=error,
        permanent=permanent,
        duration_ms=duration_ms,
    )


def _record_attempt(
    *,
    delivery: WebhookDelivery,
    code: int | None,
    excerpt: str,
    error: str,
    permanent: bool,
    duration_ms: int,
) -> WebhookDelivery:
    now = timezone.now()
    succeeded = code is not None and 200 <= code < 300
    attempts = delivery.attempts + 1
    with transaction.atomic(durable=True):
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=WebhookAttempt.objects.filter(delivery=delivery).count() + 1,
            response_code=code,
            response_excerpt=excerpt,
            error=error[:300],
            duration_ms=duration_ms,
        )
        if succeeded:
            status, next_at, delivered_at = WebhookDelivery.Status.SUCCEEDED, None, now
        elif permanent or attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            status, next_at, delivered_at = WebhookDelivery.Status.FAILED, None, None
        else:
            status, next_at = WebhookDelivery.Status.PENDING, now + retry_delay(attempts)
            delivered_at = None
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            attempts=F("attempts") + 1,
            status=status,
            next_attempt_at=next_at,
            claimed_until=None,
            response_code=code,
            response_excerpt=excerpt,
            last_error=error[:300],
            delivered_at=delivered_at,
        )
    delivery.refresh_from_db()
    logger.info(
        "webhook delivery %s attempt %s: %s", delivery.pk, attempts, code or error or "no answer"
    )
    return delivery


def retry_due_deliveries(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Beat job: queue every delivery whose next attempt is due (each is claimed when sent)."""
    ids = selectors.due_delivery_ids(now=now or timezone.now(), limit=batch_size)
    for delivery_id in ids:
        tasks.deliver_webhook_task.delay(delivery_id=delivery_id)
    return len(ids)


def resend_delivery(*, delivery: WebhookDelivery, actor: User | None = None) -> WebhookDelivery:
    """Send a delivery again now, with a fresh set of attempts and the same payload and id (a
    receiver that dedupes by ``X-Cardvault-Delivery`` sees the same delivery)."""
    with transaction.atomic(durable=True):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            claimed_until=None,
        )
        transaction.on_commit(partial(tasks.deliver_webhook_task.delay, delivery_id=delivery.pk))
    logger.info("webhook delivery %s resent by user %s", delivery.pk, getattr(actor, "pk", None))
    delivery.refresh_from_db()
    return delivery


def purge_old_deliveries(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Beat job: delete finished deliveries (and their attempt logs) created more than
    ``WEBHOOK_LOG_RETENTION_DAYS`` ago, ``batch_size`` at a time, each batch in its own short
    transaction. A delivery still pending (awaiting a retry, or resent by its merchant) is kept
    however old. Idempotent: a second run finds nothing left to delete. Returns the number of
    deliveries deleted."""
    before = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_LOG_RETENTION_DAYS)
    deleted = 0
    while True:
        with transaction.atomic(durable=True):
            ids = lock_objects.lock_expired_delivery_ids(before=before, limit=batch_size)
            if ids:
                WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
                WebhookDelivery.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        if len(ids) < batch_size:
            break
    if deleted:
        logger.info("webhook log retention: %s deliveries deleted", deleted)
    return deleted


# --- low stock ------------------------------------------------------------------------------
def rearm_low_stock(*, product_id: int) -> bool:
    """Inside a restock's transaction (``shop.services.import_keys``): stock back above the
    threshold re-arms the alert as the keys arrive. Waiting for the next sale's check would miss
    a crossing when one big order takes the restocked product straight back below it. Returns
    True when the alert was re-armed."""
    from shop import selectors as shop_selectors
    from shop.models import Product

    product = Product.objects.get(pk=product_id)
    threshold = product.low_stock_threshold
    left = shop_selectors.stock_left(product)
    if threshold is None or left is None or left <= threshold:
        return False
    return bool(
        LowStockState.objects.filter(product_id=product_id, is_low=True).update(is_low=False)
    )


def check_low_stock(*, product_id: int) -> bool:
    """After a sale: if the product's stock is at or below its threshold and was not already,
    record the crossing and emit ``stock.low`` (and the merchant's notices) once for it. Stock
    back above the threshold re-arms the alert. Returns True when a crossing was recorded."""
    from shop import selectors as shop_selectors
    from shop.models import Product

    product = Product.objects.get(pk=product_id)
    threshold = product.low_stock_threshold
    left = shop_selectors.stock_left(product)
    if threshold is None or left is None:
        return False
    state, _created = LowStockState.objects.get_or_create(product_id=product_id)
    if left > threshold:
        LowStockState.objects.filter(pk=state.pk, is_low=True).update(is_low=False)
        return False
    with transaction.atomic(durable=True):
        crossed = LowStockState.objects.filter(pk=state.pk, is_low=False).update(
            is_low=True, crossings=F("crossings") + 1
        )
        if crossed:
            crossings = LowStockState.objects.values_list("crossings", flat=True).get(pk=state.pk)
            transaction.on_commit(
                partial(
                    tasks.emit_event_task.delay,
                    event=WebhookEvent.STOCK_LOW,
                    object_id=product_id,
                    key_suffix=f":{crossings}",
                )
            )
    return bool(crossed)


# --- endpoints and settings ---------------------------------------------------------------
def create_endpoint(
    *, merchant: Merchant, url: str, events: list[str], is_active: bool = True
) -> WebhookEndpoint:
    """A new endpoint with a fresh random signing secret. Raises ``UnsafeWebhookTarget``."""
    targets.check_url(url, resolve=False)
    endpoint = WebhookEndpoint(
        merchant=merchant,
        url=url,
        events=[event for event in events if event in WebhookEvent.values],
        is_active=is_active,
    )
    endpoint.set_secret(secrets.token_urlsafe(32))
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def update_endpoint(
    *, endpoint: WebhookEndpoint, url: str, events: list[str], is_active: bool
) -> WebhookEndpoint:
    targets.check_url(url, resolve=False)
    endpoint.url = url
    endpoint.events = [event for event in events if event in WebhookEvent.values]
    endpoint.is_active = is_active
    endpoint.full_clean()
    endpoint.save(update_fields=["url", "events", "is_active"])
    return endpoint


def rotate_endpoint_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    endpoint.set_secret(secrets.token_urlsafe(32))
    endpoint.save(update_fields=["secret_key_id", "secret_nonce", "secret_ciphertext"])
    return endpoint


def save_notification_settings(
    *,
    merchant: Merchant,
    language: str,
    email_enabled: bool,
    notify_every_order: bool,
    telegram_chat_id: str,
    telegram_token: str | None,
) -> NotificationSettings:
    """Create or update the merchant's settings. ``telegram_token`` ``None`` keeps the stored
    token, ``""`` removes it; a token is sealed with the vault keyring, never stored plain."""
    found = NotificationSettings.objects.filter(merchant=merchant).first()
    prefs = found if found is not None else NotificationSettings(merchant=merchant)
    prefs.language = language
    prefs.email_enabled = email_enabled
    prefs.notify_every_order = notify_every_order
    prefs.telegram_chat_id = telegram_chat_id.strip()
    if telegram_token is not None:
        prefs.set_telegram_token(telegram_token.strip())
    prefs.full_clean()
    prefs.save()
    return prefs


def reseal_secrets(*, current: str) -> int:
    """Key rotation (``rotate_card_keys``): re-seal endpoint secrets and Telegram bot tokens not
    yet under the keyring's current key, or dropping the old key would lose them."""
    count = 0
    with transaction.atomic(durable=True):
        for endpoint in (
            WebhookEndpoint.objects.select_for_update()
            .exclude(secret_ciphertext=b"")
            .exclude(secret_key_id=current)
        ):
            endpoint.set_secret(endpoint.get_secret())
            endpoint.save(update_fields=["secret_key_id", "secret_nonce", "secret_ciphertext"])
            count += 1
        for prefs in (
            NotificationSettings.objects.select_for_update()
            .exclude(telegram_token_ciphertext=b"")
            .exclude(telegram_token_key_id=current)
        ):
            prefs.set_telegram_token(prefs.get_telegram_token())
            prefs.save(
                update_fields=[
                    "telegram_token_key_id",
                    "telegram_token_nonce",
                    "telegram_token_ciphertext",
                ]
            )
            count += 1
    return count
