"""The staff console at /admin/: gateway configuration with write-only credentials, the
notification console and unmatched inbox, manual mark-paid, refunds and payouts."""

from typing import ClassVar

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils.translation import gettext_lazy as _

from orders.gateways.base import ConfigField
from orders.gateways.registry import GATEWAY_CLASSES
from orders.gateways.sandbox import SandboxGateway
from orders.models import (
    GatewayConfig,
    Order,
    OrderStatusChange,
    PaymentNotification,
    Refund,
)
from tests.conftest import open_payment, place, verify_otp
from tests.factories import UserFactory
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    verify_otp(client, staff)
    client.staff = staff
    return client


class DemoGateway(SandboxGateway):
    name = "demo"
    display_name = _("Demo gateway")
    option_fields: ClassVar = (ConfigField("app_id", _("App id")),)
    secret_fields: ClassVar = (ConfigField("api_key", _("API key")),)


@pytest.fixture
def demo_gateway(monkeypatch):
    monkeypatch.setitem(GATEWAY_CLASSES, "demo", DemoGateway)
    return DemoGateway


def test_gateway_credentials_are_write_only_and_sealed(staff_client, demo_gateway):
    response = staff_client.post(
        "/admin/orders/gatewayconfig/add/",
        {"gateway": "demo", "display_name": "Demo", "fee_rate": "0.006", "sort_order": "0"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    config = GatewayConfig.objects.get(gateway="demo")
    url = f"/admin/orders/gatewayconfig/{config.pk}/change/"

    # Enabling without the required credentials is refused.
    refused = staff_client.post(
        url, {"enabled": "on", "fee_rate": "0.006", "sort_order": "0", "option__app_id": "A1"}
    )
    assert refused.status_code == 200
    assert "Required to enable the gateway." in refused.content.decode()
    assert not GatewayConfig.objects.get(pk=config.pk).enabled

    saved = staff_client.post(
        url,
        {
            "enabled": "on",
            "fee_rate": "0.006",
            "sort_order": "0",
            "option__app_id": "A1",
            "secret__api_key": "sk-very-secret-value",
            "currency_list": ["CNY", "USD"],
        },
    )
    assert saved.status_code == 302
    config.refresh_from_db()
    assert config.enabled and config.options == {"app_id": "A1"}
    assert config.currencies == ["CNY", "USD"]
    assert config.get_secrets() == {"api_key": "sk-very-secret-value"}
    assert b"sk-very-secret-value" not in bytes(config.secrets_ciphertext)

    page = staff_client.get(url).content.decode()
    assert "sk-very-secret-value" not in page
    assert "leave blank to keep it" in page

    # A blank secret field keeps the stored value.
    staff_client.post(
        url, {"enabled": "on", "fee_rate": "0.01", "sort_order": "0", "option__app_id": "A2"}
    )
    config.refresh_from_db()
    assert config.get_secrets() == {"api_key": "sk-very-secret-value"}
    assert config.options == {"app_id": "A2"}
    assert (
        "sk-very-secret-value"
        not in staff_client.get("/admin/orders/gatewayconfig/").content.decode()
    )


def test_mark_paid_view(staff_client, stocked_product):
    order = place(stocked_product).order
    open_payment(order)
    url = f"/admin/orders/order/{order.pk}/mark-paid/"
    assert staff_client.get(url).status_code == 200

    incomplete = staff_client.post(
        url, {"gateway": "sandbox", "gateway_trade_id": "", "reason": ""}
    )
    assert incomplete.status_code == 200
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING

    done = staff_client.post(
        url, {"gateway": "sandbox", "gateway_trade_id": "TX-9", "reason": "seen in console"}
    )
    assert done.status_code == 302
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED
    change = OrderStatusChange.objects.get(order=order, to_status="paid")
    assert change.actor == staff_client.staff


def test_refund_view_refunds_once_per_submitted_form(staff_client, stocked_product):
    order = place(stocked_product).order
    pay(open_payment(order))
    url = f"/admin/orders/order/{order.pk}/refund/"
    page = staff_client.get(url)
    assert page.status_code == 200
    token = page.context["idempotency"]
    form = {"amount": "4.00", "reason": "one key bad", "idempotency": token}

    assert staff_client.post(url, form).status_code == 302
    assert staff_client.post(url, form).status_code == 302  # the double click

    refund = Refund.objects.get()
    assert refund.amount == 4 and refund.requested_by == staff_client.staff
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIALLY_REFUNDED

    too_much = staff_client.post(url, {"amount": "7.00", "reason": "x", "idempotency": "other"})
    assert too_much.status_code == 200
    assert Refund.objects.count() == 1


def test_payout_of_a_manual_refund(staff_client, stocked_product, settings):
    order = place(stocked_product).order
    pay(open_payment(order))
    settings.SANDBOX_GATEWAY_ENABLED = False
    from orders import services

    refund = services.request_refund(request_id="m", order_id=order.pk, reason="x", source="t")
    assert refund.status == Refund.Status.MANUAL
    url = f"/admin/orders/refund/{refund.pk}/payout/"
    assert staff_client.post(url, {"reference": "wire-77"}).status_code == 302
    refund.refresh_from_db()
    assert refund.paid_out_reference == "wire-77"


def test_notification_console_processes_again_and_inbox_lists_unmatched(
    staff_client, stocked_product, settings
):
    order = place(stocked_product).order
    payment = open_payment(order)
    settings.SANDBOX_GATEWAY_SECRET = "rotated-on-our-side-only"
    pay(payment, secret="sandbox-test-secret")  # the gateway's real secret: rejected here
    settings.SANDBOX_GATEWAY_SECRET = "sandbox-test-secret"
    pay(payment, reference="PUNKNOWN2")

    inbox = staff_client.get("/admin/orders/unmatchednotification/").content.decode()
    assert "PUNKNOWN2" in inbox
    assert inbox.count("unknown_payment") >= 1
    console = staff_client.get("/admin/orders/paymentnotification/")
    assert console.status_code == 200

    rejected = PaymentNotification.objects.get(payment_reference="", detail="invalid_signature")
    response = staff_client.post(
        "/admin/orders/paymentnotification/",
        {"action": "process_again", ACTION_CHECKBOX_NAME: [rejected.pk]},
    )
    assert response.status_code == 302
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED


@pytest.mark.parametrize(
    "url",
    [
        "/admin/orders/order/?attention=yes",
        "/admin/orders/refund/",
        "/admin/orders/gatewayconfig/",
        "/admin/orders/gatewayalert/",
        "/admin/orders/paymentevent/",
        "/admin/orders/payment/",
    ],
)
def test_console_pages_render(staff_client, url):
    assert staff_client.get(url).status_code == 200


def test_merchant_users_cannot_reach_the_staff_console(client, merchant):
    client.force_login(merchant.owner)
    response = client.get("/admin/orders/gatewayconfig/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
