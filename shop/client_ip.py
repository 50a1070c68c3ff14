"""The buyer's IP address, as evidence (first key view, order) and for per-IP throttles.

Behind a reverse proxy ``REMOTE_ADDR`` is the proxy; ``TRUSTED_PROXY_COUNT`` says how many
proxies of our own append to ``X-Forwarded-For``, so the address they saw is taken from the right
end of that list. Entries further left are the client's to write and are never trusted."""

import ipaddress
import re

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < proxies:
        return remote
    candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


_MOBILE_AGENT = re.compile(r"Mobile|Android|iPhone|iPad|MicroMessenger|AlipayClient", re.IGNORECASE)


def is_mobile(request: HttpRequest) -> bool:
    """A phone or tablet browser (or a payment app's web view): picks mobile pay pages."""
    return bool(_MOBILE_AGENT.search(request.headers.get("User-Agent", "")))
