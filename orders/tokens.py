"""Order numbers and order-page tokens.

Numbers are random (sequential ones leak a shop's volume). The page token is 256 bits derived by
HMAC from SECRET_KEY and a per-order nonce, so the receipt task can rebuild the link from the order
id; the database stores only its SHA-256, so a dump alone opens no order page.
"""

import hashlib
import secrets

from django.utils import timezone
from django.utils.crypto import salted_hmac


def new_order_number() -> str:
    # yymmdd + 10 random digits: sortable by day, not guessable within it.
    return timezone.now().strftime("%y%m%d") + f"{secrets.randbelow(10**10):010d}"


def new_token_nonce() -> str:
    return secrets.token_hex(16)


def derive_token(*, number: str, nonce: str) -> str:
    return salted_hmac(
        "cardvault.orders.page-token", f"{number}:{nonce}", algorithm="sha256"
    ).hexdigest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_payment_reference() -> str:
    return "P" + secrets.token_hex(12).upper()
