"""The one outbound HTTP client: bounded timeouts, no redirects followed, nothing secret logged."""

import httpx
from django.conf import settings


def post(url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
    timeout = httpx.Timeout(settings.OUTBOUND_HTTP_TIMEOUT_SECONDS)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return client.post(url, content=content, headers=headers)
