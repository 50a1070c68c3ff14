import base64

import pytest
from django.db import connection

from orders.selectors import delivered_keys
from shop import vault
from shop.exceptions import VaultError
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, add_keys


def _unseal(key: CardKey) -> str:
    return vault.unseal(
        key_id=key.key_id,
        nonce=key.nonce,
        ciphertext=key.ciphertext,
        merchant_id=key.merchant_id,
        product_id=key.product_id,
        fingerprint=key.fingerprint,
        row_label=f"card key {key.pk}",
    )


def test_stored_key_round_trips_and_is_not_plaintext(product):
    plaintexts = add_keys(product, 3)

    keys = list(CardKey.objects.filter(product=product).order_by("id"))

    assert [_unseal(key) for key in keys] == plaintexts
    for key, plaintext in zip(keys, plaintexts, strict=True):
        assert plaintext.encode() not in bytes(key.ciphertext)
        assert len(bytes(key.nonce)) == 12
        assert key.key_id == "k1"
        assert plaintext not in str(key) and plaintext not in repr(key)


def test_ciphertext_moved_to_another_merchants_row_fails_loudly(db):
    product_a = ProductFactory()
    product_b = ProductFactory()
    add_keys(product_a, 1, prefix="A")
    add_keys(product_b, 1, prefix="B")
    key_a = CardKey.objects.get(product=product_a)
    key_b = CardKey.objects.get(product=product_b)

    # An attacker with database access copies A's ciphertext into B's row.
    CardKey.objects.filter(pk=key_b.pk).update(nonce=key_a.nonce, ciphertext=key_a.ciphertext)
    key_b.refresh_from_db()

    with pytest.raises(VaultError) as excinfo:
        _unseal(key_b)
    assert f"card key {key_b.pk}" in str(excinfo.value)
    assert "A-" not in str(excinfo.value)


def test_ciphertext_moved_within_the_same_product_fails(product):
    add_keys(product, 2)
    first, second = CardKey.objects.filter(product=product).order_by("id")

    CardKey.objects.filter(pk=second.pk).update(nonce=first.nonce, ciphertext=first.ciphertext)
    second.refresh_from_db()

    with pytest.raises(VaultError):
        _unseal(second)


def test_tampered_ciphertext_breaks_the_order_page_loudly(client, stocked_product):
    from tests.test_helpers_payments import pay

    placed = place(stocked_product)
    pay(open_payment(placed.order))
    key = CardKey.objects.get(order=placed.order)
    tampered = bytearray(bytes(key.ciphertext))
    tampered[0] ^= 0xFF
    CardKey.objects.filter(pk=key.pk).update(ciphertext=bytes(tampered))

    with pytest.raises(VaultError):
        delivered_keys(order=placed.order)


def test_fingerprints_differ_between_merchants_for_the_same_key(db):
    a, b = MerchantFactory(), MerchantFactory()

    assert vault.fingerprint("SAME", merchant_id=a.pk) != vault.fingerprint(
        "SAME", merchant_id=b.pk
    )
    assert vault.fingerprint("SAME", merchant_id=a.pk) == vault.fingerprint(
        "SAME", merchant_id=a.pk
    )


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nokey",
        "k1:not-base64!",
        "k1:" + base64.b64encode(b"short").decode(),
        "k1:{k},k1:{k}".format(k=base64.b64encode(b"\x01" * 32).decode()),
    ],
)
def test_malformed_keyring_is_refused(spec):
    with pytest.raises(VaultError):
        vault.parse_keyring(spec)


def test_unknown_key_id_names_the_row_not_the_content(product, settings):
    add_keys(product, 1)
    key = CardKey.objects.get(product=product)
    settings.CARD_KEYRING = "k2:" + base64.b64encode(b"\x03" * 32).decode()

    with pytest.raises(VaultError, match="'k1' is not in CARD_KEYRING"):
        _unseal(key)


def test_database_holds_no_plaintext_after_import(product):
    plaintexts = add_keys(product, 5, prefix="VISIBLE-IF-LEAKED")

    with connection.cursor() as cursor:
        cursor.execute("SELECT encode(ciphertext, 'escape'), fingerprint FROM shop_cardkey")
        rows = cursor.fetchall()
    dump = repr(rows)
    for plaintext in plaintexts:
        assert plaintext not in dump
