"""The webhook signature: ``X-Cardvault-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>``. ``verify_signature`` is what a receiver runs (docs/notifications.md)."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Cardvault-Signature"
EVENT_HEADER = "X-Cardvault-Event"
DELIVERY_HEADER = "X-Cardvault-Delivery"


def sign(*, secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    *, secret: str, body: bytes, header: str, max_age_seconds: int = 300, now: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``max_age_seconds`` of ``now`` either way. Constant-time comparison; empty secret fails."""
    if not secret:
        return False
    parts = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > max_age_seconds:
        return False
    expected = sign(secret=secret, body=body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
