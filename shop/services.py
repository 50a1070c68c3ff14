"""Writes of the shop app: importing, voiding and re-encrypting card keys; screening products
against the prohibited terms and the staff's review of held products."""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from merchants.models import Merchant
from shop import cache as storefront_cache
from shop import selectors, vault
from shop.exceptions import ImportRejected, ProductReviewRefused
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
            raise ImportRejected(_("the file is not UTF-8 text")) from None
    else:
        text = data
    if "\x00" in text:
        raise ImportRejected(_("the file contains binary data"))
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
        raise ImportRejected(_("manual-delivery products hold no stock"))
    merchant_id = product.merchant_id
    keys = _KeyLines(lines, merchant_id=merchant_id)
    with transaction.atomic(durable=True):
        batch = ImportBatch.objects.create(
            merchant_id=merchant_id,
            product=product,
            created_by=created_by,
            source=source,
            file_name=file_name[:255],
        )
        imported = _insert_keys(
            CardKey(merchant_id=merchant_id, product_id=product.pk, batch=batch), keys
        )
        batch.line_count = keys.line_count
        batch.imported_count = imported
        batch.duplicate_count = keys.in_file_duplicates + (keys.unique_count - imported)
        batch.rejected_count = len(keys.rejected_lines)
        batch.rejected_lines = keys.rejected_lines[:MAX_REJECTED_LINES_KEPT]
        batch.save(
            update_fields=[
                "line_count",
                "imported_count",
                "duplicate_count",
                "rejected_count",
                "rejected_lines",
            ]
        )
        storefront_cache.catalogue_changed(merchant_id=merchant_id)
        if imported and product.low_stock_threshold is not None:
            from webhooks import services as webhook_services  # low stock: once per crossing

            webhook_services.rearm_low_stock(product_id=product.pk)
    rejected_lines = keys.rejected_lines
    return ImportResult(
        batch=batch,
        imported=imported,
        duplicates=batch.duplicate_count,
        rejected=len(rejected_lines),
        rejected_lines=rejected_lines,
    )


# What differs from key to key; every other column is the same for the whole batch.
_SEALED_FIELDS = ("key_id", "nonce", "ciphertext", "fingerprint")
# pg_advisory_xact_lock(namespace, merchant): one import at a time per merchant (see below).
_IMPORT_LOCK_NAMESPACE = 0x4B455953  # "KEYS"


class _KeyLines:
    """An import's lines, read once: iterating yields ``(fingerprint, sealed row)`` for the first
    line of each key, in input order, and counts what it skips. Blank lines are skipped,
    whitespace trimmed, lines over ``CARD_KEY_MAX_LENGTH`` rejected, repeats counted. It runs
    inside the import's ``COPY`` (``_insert_keys``), so the fingerprinting and sealing of one
    key overlaps PostgreSQL's writing of the previous ones."""

    def __init__(self, lines: Iterable[str], *, merchant_id: int) -> None:
        self.lines = lines
        self.merchant_id = merchant_id
        self.ring = vault.keyring()
        self.line_count = 0
        self.unique_count = 0
        self.in_file_duplicates = 0
        self.rejected_lines: list[int] = []

    def sealed(self, product_id: int) -> Iterator[tuple[str, str, bytes, bytes, str]]:
        """``(fingerprint, key_id, nonce, ciphertext, fingerprint)``: the fingerprint first for
        the de-duplication, then the ``_SEALED_FIELDS``."""
        max_length = settings.CARD_KEY_MAX_LENGTH
        merchant_id, ring = self.merchant_id, self.ring
        seen: set[str] = set()
        for line_number, raw in enumerate(self.lines, start=1):
            self.line_count = line_number
            text = raw.strip()
            if not text:
                continue
            if len(text) > max_length:
                self.rejected_lines.append(line_number)
                continue
            fingerprint = vault.fingerprint(text, merchant_id=merchant_id, ring=ring)
            if fingerprint in seen:
                self.in_file_duplicates += 1
                continue
            seen.add(fingerprint)
            self.unique_count += 1
            sealed = vault.seal(
                text,
                merchant_id=merchant_id,
                product_id=product_id,
                fingerprint=fingerprint,
                ring=ring,
            )
            yield (fingerprint, sealed.key_id, sealed.nonce, sealed.ciphertext, fingerprint)


