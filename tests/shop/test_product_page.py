"""Buying through the product page form: what gets written, and what a rejected order leaves
behind (nothing) and tells the buyer."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from orders import tokens
from orders.exceptions import OutOfStock
from orders.models import Order, Payment
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.pages import find_all
from tests.test_helpers_payments import pay


def product_url(product):
    return reverse("shop:product", args=[product.merchant.slug, product.slug])


def buy(client, product, *, listing=None, **overrides):
    data = {
        "option": product.pk,
        "quantity": 1,
        "email": "buyer@example.com",
        "query_password": "",
        "gateway": "sandbox",
        **overrides,
    }
    return client.post(product_url(listing or product), data)


def key_snapshot(product=None):
    keys = CardKey.objects.all() if product is None else CardKey.objects.filter(product=product)
    return list(keys.order_by("id").values_list("id", "status", "order_id", "reserved_until"))


def field_errors(response, name):
    """The error text shown under the form field ``name``."""
    form = response.context["form"]
    return [str(message) for message in form.errors.get(name, [])]


def assert_nothing_written(before_keys):
    assert Order.objects.count() == 0
    assert Payment.objects.count() == 0
    assert key_snapshot() == before_keys


# --- the happy path ------------------------------------------------------------------------------
def test_valid_order_reserves_keys_and_goes_to_the_payment_page(client, stocked_product):
    response = buy(client, stocked_product, quantity=3, email=" buyer@example.com ")

    assert response.status_code == 302
    order = Order.objects.get()
    payment = Payment.objects.get()
    location = urlsplit(response["Location"])
    assert location.path == reverse("orders:sandbox_pay", args=[payment.reference])
    # The pay page sends the buyer back to the order page when done.
    [next_url] = parse_qs(location.query)["next"]
    token = tokens.derive_token(number=order.number, nonce=order.token_nonce)
    assert next_url == "http://testserver" + reverse("orders:detail", args=[token])

    assert order.status == Order.Status.PENDING
    assert (order.product_id, order.quantity, order.email) == (
        stocked_product.pk,
        3,
        "buyer@example.com",
    )
    assert order.amount == Decimal("30.00")
    assert payment.order_id == order.pk
    assert payment.amount == order.amount
    reserved = CardKey.objects.filter(product=stocked_product, status=CardKey.Status.RESERVED)
    assert reserved.count() == 3
    assert set(reserved.values_list("order_id", flat=True)) == {order.pk}
    assert all(key.reserved_until == order.expires_at for key in reserved)
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE).count() == 7

    pay_page = client.get(response["Location"])
    assert pay_page.status_code == 200
    assert order.number in pay_page.content.decode()


def test_product_page_shows_the_form_with_sandbox_gateway(client, stocked_product):
    response = client.get(product_url(stocked_product))

    assert response.status_code == 200
    names = {element.attrs.get("name") for element in find_all(response.content, "input")}
    assert {"option", "quantity", "email", "query_password", "gateway"} <= names
    [gateway] = find_all(response.content, "input", name="gateway")
    assert gateway.attrs["value"] == "sandbox"
    # A single option is not a choice: it travels as a hidden field.
    [option] = find_all(response.content, "input", name="option")
    assert option.attrs["type"] == "hidden"
    assert option.attrs["value"] == str(stocked_product.pk)


def test_buyer_picks_a_variant(client, merchant):
    monthly = ProductFactory(merchant=merchant, variant_label="1 month", price=Decimal("15.00"))
    yearly = ProductFactory(
        merchant=merchant, variant_label="12 months", price=Decimal("150.00"), variant_of=monthly
    )
    add_keys(monthly, 2)
    add_keys(yearly, 2)

    response = buy(client, yearly, listing=monthly, quantity=2)

    assert response.status_code == 302
    order = Order.objects.get()
    assert order.product_id == yearly.pk
    assert order.amount == Decimal("300.00")
    assert CardKey.objects.filter(product=yearly, order=order).count() == 2
    assert CardKey.objects.filter(product=monthly, status=CardKey.Status.AVAILABLE).count() == 2


def test_option_of_another_listing_is_refused(client, merchant):
    product = ProductFactory(merchant=merchant)
    stranger = ProductFactory(merchant=merchant)
    add_keys(product, 2)
    add_keys(stranger, 2)
    before = key_snapshot()

    response = buy(client, stranger, listing=product)

    assert response.status_code == 400
    assert field_errors(response, "option")
    assert_nothing_written(before)


# --- refusals ------------------------------------------------------------------------------------
def test_not_enough_stock_shows_a_clear_error_and_writes_nothing(client, product):
    add_keys(product, 3)
    before = key_snapshot()

    response = buy(client, product, quantity=5, email="keen@example.com")

    assert response.status_code == 400
    message = str(OutOfStock.user_message)
    assert response.context["form"].non_field_errors() == [message]
    alerts = [element.text for element in find_all(response.content, cls="errors")]
    assert any(message in text for text in alerts)
    assert escape(message) in response.content.decode()
    # The buyer's input is kept for another try.
    [email] = find_all(response.content, "input", name="email")
    assert email.attrs["value"] == "keen@example.com"
    assert_nothing_written(before)


def test_lapsed_reservations_are_stock_again(client, product):
    """Stock held by an order whose reservation has lapsed can be bought."""
    add_keys(product, 2)
    place(product, quantity=2, now=timezone.now() - timedelta(hours=1))

    response = buy(client, product, quantity=2)

    assert response.status_code == 302
    newest = Order.objects.latest("created_at")
    assert CardKey.objects.filter(order=newest, status=CardKey.Status.RESERVED).count() == 2


@pytest.mark.parametrize("quantity", [1, 6])
def test_quantity_outside_product_limits_is_refused(client, product, quantity):
    product.min_quantity, product.max_quantity = 2, 5
    product.save()
    add_keys(product, 10)
    before = key_snapshot()

    response = buy(client, product, quantity=quantity)

    assert response.status_code == 400
    [error] = field_errors(response, "quantity")
    assert "2" in error and "5" in error
    assert escape(error) in response.content.decode()
    assert_nothing_written(before)


@pytest.mark.parametrize("quantity", ["0", "-1", "two", ""])
def test_malformed_quantity_is_refused(client, stocked_product, quantity):
    before = key_snapshot()

    response = buy(client, stocked_product, quantity=quantity)

    assert response.status_code == 400
    assert field_errors(response, "quantity")
    assert_nothing_written(before)


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b", "buyer@@example.com"])
def test_invalid_email_is_refused(client, stocked_product, email):
    before = key_snapshot()

    response = buy(client, stocked_product, email=email)

    assert response.status_code == 400
    assert field_errors(response, "email")
    assert_nothing_written(before)


def test_unknown_gateway_is_refused(client, stocked_product):
    before = key_snapshot()

    response = buy(client, stocked_product, gateway="bank-of-nowhere")

    assert response.status_code == 400
    assert field_errors(response, "gateway")
    assert_nothing_written(before)


def test_query_password_is_stored_hashed(client, stocked_product):
    response = buy(client, stocked_product, query_password="open sesame")

    assert response.status_code == 302
    order = Order.objects.get()
    assert order.query_password_hash
    assert "open sesame" not in order.query_password_hash


# --- manual delivery -----------------------------------------------------------------------------
MANUAL_FIELDS = [
    {"name": "account", "label": "Game account", "pattern": "^[0-9]{5,12}$", "required": True},
    {"name": "server", "label": "Server region", "required": False},
]


@pytest.fixture
def manual_product(merchant):
    return ProductFactory(
        merchant=merchant, title="Top-up", delivery_mode="manual", manual_fields=MANUAL_FIELDS
    )


def test_manual_product_shows_the_merchants_input_fields(client, manual_product):
    response = client.get(product_url(manual_product))

    assert response.status_code == 200
    assert find_all(response.content, "input", name="manual_account")
    assert find_all(response.content, "input", name="manual_server")
    labels = [element.text for element in find_all(response.content, "label")]
    assert any("Game account" in label for label in labels)
    assert any("Server region" in label for label in labels)


@pytest.mark.parametrize(
    ("account", "fragment"),
    [("abc", "expected format"), ("1234", "expected format"), ("", "required")],
)
def test_manual_input_must_match_the_pattern(client, manual_product, account, fragment):
    response = buy(client, manual_product, manual_account=account, manual_server="EU")

    assert response.status_code == 400
    [error] = field_errors(response, "manual_account")
    assert "Game account" in error and fragment in error
    assert escape(error) in response.content.decode()
    assert Order.objects.count() == 0


def test_manual_order_keeps_the_buyers_inputs(client, manual_product):
    response = buy(client, manual_product, manual_account=" 12345678 ", manual_server="")

    assert response.status_code == 302
    order = Order.objects.get()
    assert order.manual_inputs == {"account": "12345678"}
    assert CardKey.objects.count() == 0


# --- reusable keys -------------------------------------------------------------------------------
def test_reusable_product_sells_the_same_key_up_to_its_cap(client, merchant):
    product = ProductFactory(
        merchant=merchant, title="Shared VPN", delivery_mode="reusable", reusable_cap=3
    )
    add_keys(product, 1)

    too_many = buy(client, product, quantity=4)
    assert too_many.status_code == 400
    assert too_many.context["form"].non_field_errors() == [str(OutOfStock.user_message)]
    assert Order.objects.count() == 0

    first = buy(client, product, quantity=2)
    assert first.status_code == 302
    pay(open_payment(Order.objects.get()))
    product.refresh_from_db()
    assert product.reusable_sold == 2
    assert client.get(product_url(product)).context["listing"].stock == 1

    over_cap = buy(client, product, quantity=2)
    assert over_cap.status_code == 400
    assert over_cap.context["form"].non_field_errors() == [str(OutOfStock.user_message)]
    assert Order.objects.count() == 1

    last = buy(client, product, quantity=1)
    assert last.status_code == 302
    second = Order.objects.latest("created_at")
    pay(open_payment(second))
    second.refresh_from_db()
    assert second.status == Order.Status.DELIVERED
    product.refresh_from_db()
    assert product.reusable_sold == 3
    # Both buyers got the one shared key, which stays available for its listing.
    key = CardKey.objects.get(product=product)
    assert key.status == CardKey.Status.AVAILABLE
    assert {d.card_key_id for o in Order.objects.all() for d in o.deliveries.all()} == {key.pk}

    sold_out = client.get(product_url(product))
    assert sold_out.context["listing"].stock == 0
    assert buy(client, product, quantity=1).status_code == 400
