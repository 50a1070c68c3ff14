"""Staff edit rules and the blacklist in /admin/, see every decision on the order and release or
refund held orders from the order list; the merchant sees a short note on its order."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client

from orders.models import Delivery, Order
from risk.models import ListEntry, RiskRule
from tests.conftest import open_payment, place, verify_otp
from tests.factories import UserFactory, add_keys
from tests.risk.conftest import add_rule
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    verify_otp(client, staff)
    return client


@pytest.fixture
def held_order(product):
    add_keys(product, 3)
    add_rule("amount", "15.00", "hold", stage="pay")
    order = place(product, quantity=2, email="buyer@example.com", buyer_ip="198.51.100.1").order
    pay(open_payment(order))
    order.refresh_from_db()
    assert order.status == Order.Status.HELD
    return order


def test_rules_and_blacklist_are_editable_in_admin(staff_client, merchant):
    added = staff_client.post(
        "/admin/risk/riskrule/add/",
        {
            "kind": "unpaid_ip",
            "stage": "create",
            "merchant": merchant.pk,
            "threshold": "4",
            "window_minutes": "60",
            "currency": "",
            "outcome": "block",
            "enabled": "on",
            "note": "",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    rule = RiskRule.objects.get()
    assert (rule.kind, rule.merchant, rule.threshold) == ("unpaid_ip", merchant, Decimal("4"))

    # A hold cannot happen before payment: a form error, nothing saved.
    refused = staff_client.post(
        f"/admin/risk/riskrule/{rule.pk}/change/",
        {
            "kind": "unpaid_ip",
            "stage": "create",
            "threshold": "4",
            "window_minutes": "60",
            "outcome": "hold",
            "enabled": "on",
        },
    )
    assert refused.status_code == 200
    assert RiskRule.objects.get().outcome == "block"
    assert staff_client.get("/admin/risk/riskrule/").status_code == 200

    entry = staff_client.post(
        "/admin/risk/listentry/add/",
        {"kind": "cidr", "value": "203.0.113.9/24", "reason": "abuse", "enabled": "on"},
    )
    assert entry.status_code == 302, entry.content.decode()[:2000]
    saved = ListEntry.objects.get()
    assert (saved.value, saved.created_by.username) == ("203.0.113.0/24", "ops")
    assert staff_client.get("/admin/risk/riskdecision/").status_code == 200


def test_decisions_show_on_the_staff_order_page(staff_client, held_order):
    page = staff_client.get(f"/admin/orders/order/{held_order.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Held for review" in html
    assert "amount 20.00 &gt; 15.00" in html
    assert "b***r@example.com" in html
    assert "198.51.100.1" in html


def test_staff_release_a_held_order_from_the_list(staff_client, held_order):
    response = staff_client.post(
        "/admin/orders/order/",
        {"action": "release_held", ACTION_CHECKBOX_NAME: [held_order.pk]},
    )
    assert response.status_code == 302
    assert Order.objects.get(pk=held_order.pk).status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=held_order).count() == 2


def test_staff_refund_a_held_order_from_the_list(staff_client, held_order):
    response = staff_client.post(
        "/admin/orders/order/",
        {"action": "refund_held", ACTION_CHECKBOX_NAME: [held_order.pk]},
    )
    assert response.status_code == 302
    assert Order.objects.get(pk=held_order.pk).status == Order.Status.REFUNDED
    assert not Delivery.objects.filter(order=held_order).exists()


def test_the_merchant_sees_a_short_note_and_no_buyer_data(held_order, merchant):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(merchant.owner)
    page = client.get(f"/merchant/orders/order/{held_order.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Held for review by the platform" in html
    assert "198.51.100.1" not in html and "b***r" not in html and "15.00" not in html
