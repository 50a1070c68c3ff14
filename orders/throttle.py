"""A small cache-backed counter for failed order lookups per client IP (guessing defence).

Never used on payment callbacks: those must not depend on the cache being up.
"""

from django.core.cache import cache

LOOKUP_FAILURES_ALLOWED = 10
LOOKUP_WINDOW_SECONDS = 15 * 60


def _key(ip: str | None) -> str:
    return f"lookup-failures:{ip or 'unknown'}"


def lookup_blocked(ip: str | None) -> bool:
    return lookup_failure_count(ip) >= LOOKUP_FAILURES_ALLOWED


def lookup_failure_count(ip: str | None) -> int:
    """Failed look-ups from this IP in the current window (also a risk signal at checkout)."""
    return int(cache.get(_key(ip), 0))


def record_lookup_failure(ip: str | None) -> None:
    key = _key(ip)
    if not cache.add(key, 1, LOOKUP_WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, LOOKUP_WINDOW_SECONDS)
