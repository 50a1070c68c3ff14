"""The delivery log and the resend button in the merchant centre (scoped to the merchant) and in
the staff admin; endpoints and notification settings through the merchant's forms."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import place, verify_otp
from tests.factories import MerchantFactory, UserFactory
from webhooks import services, signing
from webhooks.models import NotificationSettings, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

DELIVERIES = "/merchant/webhooks/webhookdelivery/"
ENDPOINTS = "/merchant/webhooks/webhookendpoint/"


def english_client(user) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    return client


@pytest.fixture
def two_stores(stocked_product, receiver):
    """Alpha (``stocked_product``'s merchant) and Bravo, each with an endpoint at the stub and
    one failed delivery of an order.paid event."""
    alpha = stocked_product.merchant
    bravo = MerchantFactory(name="Bravo Store")
    from tests.factories import ProductFactory, add_keys

    bravo_product = ProductFactory(merchant=bravo, title="Bravo Widget")
    add_keys(bravo_product, 2)
    rows = {}
    for merchant, product in ((alpha, stocked_product), (bravo, bravo_product)):
        endpoint = services.create_endpoint(
            merchant=merchant, url=receiver.url + f"?m={merchant.slug}", events=["order.paid"]
        )
        order = place(product).order
        [delivery_id] = services.emit_event(event="order.paid", object_id=order.pk)
        WebhookDelivery.objects.filter(pk=delivery_id).update(status="failed", attempts=8)
        rows[merchant.slug] = (endpoint, WebhookDelivery.objects.get(pk=delivery_id))
    return alpha, bravo, rows


def test_delivery_log_shows_only_own_deliveries(two_stores):
    alpha, bravo, rows = two_stores
    client = english_client(alpha.owner)
    own, theirs = rows[alpha.slug][1], rows[bravo.slug][1]

    listing = client.get(DELIVERIES)
    assert listing.status_code == 200
    assert {d.pk for d in listing.context["cl"].queryset} == {own.pk}
    assert client.get(f"{DELIVERIES}{own.pk}/change/").status_code == 200
    assert client.get(f"{DELIVERIES}{theirs.pk}/change/").status_code in (302, 404)
    assert client.get(f"{ENDPOINTS}{rows[bravo.slug][0].pk}/change/").status_code in (302, 404)
    endpoints = client.get(ENDPOINTS)
    assert {e.pk for e in endpoints.context["cl"].queryset} == {rows[alpha.slug][0].pk}


def test_resend_button_resends_own_delivery_only(
    two_stores, receiver, django_capture_on_commit_callbacks
):
    alpha, bravo, rows = two_stores
    client = english_client(alpha.owner)
    own, theirs = rows[alpha.slug][1], rows[bravo.slug][1]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            DELIVERIES,
            {"action": "resend", "_selected_action": [str(own.pk), str(theirs.pk)], "index": "0"},
        )

    assert response.status_code == 302
    own.refresh_from_db()
    theirs.refresh_from_db()
    assert (own.status, own.attempts, own.response_code) == ("succeeded", 1, 200)
    assert (theirs.status, theirs.attempts) == ("failed", 8)
    assert [r.headers[signing.DELIVERY_HEADER] for r in receiver.requests] == [str(own.pk)]
    assert receiver.requests[0].query == {"m": alpha.slug}
    page = client.get(f"{DELIVERIES}{own.pk}/change/")
    assert b"answer 1" in page.content  # the attempt log with the response excerpt


def test_staff_can_resend_any_delivery(two_stores, receiver, django_capture_on_commit_callbacks):
    _alpha, bravo, rows = two_stores
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = english_client(staff)
    verify_otp(client, staff)
    theirs = rows[bravo.slug][1]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "resend", "_selected_action": [str(theirs.pk)], "index": "0"},
        )
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert theirs.status == "succeeded"
    assert client.get(f"/admin/webhooks/webhookdelivery/{theirs.pk}/change/").status_code == 200


def test_merchant_creates_an_endpoint_and_sees_its_secret_once_on_its_page(merchant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    client = english_client(merchant.owner)
    refused = client.post(
        f"{ENDPOINTS}add/", {"url": "http://192.168.0.10/hook", "events": ["order.paid"]}
    )
    assert refused.status_code == 200
    assert not WebhookEndpoint.objects.exists()

    created = client.post(
        f"{ENDPOINTS}add/",
        {"url": "https://hooks.example.com/cv", "events": ["order.paid", "stock.low"]},
    )
    assert created.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.merchant, endpoint.events) == (merchant, ["order.paid", "stock.low"])
    secret = endpoint.get_secret()
    assert secret.encode() not in bytes(endpoint.secret_ciphertext)
    assert secret not in client.get(ENDPOINTS).content.decode()
    assert secret in client.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()


def test_notification_settings_form_seals_the_bot_token(merchant):
    client = english_client(merchant.owner)
    token = "555:form-secret-token"
    response = client.post(
        "/merchant/webhooks/notificationsettings/add/",
        {
            "language": "zh-hans",
            "email_enabled": "on",
            "telegram_chat_id": "12345",
            "telegram_bot_token": token,
        },
    )
    assert response.status_code == 302
    prefs = NotificationSettings.objects.get(merchant=merchant)
    assert prefs.get_telegram_token() == token
    assert token.encode() not in bytes(prefs.telegram_token_ciphertext)
    page = client.get(f"/merchant/webhooks/notificationsettings/{prefs.pk}/change/")
    assert token not in page.content.decode()

    # Saving without a token keeps it; the clear box removes it.
    url = f"/merchant/webhooks/notificationsettings/{prefs.pk}/change/"
    client.post(url, {"language": "en", "email_enabled": "on", "telegram_chat_id": "12345"})
    prefs.refresh_from_db()
    assert (prefs.language, prefs.get_telegram_token()) == ("en", token)
    client.post(url, {"language": "en", "telegram_chat_id": "", "clear_telegram_token": "on"})
    prefs.refresh_from_db()
    assert (prefs.has_telegram, prefs.email_enabled) == (False, False)
