"""After an import and some real purchases, no card-key plaintext exists anywhere but where a
buyer or the merchant's explicit export is meant to see it: not in any database row, not in
Redis (cache, sessions, the Celery broker), not in task payloads, not in logs or SQL logs."""

import base64
import json
import logging
import re
import secrets
from collections.abc import Iterator

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection
from django.test import Client

from config.celery import app as celery_app
from orders.models import Delivery, Order, Payment
from shop import services as shop_services
from shop.models import CardKey, ImportBatch
from tests.conftest import assert_real_postgres_transactions, sandbox_notification
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def needles(plaintexts: list[str]) -> list[bytes]:
    """Each key as UTF-8 and in the encodings it could hide in (hex for bytea, base64)."""
    out: list[bytes] = []
    for text in plaintexts:
        raw = text.encode()
        out += [raw, raw.hex().encode(), base64.b64encode(raw)]
    return out


def database_rows() -> Iterator[tuple[str, bytes]]:
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - our own table names
            for (row,) in cursor.fetchall():
                yield table, row.encode()


def redis_values() -> Iterator[tuple[str, bytes]]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _score in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            yield key.decode(errors="replace"), key + b" " + value
            yield from _decoded_kombu_body(key, value)


def _decoded_kombu_body(key: bytes, value: bytes) -> Iterator[tuple[str, bytes]]:
    """Celery messages in Redis carry their body base64-encoded inside a JSON envelope."""
    try:
        envelope = json.loads(value)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        yield key.decode() + " (message body)", str(body).encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return


@pytest.fixture
def real_celery_broker():
    """Send tasks through the real Redis broker instead of running them in-process."""
    published: list[bytes] = []

    def record(sender=None, body=None, headers=None, **_kwargs):
        published.append(json.dumps([sender, body, headers], default=str).encode())

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("celery")
    before_task_publish.connect(record, weak=False)
    celery_app.conf.task_always_eager = False
    try:
        yield published
    finally:
        celery_app.conf.task_always_eager = True
        before_task_publish.disconnect(record)
        client.delete("celery")


def test_no_plaintext_key_outside_the_vault(real_celery_broker, caplog):
    assert_real_postgres_transactions()
    published = real_celery_broker
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement and its parameters
    try:
        product = ProductFactory(max_quantity=5)
        plaintexts = [f"SCAN-{secrets.token_hex(8)}" for _ in range(30)]
        result = shop_services.import_keys(
            product=product,
            lines=[*plaintexts, plaintexts[0], "", "x" * 5000],
            source=ImportBatch.Source.PASTE,
        )
        assert (result.imported, result.duplicates, result.rejected) == (30, 1, 1)

        buyer = Client(HTTP_USER_AGENT="scanner-test")
        shown: list[str] = []
        for quantity in (1, 2, 3):
            response = buyer.post(
                f"/s/{product.merchant.slug}/p/{product.slug}/",
                {
                    "option": product.pk,
                    "quantity": quantity,
                    "email": "scan@example.com",
                    "query_password": "hunter22",
                    "gateway": "sandbox",
                },
            )
            assert response.status_code == 302, response.content.decode()[:2000]
            order = Order.objects.order_by("-id").first()
            assert order is not None
            payment = Payment.objects.get(order=order)
            body, headers = sandbox_notification(payment)
            assert (
                buyer.post(
                    "/pay/callback/sandbox/", body, content_type="application/json", headers=headers
                ).status_code
                == 200
            )
            # The buyer reads the keys: the page legitimately carries them.
            from orders.selectors import order_page_path

            page = buyer.get(order_page_path(order)).content.decode()
            shown += [p for p in plaintexts if p in page]
            # Look the order up too, so the session and the lookup throttle exist.
            buyer.post("/lookup/", {"number": order.number, "email": "wrong@example.com"})
        assert len(shown) == 6
        assert Delivery.objects.count() == 6
        assert published, "no Celery task was published through the broker"
    finally:
        connection.force_debug_cursor = False

    patterns = needles(plaintexts)

    leaks = [
        f"database table {table}"
        for table, row in database_rows()
        for pattern in patterns
        if pattern in row
    ]
    leaks += [f"redis key {key}" for key, value in redis_values() for p in patterns if p in value]
    leaks += ["celery payload" for payload in published for p in patterns if p in payload]
    log_text = "\n".join(
        record.getMessage() + repr(record.__dict__) for record in caplog.records
    ).encode()
    assert b"INSERT INTO" in log_text, "SQL logging did not run, so the log scan proves nothing"
    leaks += [
        f"log {record.name}: {record.getMessage()[:300]}"
        for record in caplog.records
        for p in patterns
        if p in (record.getMessage() + repr(record.__dict__)).encode()
    ]
    assert not leaks, sorted(set(leaks))

    # Model and admin-facing representations never decrypt.
    for key in CardKey.objects.all():
        assert not any(p in str(key) or p in repr(key) for p in plaintexts)
    for delivery in Delivery.objects.all():
        assert not any(p in str(delivery) for p in plaintexts)


def test_ciphertext_moved_to_another_row_does_not_decrypt():
    from shop import vault

    product = ProductFactory()
    shop_services.import_keys(
        product=product, lines=["MOVE-A", "MOVE-B"], source=ImportBatch.Source.PASTE
    )
    first, second = CardKey.objects.filter(product=product).order_by("id")
    CardKey.objects.filter(pk=first.pk).update(
        key_id=second.key_id, nonce=second.nonce, ciphertext=second.ciphertext
    )
    first.refresh_from_db()
    with pytest.raises(vault.VaultError) as exc:
        vault.unseal(
            key_id=first.key_id,
            nonce=bytes(first.nonce),
            ciphertext=bytes(first.ciphertext),
            merchant_id=first.merchant_id,
            product_id=first.product_id,
            fingerprint=first.fingerprint,
            row_label=f"card key {first.pk}",
        )
    assert not re.search("MOVE-[AB]", str(exc.value))
