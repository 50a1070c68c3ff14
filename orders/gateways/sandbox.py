"""The built-in sandbox gateway: a pay page with Pay / Fail buttons that sends an HMAC-SHA256
signed, timestamped notification to the same server-to-server callback URL real gateways use.

Wire format (this module is the only place that knows it):
  POST <callback_url>, body JSON {"event_id", "payment_reference", "status": "paid"|"failed",
  "amount": "12.00", "currency": "CNY", "trade_id"}, header
  ``X-Sandbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

Its "remote" trade state lives in the cache, so ``query_payment`` and ``refund`` behave like a
real gateway's APIs. Enabled only where ``SANDBOX_GATEWAY_ENABLED`` (never in production).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from orders import http
from orders.exceptions import InvalidSignature, MalformedNotification, StaleNotification
from orders.gateways.base import (
    CallbackReply,
    CallbackRequest,
    Gateway,
    PaymentAction,
    RefundResult,
    VerifiedEvent,
)

if TYPE_CHECKING:
    from orders.models import GatewayConfig, Payment

SIGNATURE_HEADER = "X-Sandbox-Signature"
TRADE_TTL_SECONDS = 7 * 24 * 3600


def _trade_cache_key(reference: str) -> str:
    return f"sandbox:trade:{reference}"


class SandboxGateway(Gateway):
    name = "sandbox"
    display_name = _("Sandbox (test payments)")

    default_currencies = ("CNY", "USD", "EUR", "USDT")

    def __init__(self, config: GatewayConfig | None = None, *, secret: str | None = None) -> None:
        super().__init__(config)
        # Configured by settings, not in the admin: it exists for demos and tests only.
        self.signing_secret = settings.SANDBOX_GATEWAY_SECRET if secret is None else secret

    def is_enabled(self) -> bool:
        return bool(settings.SANDBOX_GATEWAY_ENABLED and self.signing_secret)

    def reply_duplicate(self) -> CallbackReply:
        # The sandbox reports replays plainly (409), which the tests and the demo rely on.
        return CallbackReply(status=409, body="duplicate")

    def create_payment(
        self, *, payment: Payment, return_url: str, callback_url: str, mobile: bool = False
    ) -> PaymentAction:
        cache.set(
            _trade_cache_key(payment.reference),
            {"status": "open", "callback_url": callback_url},
            TRADE_TTL_SECONDS,
        )
        url = reverse("orders:sandbox_pay", args=[payment.reference])
        return PaymentAction(redirect_url=f"{url}?{urlencode({'next': return_url})}")

    # --- signing -------------------------------------------------------------------------
    def sign(self, body: bytes, *, timestamp: int) -> str:
        digest = hmac.new(
            self.signing_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return f"t={timestamp},v1={digest}"

    def build_notification(
        self, *, payment: Payment, status: Literal["paid", "failed"], timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        trade = cache.get(_trade_cache_key(payment.reference)) or {}
        trade_id = trade.get("trade_id") or "SBX" + secrets.token_hex(10)
        event_id = f"{trade_id}:{status}"
        payload = {
            "event_id": event_id,
            "payment_reference": payment.reference,
            "status": status,
            "amount": f"{payment.amount:.2f}",
            "currency": payment.currency,
            "trade_id": trade_id,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = self.sign(body, timestamp=int(time.time()) if timestamp is None else timestamp)
        trade.update({"status": status, "trade_id": trade_id, "event": payload})
        cache.set(_trade_cache_key(payment.reference), trade, TRADE_TTL_SECONDS)
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature}

    def simulate_buyer(self, *, payment: Payment, paid: bool, callback_url: str) -> int:
        """What the sandbox's Pay / Fail buttons do: notify the callback URL, server to server.
        Returns the HTTP status our callback answered."""
        body, headers = self.build_notification(
            payment=payment, status="paid" if paid else "failed"
        )
        return http.post(callback_url, content=body, headers=headers).status_code

    # --- verification --------------------------------------------------------------------
    def verify_callback(self, request: CallbackRequest) -> VerifiedEvent:
        if not self.signing_secret:
            # An empty secret would make every signature "valid" for whoever knows it is empty.
            raise InvalidSignature("sandbox secret is not configured")
        header = request.headers.get(SIGNATURE_HEADER, "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise InvalidSignature("missing or malformed signature header") from None
        expected = self.sign(request.body, timestamp=timestamp)
        if not hmac.compare_digest(expected.encode(), header.encode()):
            raise InvalidSignature("signature mismatch")
        # Bound both sides: a timestamp from the future is as suspicious as an old one.
        if abs(time.time() - timestamp) > settings.PAYMENT_CALLBACK_MAX_AGE_SECONDS:
            raise StaleNotification("timestamp outside the accepted window")
        return self._parse_event(request.body)

    def _parse_event(self, body: bytes) -> VerifiedEvent:
        try:
            payload: dict[str, Any] = json.loads(body)
            status = payload["status"]
            if status not in ("paid", "failed"):
                raise ValueError(status)
            amount = Decimal(str(payload["amount"]))
            return VerifiedEvent(
                event_id=str(payload["event_id"])[:128],
                kind=status,
                payment_reference=str(payload["payment_reference"])[:40],
                amount=amount,
                currency=str(payload["currency"]),
                gateway_trade_id=str(payload["trade_id"])[:128],
            )
        except (ValueError, KeyError, TypeError, InvalidOperation):
            raise MalformedNotification("body is not a sandbox event") from None

    # --- the "remote" APIs -----------------------------------------------------------------
    def query_payment(self, *, payment: Payment) -> VerifiedEvent | None:
        trade = cache.get(_trade_cache_key(payment.reference))
        if not trade or trade.get("status") not in ("paid", "failed"):
            return None
        return self._parse_event(json.dumps(trade["event"]).encode())

    def refund(self, *, payment: Payment, amount: Decimal, reason: str) -> RefundResult:
        # ``reason`` carries the caller's refund request id: a repeat returns the same refund.
        trade = cache.get(_trade_cache_key(payment.reference)) or {}
        done: dict[str, str] = trade.setdefault("refunds", {})
        if reason in done:
            return RefundResult(refund_id=done[reason], amount=amount, succeeded=True)
        refunded = Decimal(trade.get("refunded", "0"))
        if trade.get("status") != "paid" or refunded + amount > payment.amount:
            return RefundResult(refund_id="", amount=Decimal("0"), succeeded=False)
        refund_id = "SBXR" + secrets.token_hex(8)
        trade["refunded"] = str(refunded + amount)
        done[reason] = refund_id
        cache.set(_trade_cache_key(payment.reference), trade, TRADE_TTL_SECONDS)
        return RefundResult(refund_id=refund_id, amount=amount, succeeded=True)
