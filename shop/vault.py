"""The card-key vault: AES-256-GCM encryption bound to the key's row, and keyed fingerprints.

Keyring (``CARD_KEYRING``): ``"id:base64key,id2:base64key"``; the first key encrypts, every key
decrypts, so rotation is: put a new key first, run ``manage.py rotate_card_keys``, then drop the
old one. Associated data binds a ciphertext to merchant, product, key id and fingerprint (the
fingerprint is unique per merchant), so a ciphertext copied into any other row fails to decrypt.

Nothing here ever puts plaintext into an exception message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from shop.exceptions import VaultError

NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Keyring:
    current_id: str
    ciphers: dict[str, AESGCM]
    fingerprint_key: bytes


def parse_keyring(spec: str) -> list[tuple[str, bytes]]:
    """Parse ``"id:base64,id2:base64"``; raise ``VaultError`` on anything malformed."""
    entries: list[tuple[str, bytes]] = []
    for raw in spec.split(","):
        raw = raw.strip()
        if not raw:
            continue
        key_id, sep, encoded = raw.partition(":")
        if not sep or not key_id or len(key_id) > 32:
            raise VaultError("CARD_KEYRING entries must look like 'id:base64key'.")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VaultError(f"CARD_KEYRING key {key_id!r} is not valid base64.") from exc
        if len(key) != 32:
            raise VaultError(f"CARD_KEYRING key {key_id!r} must be 32 bytes (AES-256).")
        if any(existing == key_id for existing, _ in entries):
            raise VaultError(f"CARD_KEYRING lists key id {key_id!r} twice.")
        entries.append((key_id, key))
    if not entries:
        raise VaultError(
            "CARD_KEYRING is not configured: card keys cannot be encrypted or decrypted. "
            "Run `make demo` (writes a development .env) or set it in the environment."
        )
    return entries


@lru_cache(maxsize=4)
def _build_keyring(spec: str, fingerprint_spec: str) -> Keyring:
    entries = parse_keyring(spec)
    try:
        fingerprint_key = base64.b64decode(fingerprint_spec, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError("CARD_FINGERPRINT_KEY is not valid base64.") from exc
    if len(fingerprint_key) < 32:
        raise VaultError("CARD_FINGERPRINT_KEY must decode to at least 32 bytes.")
    return Keyring(
        current_id=entries[0][0],
        ciphers={key_id: AESGCM(key) for key_id, key in entries},
        fingerprint_key=fingerprint_key,
    )


def keyring() -> Keyring:
    return _build_keyring(settings.CARD_KEYRING, settings.CARD_FINGERPRINT_KEY)


def _associated_data(*, merchant_id: int, product_id: int, key_id: str, fingerprint: str) -> bytes:
    return f"cardvault:v1|m={merchant_id}|p={product_id}|k={key_id}|f={fingerprint}".encode()


def fingerprint(plaintext: str, *, merchant_id: int, ring: Keyring | None = None) -> str:
    """Keyed HMAC-SHA256 of the normalised plaintext, scoped to one merchant: the same key at two
    merchants yields different fingerprints, so nothing leaks across stores."""
    ring = ring or keyring()
    message = f"{merchant_id}\x00{plaintext}".encode()
    return hmac.new(ring.fingerprint_key, message, hashlib.sha256).hexdigest()


def seal(
    plaintext: str,
    *,
    merchant_id: int,
    product_id: int,
    fingerprint: str,
    ring: Keyring | None = None,
) -> Sealed:
    ring = ring or keyring()
    nonce = os.urandom(NONCE_BYTES)
    aad = _associated_data(
        merchant_id=merchant_id,
        product_id=product_id,
        key_id=ring.current_id,
        fingerprint=fingerprint,
    )
    ciphertext = ring.ciphers[ring.current_id].encrypt(nonce, plaintext.encode(), aad)
    return Sealed(key_id=ring.current_id, nonce=nonce, ciphertext=ciphertext)


def unseal(
    *,
    key_id: str,
    nonce: bytes,
    ciphertext: bytes,
    merchant_id: int,
    product_id: int,
    fingerprint: str,
    row_label: str,
) -> str:
    """Decrypt one stored value. Raises ``VaultError`` naming the row (never the content) when the
    key id is unknown or the ciphertext does not belong to this row."""
    ring = keyring()
    cipher = ring.ciphers.get(key_id)
    if cipher is None:
        raise VaultError(f"{row_label}: encryption key {key_id!r} is not in CARD_KEYRING.")
    aad = _associated_data(
        merchant_id=merchant_id, product_id=product_id, key_id=key_id, fingerprint=fingerprint
    )
    try:
        return cipher.decrypt(bytes(nonce), bytes(ciphertext), aad).decode()
    except InvalidTag:
        raise VaultError(
            f"{row_label}: ciphertext failed authentication (tampered, or moved from another row)."
        ) from None


# --- secrets other than card keys (payment-gateway credentials) --------------------------------
def _secret_associated_data(*, context: str, key_id: str) -> bytes:
    return f"secret|{context}|{key_id}".encode()


def seal_secret(plaintext: str, *, context: str) -> Sealed:
    """Encrypt a configuration secret under the current key, bound to ``context`` (e.g.
    ``"gateway:alipay"``) so it cannot be moved to another row or setting."""
    ring = keyring()
    nonce = os.urandom(NONCE_BYTES)
    aad = _secret_associated_data(context=context, key_id=ring.current_id)
    ciphertext = ring.ciphers[ring.current_id].encrypt(nonce, plaintext.encode(), aad)
    return Sealed(key_id=ring.current_id, nonce=nonce, ciphertext=ciphertext)


def unseal_secret(*, key_id: str, nonce: bytes, ciphertext: bytes, context: str) -> str:
    ring = keyring()
    cipher = ring.ciphers.get(key_id)
    if cipher is None:
        raise VaultError(f"{context}: encryption key {key_id!r} is not in CARD_KEYRING.")
    aad = _secret_associated_data(context=context, key_id=key_id)
    try:
        return cipher.decrypt(bytes(nonce), bytes(ciphertext), aad).decode()
    except InvalidTag:
        raise VaultError(f"{context}: secret failed authentication.") from None
