"""Where a webhook may go: http(s) only, and (unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS``) only to
public addresses, so a merchant cannot make our servers call the internal network (SSRF).
Checked when an endpoint is saved and again, by resolving the host, before every attempt;
redirects are never followed (orders/http.py)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from webhooks.exceptions import TargetDoesNotResolve, UnsafeWebhookTarget


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, resolve: bool) -> None:
    """Raise ``UnsafeWebhookTarget`` unless ``url`` is an acceptable webhook target. With
    ``resolve``, every address the host name resolves to must be public (and
    ``TargetDoesNotResolve`` if it resolves to nothing right now)."""
    if resolve:
        approved_addresses(url)
    else:
        _check_shape(url)


def _check_shape(url: str) -> SplitResult:
    """Scheme, credentials and (unless private targets are allowed) literal addresses and
    internal host names, without any DNS lookup."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookTarget("scheme or host")
    if parts.username or parts.password:
        raise UnsafeWebhookTarget("credentials in URL")
    try:
        parts.port  # noqa: B018  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise UnsafeWebhookTarget("port") from None
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return parts
    host = parts.hostname or ""
    if _literal(host):
        if not _is_public(host):
            raise UnsafeWebhookTarget("private address")
        return parts
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise UnsafeWebhookTarget("private host name")
    return parts


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def approved_addresses(url: str) -> list[str]:
    """The addresses ``url``'s host resolves to, each checked to be public (unless
    ``WEBHOOK_ALLOW_PRIVATE_TARGETS``); raises ``UnsafeWebhookTarget`` if any is not. The
    sender connects to one of these, never resolving the name again, so a DNS answer that
    changes between the check and the connection (DNS rebinding) cannot redirect it."""
    parts = _check_shape(url)
    host = parts.hostname or ""
    if _literal(host):
        return [host]
    try:
        infos = socket.getaddrinfo(
            host,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except UnicodeError:
        raise UnsafeWebhookTarget("host name") from None
    except OSError:
        raise TargetDoesNotResolve("host does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetDoesNotResolve("host does not resolve")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS and not all(map(_is_public, addresses)):
        raise UnsafeWebhookTarget("private address")
    return addresses