def _insert_keys(template: CardKey, keys: _KeyLines) -> int:
    """Seal and store the keys of ``keys`` that the merchant does not hold yet; ``template``
    holds the columns all keys share. Returns how many were stored.

    On PostgreSQL the keys are sealed and streamed by one binary ``COPY`` straight into the
    stock table, which PostgreSQL writes and indexes while this process reads and seals the next
    lines: no model instance per key and no staging table (the ORM's ``bulk_create`` was ~4×
    slower, a staged ``INSERT … SELECT … ON CONFLICT`` ~2×; issue 7, docs/performance.md). An
    advisory lock makes this the merchant's only import until commit (every key enters the
    stock table here), so the (merchant, fingerprint) constraint can only be hit by keys the
    merchant already held before: then the COPY is rolled back to its savepoint, one look-up of
    the batch's fingerprints says which keys are new, and only those are copied, from the rows
    already sealed."""
    product_id = template.product_id
    if connection.vendor != "postgresql":
        rows = [
            CardKey(
                merchant_id=template.merchant_id,
                product_id=product_id,
                batch=template.batch,
                **dict(zip(_SEALED_FIELDS, sealed[1:], strict=True)),
            )
            for sealed in keys.sealed(product_id)
        ]
        for start in range(0, len(rows), INSERT_BATCH_SIZE):
            CardKey.objects.bulk_create(
                rows[start : start + INSERT_BATCH_SIZE], ignore_conflicts=True
            )
        return CardKey.objects.filter(batch=template.batch).count()
    quote = connection.ops.quote_name
    fields = [f for f in CardKey._meta.concrete_fields if not f.primary_key]
    # Defaults and auto_now_add as the ORM would set them, once for the batch; the sealed
    # fields' slots are filled per key.
    shared = [
        None
        if f.attname in _SEALED_FIELDS
        else f.get_db_prep_save(f.pre_save(template, add=True), connection)
        for f in fields
    ]
    slots = [next(i for i, f in enumerate(fields) if f.attname == name) for name in _SEALED_FIELDS]
    table = quote(CardKey._meta.db_table)  # names from the model, none from input
    # Binary: PostgreSQL need not parse the hex of two bytea columns and a timestamp a key.
    copy_sql = (
        f"COPY {table} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN (FORMAT BINARY)"
    )
    copy_types = [str(f.db_type(connection)).split("(")[0] for f in fields]
    sealed_rows: list[tuple[str, str, bytes, bytes, str]] = []

    def copy_rows(rows: Iterable[tuple[str, str, bytes, bytes, str]]) -> int:
        count = 0
        row = list(shared)
        with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
            copy.set_types(copy_types)
            for sealed in rows:
                for slot, value in zip(slots, sealed[1:], strict=True):
                    row[slot] = value
                copy.write_row(row)
                count += 1
        return count

    def kept(rows: Iterable[tuple[str, str, bytes, bytes, str]]) -> Iterator[Any]:
        for sealed in rows:
            sealed_rows.append(sealed)
            yield sealed

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            [_IMPORT_LOCK_NAMESPACE, template.merchant_id & 0x7FFFFFFF],
        )
    stream = kept(keys.sealed(product_id))
    try:
        with transaction.atomic():
            return copy_rows(stream)
    except psycopg.errors.UniqueViolation:
        pass  # the file repeats keys the merchant already holds: copy only the new ones
    # Seal (and keep) the lines the failed COPY did not reach, if any.
    deque(stream, maxlen=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT fingerprint FROM {table}"  # noqa: S608  # nosec B608
            " WHERE merchant_id = %s AND fingerprint = ANY(%s::varchar[])",
            [template.merchant_id, [sealed[0] for sealed in sealed_rows]],
        )
        held = {fingerprint for (fingerprint,) in cursor.fetchall()}
    return copy_rows(sealed for sealed in sealed_rows if sealed[0] not in held)


