"""Recovery code format and hashing (no database access).

A code is 12 symbols of Crockford's base32 (digits and capitals without I, L, O, U), shown as
``XXXX-XXXX-XXXX``: 60 random bits from ``secrets``. Input is forgiving: case, spaces and
hyphens are ignored, and O/I/L read as 0/1/1. A 6-digit TOTP code can never look like one.

Stored form: ``pbkdf2_sha256$<iterations>$<salt>$<digest>`` with a random salt per code. The
codes are random, not chosen by people, so the hash need not be as slow as a password hash; the
iterations (a few milliseconds per code) still add about 13 bits to an offline guess, and the
salt makes every code a separate target.
"""

import base64
import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
GROUP = 4
ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 10_000
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def generate() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def normalise(text: str) -> str | None:
    """The code's canonical symbols, or None if ``text`` cannot be a recovery code."""
    cleaned = "".join(text.split()).replace("-", "").upper().translate(_READ_AS)
    if len(cleaned) != LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def looks_like_code(text: str) -> bool:
    return normalise(text) is not None


def _digest(code: str, salt: str, iterations: int) -> str:
    raw = hashlib.pbkdf2_hmac("sha256", code.encode(), salt.encode(), iterations)
    return base64.b64encode(raw).decode()


def make_hash(code: str) -> str:
    canonical = normalise(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    salt = secrets.token_hex(16)
    return f"{ALGORITHM}${ITERATIONS}${salt}${_digest(canonical, salt, ITERATIONS)}"


def matches(canonical: str, stored: str) -> bool:
    """Whether the normalised code ``canonical`` is the one ``stored`` was made from."""
    try:
        algorithm, iterations, salt, digest = stored.split("$")
        rounds = int(iterations)
    except ValueError:
        return False
    if algorithm != ALGORITHM:
        return False
    return hmac.compare_digest(_digest(canonical, salt, rounds), digest)
