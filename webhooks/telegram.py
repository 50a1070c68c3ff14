"""Telegram Bot API ``sendMessage`` through the one outbound HTTP client. The token is part of
the URL path, so neither the URL nor an httpx exception (which may quote it) ever leaves this
module: errors are re-raised as ``TelegramError`` carrying only a status or an error class."""

from __future__ import annotations

import json

import httpx
from django.conf import settings

from orders import http
from webhooks.exceptions import TelegramError

MAX_TEXT = 4096


def send_message(*, token: str, chat_id: str, text: str) -> None:
    """Send ``text`` to ``chat_id``. Every failure raises ``TelegramError``; its
    ``context["permanent"]`` is True for a 4xx other than 429 (bad token or chat: retrying
    cannot help)."""
    url = f"{settings.TELEGRAM_API_BASE_URL}/bot{token}/sendMessage"
    body = json.dumps(
        {"chat_id": chat_id, "text": text[:MAX_TEXT], "disable_web_page_preview": True}
    ).encode()
    try:
        response = http.request(
            "POST",
            url,
            idempotent=False,
            content=body,
            headers={"Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise TelegramError(f"telegram: {type(exc).__name__}") from None
    if response.status_code >= 300:
        error = TelegramError(f"telegram answered {response.status_code}")
        error.context["permanent"] = 400 <= response.status_code < 500 and (
            response.status_code != 429
        )
        raise error
