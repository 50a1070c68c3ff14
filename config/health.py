"""``GET /healthz``: readiness of this web process for the container health check and the proxy.

Answers 200 when PostgreSQL answers ``SELECT 1`` and Redis answers ``PING``, else 503. The body
names each component and its state and nothing else: the reason of a failure is logged, never
sent. Cheap on purpose: no session, no user, no template, no rate limit (nothing counted in the
cache, which may be the component that is down), and Redis is asked with a short timeout so a
stalled server fails the check quickly instead of holding a worker thread.
"""

import logging
from functools import lru_cache

import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 2.0
OK = "ok"
UNAVAILABLE = "unavailable"
NOT_CONFIGURED = "not configured"


@lru_cache(maxsize=4)
def _redis_client(url: str) -> redis.Redis:
    # One client (and connection pool) per URL, so a check every few seconds reuses a connection.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        retry_on_timeout=False,
    )


def check_database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except (DatabaseError, OSError) as exc:
        logger.warning("health check: database unavailable: %s", type(exc).__name__)
        return UNAVAILABLE
    return OK


def check_redis() -> str:
    url = settings.REDIS_URL
    if not url:
        # The embedded demo: a per-process cache and eager tasks, no Redis to be ready for.
        return NOT_CONFIGURED
    try:
        _redis_client(url).ping()
    except (RedisError, OSError) as exc:
        logger.warning("health check: redis unavailable: %s", type(exc).__name__)
        return UNAVAILABLE
    return OK


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database(), "redis": check_redis()}
    failing = [name for name, state in checks.items() if state == UNAVAILABLE]
    body: dict[str, object] = {"status": UNAVAILABLE if failing else OK, "checks": checks}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)
