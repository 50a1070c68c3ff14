"""Audit rows. One INSERT each, no transaction of their own: they are written inside the
admin's transaction (a rolled-back change leaves no row) or on their own in autocommit."""

import ipaddress
from typing import Any

from django.http import HttpRequest

from audit.context import current_request
from audit.models import AuditEntry
from shop.client_ip import client_ip

MERCHANT_PREFIX = "/merchant/"


def _actor_kind(request: HttpRequest | None, user: Any) -> str:
    if request is not None and request.path.startswith(MERCHANT_PREFIX):
        return AuditEntry.ActorKind.MERCHANT
    if user is not None and getattr(user, "is_staff", False):
        return AuditEntry.ActorKind.STAFF
    if user is not None and getattr(user, "is_authenticated", False):
        return AuditEntry.ActorKind.MERCHANT
    return AuditEntry.ActorKind.ANONYMOUS


def _ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    address = client_ip(request)
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


def record_entry(
    *,
    action: str,
    user: Any = None,
    actor_name: str = "",
    request: HttpRequest | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: str = "",
) -> AuditEntry:
    """Write one audit row. ``request`` defaults to the request being served (if any), which
    gives the IP (``shop.client_ip``), user agent and which admin site the actor used."""
    request = request if request is not None else current_request.get()
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return AuditEntry.objects.create(
        actor=user,
        actor_name=(actor_name or (user.get_username() if user is not None else ""))[:150],
        actor_kind=_actor_kind(request, user),
        action=action[:100],
        object_type=object_type[:100],
        object_id=object_id[:255],
        object_repr=object_repr[:200],
        changes=changes,
        ip=_ip(request),
        user_agent=(request.headers.get("User-Agent", "") if request is not None else "")[:300],
    )
