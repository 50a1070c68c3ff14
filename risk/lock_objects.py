"""The risk app's one lock: a transaction-scoped PostgreSQL advisory lock per buyer identity,
so two checkouts from the same IP or email are counted one after the other (otherwise fifty
parallel requests would each see zero unpaid orders and lock a whole shop's stock).

Taken inside ``place_order``'s transaction before any key lock, and never after one, so it
cannot join a lock cycle. On SQLite (the demo) transactions start IMMEDIATE and already run one
writer at a time; nothing to do there."""

import hashlib

from django.db import connection

_NAMESPACE = "cardvault:risk:"


def lock_identities(identities: list[str]) -> None:
    """Lock each identity (e.g. ``ip:203.0.113.9``) until the transaction ends, in sorted order."""
    if connection.vendor != "postgresql" or not identities:
        return
    keys = sorted(
        {
            int.from_bytes(
                hashlib.sha256((_NAMESPACE + identity).encode()).digest()[:8], "big", signed=True
            )
            for identity in identities
        }
    )
    with connection.cursor() as cursor:
        # One round trip; unnest keeps the array's (sorted) order.
        cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])
