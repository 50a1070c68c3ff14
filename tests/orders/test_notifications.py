"""E-mails go out at most once per order even when Celery delivers a task twice, and a failed send
is retried rather than lost."""

from smtplib import SMTPException

import pytest
from django.core import mail

from orders import notifications
from orders.models import Order
from shop.models import Product
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered_order(product):
    add_keys(product, 1)
    order = place(product).order
    pay(open_payment(order))  # on_commit never fires inside the test transaction: no mail yet
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


def test_receipt_task_delivered_twice_sends_one_mail(delivered_order):
    assert notifications.send_order_receipt(order_id=delivered_order.pk) is True
    assert notifications.send_order_receipt(order_id=delivered_order.pk) is False
    assert len(mail.outbox) == 1


def test_failed_receipt_send_releases_the_claim_for_the_retry(delivered_order, monkeypatch):
    def broken_send(*args, **kwargs):
        raise SMTPException("relay down")

    monkeypatch.setattr(notifications, "send_mail", broken_send)
    with pytest.raises(SMTPException):
        notifications.send_order_receipt(order_id=delivered_order.pk)
    assert Order.objects.get(pk=delivered_order.pk).receipt_sent_at is None
    monkeypatch.undo()

    assert notifications.send_order_receipt(order_id=delivered_order.pk) is True
    assert len(mail.outbox) == 1


def test_no_receipt_for_an_undelivered_order(stocked_product):
    order = place(stocked_product).order
    assert notifications.send_order_receipt(order_id=order.pk) is False
    assert Order.objects.get(pk=order.pk).receipt_sent_at is None


def test_merchant_notice_is_sent_once(merchant):
    product = ProductFactory(
        merchant=merchant,
        delivery_mode=Product.DeliveryMode.MANUAL,
        manual_fields=[{"name": "uid", "label": "UID"}],
    )
    order = place(product, manual_inputs={"uid": "42"}).order
    pay(open_payment(order))
    assert notifications.notify_merchant_order_paid(order_id=order.pk) is True
    assert notifications.notify_merchant_order_paid(order_id=order.pk) is False
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [merchant.owner.email]


def test_a_sender_killed_mid_send_leaves_a_lease_the_repair_job_takes_over(delivered_order):
    from datetime import timedelta

    from django.utils import timezone

    from orders import services

    # A worker took the lease and died before sending (kill -9: nothing released it).
    assert services.claim_receipt(order_id=delivered_order.pk) is True
    assert notifications.send_order_receipt(order_id=delivered_order.pk) is False
    assert services.repair_paid_orders() == 0
    assert mail.outbox == []

    # Time passes: the lease goes stale.
    Order.objects.filter(pk=delivered_order.pk).update(
        delivered_at=timezone.now() - timedelta(minutes=15),
        receipt_claimed_at=timezone.now() - services.RECEIPT_LEASE - timedelta(minutes=1),
    )
    services.repair_paid_orders()
    # The repair job queued the task (eager here); the stale lease was taken over.
    assert len(mail.outbox) == 1
    assert Order.objects.get(pk=delivered_order.pk).receipt_sent_at is not None
