"""The order page shows the payment's state live, and refunds; the hosted pay page shows what to
scan or where to send."""

import pytest
from django.test import Client

from orders import services
from orders.models import Payment
from tests.conftest import open_payment, place
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def test_waiting_failed_paid_and_refunded_states(stocked_product):
    placed = place(stocked_product)
    payment = open_payment(placed.order)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    url = f"/o/{placed.token}/"

    waiting = client.get(url).content.decode()
    assert 'data-payment-status="created"' in waiting
    assert 'http-equiv="refresh"' in waiting

    pay(payment, status="failed")
    failed = client.get(url).content.decode()
    assert 'data-payment-status="failed"' in failed
    assert "You can pay again" in failed

    retry = open_payment(placed.order)
    pay(retry)
    paid = client.get(url).content.decode()
    assert 'data-payment-status="succeeded"' in paid
    assert 'http-equiv="refresh"' not in paid

    services.request_refund(request_id="r", order_id=placed.order.pk, reason="x", source="t")
    refunded = client.get(url).content.decode()
    assert "Refunds" in refunded and "10.00 CNY" in refunded


def test_hosted_pay_page_shows_qr_address_and_amount(stocked_product):
    placed = place(stocked_product)
    payment = open_payment(placed.order)
    Payment.objects.filter(pk=payment.pk).update(
        gateway_data={
            "qr": "TXYZaddress",
            "address": "TXYZaddress",
            "pay_amount": "1.4321",
            "pay_currency": "USDT",
        }
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    page = client.get(f"/o/{placed.token}/pay/{payment.reference}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html and "TXYZaddress" in html and "1.4321 USDT" in html
    assert page["Refresh"] == "3"
    # Wrong token or a payment of another order: nothing.
    assert client.get(f"/o/{'0' * 64}/pay/{payment.reference}/").status_code == 404
    other = place(stocked_product)
    assert client.get(f"/o/{other.token}/pay/{payment.reference}/").status_code == 404
    # Once paid, the pay page sends the buyer to the order.
    pay(payment)
    assert client.get(f"/o/{placed.token}/pay/{payment.reference}/").status_code == 302