def void_keys(*, merchant_id: int, key_ids: Iterable[int]) -> int:
    """Withdraw unsold keys from sale. Only free keys (available, or a lapsed reservation) of this
    merchant change; sold, reserved or burned keys are left alone. Returns how many were voided."""
    now = timezone.now()
    free = Q(status=CardKey.Status.AVAILABLE) | Q(
        status=CardKey.Status.RESERVED, reserved_until__lt=now
    )
    with transaction.atomic(durable=True):
        keys = CardKey.objects.filter(free, merchant_id=merchant_id, id__in=list(key_ids))
        alerted = set(
            keys.filter(product__low_stock_threshold__isnull=False).values_list(
                "product_id", flat=True
            )
        )
        voided = keys.update(status=CardKey.Status.VOID, order=None, reserved_until=None)
        storefront_cache.catalogue_changed(merchant_id=merchant_id)
        from webhooks import services as webhook_services  # voiding may cross the threshold

        for product_id in sorted(alerted):
            webhook_services.check_low_stock_after_commit(product_id=product_id)
        return voided


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
    from webhooks import services as webhook_services  # sealed with the same keyring

    return (
        total
        + _rotate_gateway_secrets(current=current)
        + webhook_services.reseal_secrets(current=current)
    )


def _rotate_gateway_secrets(*, current: str) -> int:
    """Payment-gateway credentials are sealed with the same keyring: re-seal them too, or
    dropping the old key would lock the platform out of its gateways."""
    from orders.models import GatewayConfig

    count = 0
    with transaction.atomic(durable=True):
        for config in GatewayConfig.objects.select_for_update().exclude(secrets_ciphertext=b""):
            if config.secrets_key_id == current:
                continue
            config.set_secrets(config.get_secrets())
            config.save(update_fields=["secrets_key_id", "secrets_nonce", "secrets_ciphertext"])
            count += 1
    return count


def screen_product(*, product: Product) -> str | None:
    """Screen an unsaved or edited product (the caller saves it) against the prohibited terms.

    A hit in title, description or "how to use" holds it for review with the matched term. A
    clean published product stays published; a held product stays held until staff release it
    (the edit is what they review); a rejected one, edited, goes back to review. Returns the
    matched term, or None."""
    term = selectors.find_prohibited_term(product.title, product.description, product.how_to_use)
    if term is not None:
        product.review_status = Product.ReviewStatus.HELD
        product.review_term = term[:100]
        product.review_note = ""
        product.reviewed_at = None
    elif product.review_status == Product.ReviewStatus.REJECTED:
        product.review_status = Product.ReviewStatus.HELD
        product.review_note = ""
        product.reviewed_at = None
    return term


def create_product(*, merchant: Merchant, **fields: Any) -> Product:
    """Create a product of ``merchant``, validated (``full_clean``) and screened: a prohibited
    term holds it for review instead of publishing it. Raises ``ValidationError``."""
    product = Product(merchant=merchant, **fields)
    product.full_clean()
    screen_product(product=product)
    with transaction.atomic(durable=True):
        product.save()
        if product.review_status == Product.ReviewStatus.HELD:
            from webhooks import notifications as merchant_notices

            merchant_notices.queue_product_review_notice(product=product)
    return product


def release_product(*, product_id: int) -> Product:
    """Staff release a held (or rejected) product: it is published. Conditional update, so a
    release racing a merchant's edit or another reviewer changes the row once."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        changed = Product.objects.filter(
            pk=product_id,
            review_status__in=[Product.ReviewStatus.HELD, Product.ReviewStatus.REJECTED],
        ).update(review_status=Product.ReviewStatus.PUBLISHED, review_note="", reviewed_at=now)
        if not changed:
            raise ProductReviewRefused(f"product {product_id} is not held")
        storefront_cache.catalogue_changed(product_id=product_id)
        return Product.objects.get(pk=product_id)


def reject_product(*, product_id: int, reason: str) -> Product:
    """Staff reject a held product with a reason; it stays off the storefront. An edit by the
    merchant sends it back to review."""
    reason = reason.strip()
    if not reason:
        raise ProductReviewRefused("a rejection needs a reason")
    with transaction.atomic(durable=True):
        changed = Product.objects.filter(
            pk=product_id, review_status=Product.ReviewStatus.HELD
        ).update(
            review_status=Product.ReviewStatus.REJECTED,
            review_note=reason[:300],
            reviewed_at=timezone.now(),
        )
        if not changed:
            raise ProductReviewRefused(f"product {product_id} is not held")
        storefront_cache.catalogue_changed(product_id=product_id)
        product = Product.objects.get(pk=product_id)
        from webhooks import notifications as merchant_notices

        merchant_notices.queue_product_review_notice(product=product)
        return product
