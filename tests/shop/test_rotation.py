import base64

from django.core.management import call_command

from orders.selectors import delivered_keys
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import add_keys
from tests.test_helpers_payments import pay

OLD = "k1:" + base64.b64encode(b"\x01" * 32).decode()
NEW = "k2:" + base64.b64encode(b"\x07" * 32).decode()


def test_rotation_reencrypts_everything_and_old_key_can_be_dropped(product, settings, capsys):
    plaintexts = add_keys(product, 25)
    placed = place(product, quantity=2)
    pay(open_payment(placed.order))
    delivered_before = [k.text for k in delivered_keys(order=placed.order)]

    settings.CARD_KEYRING = f"{NEW},{OLD}"
    call_command("rotate_card_keys", "--batch-size", "7")

    assert "re-encrypted 25 rows under key 'k2'" in capsys.readouterr().out
    assert set(CardKey.objects.values_list("key_id", flat=True)) == {"k2"}
    settings.CARD_KEYRING = NEW  # the old key is gone
    from shop.selectors import export_unsold_keys

    remaining = [text for _, text in export_unsold_keys(merchant=product.merchant)]
    assert sorted(remaining + delivered_before) == sorted(plaintexts)
    assert [k.text for k in delivered_keys(order=placed.order)] == delivered_before


def test_rotation_is_resumable_and_idempotent(product, settings, capsys):
    add_keys(product, 5)
    settings.CARD_KEYRING = f"{NEW},{OLD}"
    call_command("rotate_card_keys")
    capsys.readouterr()

    call_command("rotate_card_keys")

    assert "re-encrypted 0 rows" in capsys.readouterr().out


def test_rotation_reseals_gateway_credentials(db, settings):
    from orders.models import GatewayConfig

    config = GatewayConfig.objects.create(gateway="alipay")
    config.set_secrets({"app_private_key": "PEM-DATA"})
    config.save()
    settings.CARD_KEYRING = f"{NEW},{OLD}"
    call_command("rotate_card_keys")
    settings.CARD_KEYRING = NEW  # the old key is gone
    config.refresh_from_db()
    assert config.secrets_key_id == "k2"
    assert config.get_secrets() == {"app_private_key": "PEM-DATA"}
