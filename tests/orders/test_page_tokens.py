"""Order links across a SECRET_KEY rotation (orders.tokens.page_token): links already sent keep
opening (the page is found by the token's stored hash); links built again later (receipts,
dispute e-mails, a payment's return address) come out the same while the old key is in
SECRET_KEY_FALLBACKS; without it nothing is rewritten and an error is logged."""

import logging

import pytest
from django.test import Client

from orders import selectors, tokens
from orders.models import Order
from tests.conftest import place
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

OLD = "old-secret-key-" + "o" * 50
NEW = "new-secret-key-" + "n" * 50


@pytest.fixture
def placed(settings):
    settings.SECRET_KEY = OLD
    product = ProductFactory()
    add_keys(product, 1)
    return place(product)


def _opens(path: str) -> bool:
    return Client(HTTP_ACCEPT_LANGUAGE="en").get(path).status_code == 200


def test_a_link_already_sent_opens_after_the_key_changes(settings, placed):
    sent = selectors.order_page_path(placed.order)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, []

    assert _opens(sent)


def test_a_link_built_again_is_the_same_while_the_old_key_is_a_fallback(settings, placed):
    sent = selectors.order_page_path(placed.order)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, [OLD]

    order = Order.objects.get(pk=placed.order.pk)
    assert selectors.order_page_path(order) == sent
    assert tokens.page_token(order) == placed.token


def test_without_the_old_key_nothing_is_rewritten_and_an_error_is_logged(settings, placed, caplog):
    """A process without the order's key (e.g. an old one during a rolling rotation) must not
    break the links others gave out: the order is left as it is."""
    sent = selectors.order_page_path(placed.order)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, []
    order = Order.objects.get(pk=placed.order.pk)

    with caplog.at_level(logging.ERROR, logger="orders.tokens"):
        rebuilt = selectors.order_page_path(order)

    assert rebuilt != sent
    assert "cannot rebuild an order link" in caplog.text
    assert Order.objects.get(pk=order.pk).token_hash == placed.order.token_hash
    assert _opens(sent)
    settings.SECRET_KEY_FALLBACKS = [OLD]  # the key put back: the same link again
    assert selectors.order_page_path(order) == sent


def test_new_orders_use_the_current_key(settings, placed):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, [OLD]
    product = ProductFactory()
    add_keys(product, 1)

    fresh = place(product)

    assert fresh.token == tokens.derive_token(
        number=fresh.order.number, nonce=fresh.order.token_nonce, secret=NEW
    )
