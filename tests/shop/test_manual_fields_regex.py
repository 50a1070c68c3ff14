"""Merchants' manual-field patterns cannot hang a worker (ReDoS): checked when saved, matched on
buyer input with the ``regex`` package under a short timeout."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from orders.models import Order
from shop.manual_fields import (
    MAX_PATTERN_LENGTH,
    clean_manual_inputs,
    matches,
    validate_manual_field_spec,
)
from shop.models import Product
from tests.factories import MerchantFactory, ProductFactory, UserFactory

CATASTROPHIC = [
    (r"(a+)+$", "a" * 40 + "!"),
    # Exponential in the regex package too: only the timeout ends it.
    (r"(a|aa)+$", "a" * 60 + "!"),
]


def spec(pattern: str) -> list[dict[str, object]]:
    return [{"name": "account", "label": "Game account", "pattern": pattern, "required": True}]


# --- buyer input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "value"), CATASTROPHIC)
def test_catastrophic_pattern_returns_and_rejects_the_input(pattern, value):
    with pytest.raises(ValidationError) as caught:
        clean_manual_inputs(spec(pattern), {"account": value})

    [message] = caught.value.message_dict["account"]
    assert "Game account" in message and "expected format" in message


def test_a_match_that_times_out_is_logged_without_the_input(caplog):
    assert matches(r"(a|aa)+$", "a" * 60 + "!", field="account") is False

    assert "'account': pattern match timed out" in caplog.text
    assert "a" * 60 not in caplog.text


def test_ordinary_patterns_still_accept_and_reject():
    fields = spec(r"^[0-9]{5,12}$")
    assert clean_manual_inputs(fields, {"account": " 123456 "}) == {"account": "123456"}
    with pytest.raises(ValidationError):
        clean_manual_inputs(fields, {"account": "12a456"})
    # Patterns are matched against the whole value, anchored or not.
    assert matches(r"[0-9]+", "123") is True
    assert matches(r"[0-9]+", "123x") is False


def test_a_stored_pattern_that_no_longer_compiles_refuses_instead_of_crashing(caplog):
    assert matches(r"([0-9]", "1", field="account") is False
    assert "stored pattern is invalid" in caplog.text


# --- saving the pattern ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("([0-9]", "invalid pattern"),
        ("[0-9]" * (MAX_PATTERN_LENGTH // 5 + 1), "at most"),
        (12345, "at most"),
    ],
)
def test_spec_refuses_bad_or_overlong_patterns(pattern, fragment):
    with pytest.raises(ValidationError) as caught:
        validate_manual_field_spec(spec(pattern))  # type: ignore[arg-type]

    assert fragment in " ".join(caught.value.message_dict["manual_fields"])


def test_spec_accepts_a_pattern_at_the_length_limit():
    validate_manual_field_spec(spec("a" * MAX_PATTERN_LENGTH))


@pytest.mark.django_db
def test_product_clean_refuses_an_overlong_pattern():
    product = ProductFactory.build(
        merchant=MerchantFactory(),
        delivery_mode=Product.DeliveryMode.MANUAL,
        manual_fields=spec("x" * (MAX_PATTERN_LENGTH + 1)),
    )
    with pytest.raises(ValidationError) as caught:
        product.full_clean()
    assert "manual_fields" in caught.value.message_dict


@pytest.mark.django_db
def test_merchant_centre_refuses_to_save_an_invalid_pattern():
    owner = UserFactory(username="patterns")
    merchant = MerchantFactory(owner=owner)
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.MANUAL)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(owner)
    url = f"/merchant/shop/product/{product.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in form.initial.items()
        if name in form.fields
    }
    data.update(
        {
            "is_active": "on" if product.is_active else "",
            "manual_fields": '[{"name": "account", "pattern": "(unclosed"}]',
        }
    )

    response = client.post(url, data)

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"manual_fields"}
    product.refresh_from_db()
    assert product.manual_fields == []

    # Positive control: the same form with a sound pattern is saved.
    data["manual_fields"] = '[{"name": "account", "pattern": "[0-9]{5,12}"}]'
    assert client.post(url, data).status_code == 302
    product.refresh_from_db()
    assert product.manual_fields == [{"name": "account", "pattern": "[0-9]{5,12}"}]


# --- end to end: a buyer's order on the storefront ------------------------------------------------
@pytest.mark.django_db
def test_storefront_refuses_input_that_times_out_and_places_no_order(client):
    product = ProductFactory(
        delivery_mode=Product.DeliveryMode.MANUAL, manual_fields=spec(r"(a|aa)+$")
    )
    url = reverse("shop:product", args=[product.merchant.slug, product.slug])

    response = client.post(
        url,
        {
            "option": product.pk,
            "quantity": 1,
            "email": "buyer@example.com",
            "query_password": "",
            "gateway": "sandbox",
            "manual_account": "a" * 60 + "!",
        },
    )

    assert response.status_code == 400
    [error] = response.context["form"].errors["manual_account"]
    assert "expected format" in error
    assert Order.objects.count() == 0
