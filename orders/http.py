"""The one outbound HTTP client: bounded timeouts, no redirects followed, retries with backoff
and jitter for requests that are safe to repeat, nothing secret logged (only method, host and
status ever reach the log)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3


def _client() -> httpx.Client:
    timeout = httpx.Timeout(settings.OUTBOUND_HTTP_TIMEOUT_SECONDS)
    return httpx.Client(timeout=timeout, follow_redirects=False)


def request(
    method: str,
    url: str,
    *,
    idempotent: bool,
    content: bytes | None = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request. ``idempotent`` requests (queries, and writes the remote side dedupes by
    our request id, like refunds) are retried on connection errors and timeouts; others are sent
    once, since repeating them could act twice."""
    attempts = RETRY_ATTEMPTS if idempotent else 1
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception_type(httpx.TransportError),
        reraise=True,
    )
    host = urlsplit(url).netloc
    for attempt in retrying:
        with attempt, _client() as client:
            response = client.request(
                method,
                url,
                content=content,
                data=data,
                params=params,
                headers=headers,
                **kwargs,
            )
            logger.info(
                "outbound %s %s → %s", method, host, response.status_code
            )  # never the body or query: they carry signatures and buyer data
            return response
    raise AssertionError("unreachable")  # pragma: no cover


def post(url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return request("POST", url, idempotent=False, content=content, headers=headers)
