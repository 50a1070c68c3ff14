"""Writes of the shop app: importing, voiding and re-encrypting card keys."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from shop import vault
from shop.exceptions import ImportRejected
from shop.models import CardKey, ImportBatch, Product

INSERT_BATCH_SIZE = 2000
MAX_REJECTED_LINES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class ImportResult:
    batch: ImportBatch
    imported: int
    duplicates: int
    rejected: int
    rejected_lines: list[int]


def read_key_lines(data: bytes | str, *, file_name: str = "") -> list[str]:
    """Split an upload or a paste into lines. A ``.csv`` file contributes its first column per
    row (quoted commas survive); anything else is one key per line. Raises ``ImportRejected`` for
    a file that is not UTF-8 text."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportRejected("the file is not UTF-8 text") from None
    else:
        text = data
    if "\x00" in text:
        raise ImportRejected("the file contains binary data")
    if file_name.lower().endswith(".csv"):
        return [row[0] if row else "" for row in csv.reader(io.StringIO(text))]
    return text.splitlines()


def import_keys(
    *,
    product: Product,
    lines: Iterable[str],
    source: str,
    file_name: str = "",
    created_by: User | None = None,
) -> ImportResult:
    """Encrypt and store keys for a product as one ``ImportBatch``.

    Blank lines are skipped, whitespace trimmed; duplicates within the input and against all of
    the merchant's stock (by keyed fingerprint, never by decrypting) are counted and skipped;
    lines over ``CARD_KEY_MAX_LENGTH`` are rejected with their line numbers. One transaction:
    either the batch and all its keys exist, or nothing does. Raises ``ImportRejected`` when the
    product cannot hold imported keys.
    """
    if product.delivery_mode == Product.DeliveryMode.MANUAL:
        raise ImportRejected("manual-delivery products hold no stock")
    ring = vault.keyring()
    merchant_id = product.merchant_id
    max_length = settings.CARD_KEY_MAX_LENGTH
    seen: set[str] = set()
    rows: list[CardKey] = []
    rejected_lines: list[int] = []
    in_file_duplicates = 0
    line_count = 0
    for line_number, raw in enumerate(lines, start=1):
        line_count = line_number
        text = raw.strip()
        if not text:
            continue
        if len(text) > max_length:
            rejected_lines.append(line_number)
            continue
        fingerprint = vault.fingerprint(text, merchant_id=merchant_id, ring=ring)
        if fingerprint in seen:
            in_file_duplicates += 1
            continue
        seen.add(fingerprint)
        sealed = vault.seal(
            text, merchant_id=merchant_id, product_id=product.pk, fingerprint=fingerprint, ring=ring
        )
        rows.append(
            CardKey(
                merchant_id=merchant_id,
                product_id=product.pk,
                key_id=sealed.key_id,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
                fingerprint=fingerprint,
            )
        )

    with transaction.atomic(durable=True):
        batch = ImportBatch.objects.create(
            merchant_id=merchant_id,
            product=product,
            created_by=created_by,
            source=source,
            file_name=file_name[:255],
            line_count=line_count,
        )
        for row in rows:
            row.batch = batch
        # ON CONFLICT DO NOTHING against the (merchant, fingerprint) constraint: duplicates of
        # existing stock, even from an import running at the same moment, are skipped by the
        # database itself; counting the batch afterwards gives the exact number imported.
        for start in range(0, len(rows), INSERT_BATCH_SIZE):
            CardKey.objects.bulk_create(
                rows[start : start + INSERT_BATCH_SIZE], ignore_conflicts=True
            )
        imported = CardKey.objects.filter(batch=batch).count()
        batch.imported_count = imported
        batch.duplicate_count = in_file_duplicates + (len(rows) - imported)
        batch.rejected_count = len(rejected_lines)
        batch.rejected_lines = rejected_lines[:MAX_REJECTED_LINES_KEPT]
        batch.save(
            update_fields=["imported_count", "duplicate_count", "rejected_count", "rejected_lines"]
        )
    return ImportResult(
        batch=batch,
        imported=imported,
        duplicates=batch.duplicate_count,
        rejected=len(rejected_lines),
        rejected_lines=rejected_lines,
    )


def void_keys(*, merchant_id: int, key_ids: Iterable[int]) -> int:
    """Withdraw unsold keys from sale. Only free keys (available, or a lapsed reservation) of this
    merchant change; sold, reserved or burned keys are left alone. Returns how many were voided."""
    now = timezone.now()
    free = Q(status=CardKey.Status.AVAILABLE) | Q(
        status=CardKey.Status.RESERVED, reserved_until__lt=now
    )
    with transaction.atomic(durable=True):
        return CardKey.objects.filter(free, merchant_id=merchant_id, id__in=list(key_ids)).update(
            status=CardKey.Status.VOID, order=None, reserved_until=None
        )


def rotate_card_keys(*, batch_size: int = 1000) -> int:
    """Re-encrypt every stored secret not yet under the current keyring key, in batches of short
    transactions; resumable (each batch picks what is still under an old key). Returns how many
    rows were re-encrypted."""
    from orders.models import Delivery
    from orders.services import manual_delivery_binding

    ring = vault.keyring()
    current = ring.current_id
    total = 0
    while True:
        with transaction.atomic(durable=True):
            keys = list(
                CardKey.objects.select_for_update(of=("self",))
                .exclude(key_id=current)
                .order_by("id")[:batch_size]
            )
            for key in keys:
                plaintext = vault.unseal(
                    key_id=key.key_id,
                    nonce=key.nonce,
                    ciphertext=key.ciphertext,
                    merchant_id=key.merchant_id,
                    product_id=key.product_id,
                    fingerprint=key.fingerprint,
                    row_label=f"card key {key.pk}",
                )
                sealed = vault.seal(
                    plaintext,
                    merchant_id=key.merchant_id,
                    product_id=key.product_id,
                    fingerprint=key.fingerprint,
                    ring=ring,
                )
                key.key_id, key.nonce, key.ciphertext = (
                    sealed.key_id,
                    sealed.nonce,
                    sealed.ciphertext,
                )
            CardKey.objects.bulk_update(keys, ["key_id", "nonce", "ciphertext"])
        total += len(keys)
        if len(keys) < batch_size:
            break
    while True:
        with transaction.atomic(durable=True):
            deliveries = list(
                Delivery.objects.select_for_update(of=("self",))
                .filter(ciphertext__isnull=False)
                .exclude(key_id=current)
                .select_related("order")
                .order_by("id")[:batch_size]
            )
            for delivery in deliveries:
                binding = manual_delivery_binding(delivery.order)
                nonce, ciphertext = delivery.sealed_content()
                plaintext = vault.unseal(
                    key_id=delivery.key_id,
                    nonce=nonce,
                    ciphertext=ciphertext,
                    merchant_id=delivery.order.merchant_id,
                    product_id=delivery.order.product_id,
                    fingerprint=binding,
                    row_label=f"delivery {delivery.pk}",
                )
                sealed = vault.seal(
                    plaintext,
                    merchant_id=delivery.order.merchant_id,
                    product_id=delivery.order.product_id,
                    fingerprint=binding,
                    ring=ring,
                )
                delivery.key_id = sealed.key_id
                delivery.nonce, delivery.ciphertext = sealed.nonce, sealed.ciphertext
            Delivery.objects.bulk_update(deliveries, ["key_id", "nonce", "ciphertext"])
        total += len(deliveries)
        if len(deliveries) < batch_size:
            break
    return total
