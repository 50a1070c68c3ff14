"""Order numbers and order-page tokens.

Numbers are random (sequential ones leak a shop's volume). The page token is 256 bits derived by
HMAC from SECRET_KEY and a per-order nonce, so the receipt task can rebuild the link from the order
id; the database stores only its SHA-256, so a dump alone opens no order page.

A link already sent keeps working whatever happens to SECRET_KEY (the page is found by the stored
hash). A link built again later (a receipt, a dispute e-mail, a payment's return address) comes
from ``page_token``: under SECRET_KEY, or under the one of SECRET_KEY_FALLBACKS the order was
made with. Keep a retired key in SECRET_KEY_FALLBACKS for as long as such links are built for
orders made under it; without it the rebuilt link does not open (an error is logged).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

if TYPE_CHECKING:
    from orders.models import Order

logger = logging.getLogger(__name__)


def new_order_number() -> str:
    # yymmdd + 10 random digits: sortable by day, not guessable within it.
    return timezone.now().strftime("%y%m%d") + f"{secrets.randbelow(10**10):010d}"


def new_token_nonce() -> str:
    return secrets.token_hex(16)


def derive_token(*, number: str, nonce: str, secret: str | None = None) -> str:
    """The token for a new order (under SECRET_KEY, or ``secret``); to rebuild an existing
    order's link use ``page_token``."""
    return salted_hmac(
        "cardvault.orders.page-token", f"{number}:{nonce}", secret=secret, algorithm="sha256"
    ).hexdigest()


def page_token(order: Order) -> str:
    """The token of ``order``'s existing link, rebuilt under SECRET_KEY or the fallback key it was
    made with. Never re-keys the order (that would break links already given out, e.g. by a
    process with newer keys during a rolling rotation): if no key makes it, an error is logged
    and the link built under SECRET_KEY will not open (the buyer can still use the look-up)."""
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        token = derive_token(number=order.number, nonce=order.token_nonce, secret=secret)
        if hash_token(token) == order.token_hash:
            return token
    logger.error(
        "cannot rebuild an order link: the key it was made with is neither SECRET_KEY nor in"
        " SECRET_KEY_FALLBACKS",
        extra={"order_id": order.pk},
    )
    return derive_token(number=order.number, nonce=order.token_nonce)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_payment_reference() -> str:
    return "P" + secrets.token_hex(12).upper()
