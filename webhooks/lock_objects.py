"""Every locking query of the webhooks app (forced to run: an unevaluated queryset locks
nothing)."""

from __future__ import annotations

from datetime import datetime

from webhooks.models import WebhookDelivery


def lock_expired_delivery_ids(*, before: datetime, limit: int) -> list[int]:
    """Up to ``limit`` finished (succeeded or failed) deliveries created before ``before``,
    oldest first, locked. A pending delivery (due for a retry, or resent) is never among them;
    a resend that races the purge waits for the lock and then finds the row gone. Rows another
    purge holds are skipped, so two runs never wait on each other."""
    return list(
        WebhookDelivery.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(created_at__lt=before)
        .exclude(status=WebhookDelivery.Status.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
