"""Per-IP rate limits (django-ratelimit, counted in the cache) and the 429 page.

Each limit's rate is a setting (``RATE_LIMIT_*``), read per request. A limiter whose cache is
unreachable lets the request through and logs it: a Redis outage must never stop sales, and the
limits are a brake on abuse, not a lock (logins also have django-axes, which counts in the
database). Never put a limit on payment callbacks.
"""

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import is_ratelimited
from redis.exceptions import RedisError

from shop.client_ip import client_ip

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def _ip_key(group: str, request: HttpRequest) -> str:
    return client_ip(request) or "unknown"


def limit_exceeded(request: HttpRequest, *, group: str, rate_setting: str) -> bool:
    """Count this request against ``group`` for the client's IP; True once over the rate."""
    rate = getattr(settings, rate_setting)
    try:
        return bool(
            is_ratelimited(
                request,
                group=group,
                key=_ip_key,
                rate=rate,
                method=ALL,
                increment=True,
            )
        )
    except (RedisError, OSError) as exc:
        logger.warning(
            "rate limit %s not applied, cache unreachable: %s", group, type(exc).__name__
        )
        return False


def rate_limited_response(request: HttpRequest) -> HttpResponse:
    response = render(request, "security/rate_limited.html", status=429)
    response["Retry-After"] = "60"
    response["Cache-Control"] = "no-store"
    return response


def rate_limit(*, group: str, rate_setting: str, methods: tuple[str, ...] = ("POST",)) -> Any:
    """Decorate a view: requests in ``methods`` over the rate get the 429 page and the view never
    runs, so nothing is written."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method in methods and limit_exceeded(
                request, group=group, rate_setting=rate_setting
            ):
                return rate_limited_response(request)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
