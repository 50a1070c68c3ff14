"""The client IP django-axes keys lockouts by: the same address every per-IP rule uses."""

from django.http import HttpRequest

from shop.client_ip import client_ip


def axes_client_ip(request: HttpRequest) -> str | None:
    """``shop.client_ip.client_ip``: ``X-Forwarded-For`` counts only as far as
    ``TRUSTED_PROXY_COUNT`` proxies of ours vouch for it, so a header a client forges does not
    move its lockout to another address."""
    return client_ip(request)
