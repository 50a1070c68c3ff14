"""Events are emitted once each, from the service layer after commit; merchant notices (e-mail
with HTML, in the merchant's language; Telegram) carry no card key; low stock fires once per
crossing."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from disputes import services as dispute_services
from ledger import services as ledger_services
from orders import services as order_services
from orders.models import Order
from shop.models import CardKey, Product
from tests.conftest import place
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.webhooks.conftest import buy
from webhooks import notifications, services
from webhooks.exceptions import TelegramError
from webhooks.models import MerchantNotice, NotificationSettings, WebhookDelivery

pytestmark = pytest.mark.django_db


def merchant_mail(merchant):
    return [m for m in mail.outbox if m.to == [merchant.owner.email]]


def html_of(message) -> str:
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


def test_each_event_is_emitted_once_and_no_payload_or_mail_carries_a_key(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant)
    keys = add_keys(product, 5)
    NotificationSettings.objects.create(merchant=merchant, notify_every_order=True)

    order = buy(product, django_capture_on_commit_callbacks, quantity=2)
    with django_capture_on_commit_callbacks(execute=True):
        dispute = dispute_services.open_dispute(
            order_id=order.pk,
            reason="key_invalid",
            message=f"this key does not work: {keys[0]}",  # buyers paste keys here
        )
    with django_capture_on_commit_callbacks(execute=True):
        order_services.request_refund(
            request_id="wh-1", order_id=order.pk, reason="dispute", source="test"
        )
        # The same refund requested again is the same refund: no second event.
        order_services.request_refund(
            request_id="wh-1", order_id=order.pk, reason="dispute", source="test"
        )

    counts = {
        event: WebhookDelivery.objects.filter(event=event).count()
        for event in ("order.paid", "order.delivered", "dispute.opened", "order.refunded")
    }
    assert counts == {
        "order.paid": 1,
        "order.delivered": 1,
        "dispute.opened": 1,
        "order.refunded": 1,
    }
    assert receiver.events() == [
        "order.paid",
        "order.delivered",
        "dispute.opened",
        "order.refunded",
    ]
    dispute_payload = json.loads(receiver.requests[2].body)["data"]
    assert dispute_payload["dispute"]["id"] == dispute.pk
    assert dispute_payload["order"]["buyer_email"] == "b***@example.com"
    refund_payload = json.loads(receiver.requests[3].body)["data"]
    assert refund_payload["refund"]["amount"] == "20.00"

    assert CardKey.objects.filter(product=product, status="sold").count() == 2
    everything = [r.body.decode() for r in receiver.requests]
    everything += [json.dumps(d.payload) for d in WebhookDelivery.objects.all()]
    to_merchant = merchant_mail(merchant)
    assert {m.subject for m in to_merchant} == {
        f"New order {order.number}",
        f"A buyer reported a problem with order {order.number}",
    }
    everything += [m.body + html_of(m) + m.subject for m in to_merchant]
    for text in everything:
        assert "buyer@example.com" not in text
        for key in keys:
            assert key not in text


def test_replayed_callback_emits_nothing_new(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    from tests.conftest import open_payment, place
    from tests.test_helpers_payments import pay

    order = place(stocked_product).order
    payment = open_payment(order)
    with django_capture_on_commit_callbacks(execute=True):
        pay(payment)
        pay(payment)  # the gateway retries the same notification
    assert sorted(WebhookDelivery.objects.values_list("event", flat=True)) == [
        "order.delivered",
        "order.paid",
    ]
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("language", "subject", "phrase"),
    [
        ("en", "is ready", "Open your order page to see your keys"),
        ("zh-hans", "订单", "打开订单页面查看您的卡密"),
    ],
)
def test_buyer_receipt_has_text_and_html_in_the_buyers_language(
    stocked_product, language, subject, phrase, django_capture_on_commit_callbacks
):
    order = buy(stocked_product, django_capture_on_commit_callbacks, language=language)
    [receipt] = [m for m in mail.outbox if m.to == ["buyer@example.com"]]
    html = html_of(receipt)
    assert subject in receipt.subject
    assert phrase in html
    assert "/o/" in receipt.body and "/o/" in html
    assert order.number in receipt.body


@pytest.mark.parametrize(
    ("language", "phrase"),
    [("en", "A buyer reported a problem with order"), ("zh-hans", "有买家报告了订单")],
)
def test_merchant_notices_have_text_and_html_in_the_merchants_language(
    merchant, language, phrase, django_capture_on_commit_callbacks
):
    NotificationSettings.objects.create(merchant=merchant, language=language)
    product = ProductFactory(merchant=merchant)
    keys = add_keys(product, 2)
    order = buy(product, django_capture_on_commit_callbacks, language="en")
    with django_capture_on_commit_callbacks(execute=True):
        dispute_services.open_dispute(order_id=order.pk, reason="key_used", message="used")

    [notice] = merchant_mail(merchant)
    assert phrase in notice.subject
    assert phrase in notice.body
    assert phrase in html_of(notice)
    assert order.number in html_of(notice)
    for key in keys:
        assert key not in notice.body + html_of(notice)


def test_manual_order_notice_is_html_and_text(merchant, django_capture_on_commit_callbacks):
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.MANUAL)
    order = buy(product, django_capture_on_commit_callbacks)
    [notice] = merchant_mail(merchant)
    assert order.number in notice.subject
    assert "Deliver it in your merchant centre" in notice.body
    assert "Deliver it in your merchant centre" in html_of(notice)


def test_no_notice_for_automatic_orders_unless_the_merchant_asks(
    merchant, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant)
    add_keys(product, 2)
    buy(product, django_capture_on_commit_callbacks)
    assert merchant_mail(merchant) == []


def test_low_stock_is_notified_once_per_crossing(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant, low_stock_threshold=3)
    add_keys(product, 5, prefix="A")

    def low_stock_mails():
        return [m for m in merchant_mail(merchant) if m.subject.startswith("Low stock")]

    buy(product, django_capture_on_commit_callbacks)  # 4 left
    assert low_stock_mails() == []
    buy(product, django_capture_on_commit_callbacks)  # 3 left: crossing
    buy(product, django_capture_on_commit_callbacks)  # 2 left: still low, no new notice
    [first] = low_stock_mails()
    assert "has 3 keys left" in first.body
    assert "has 3 keys left" in html_of(first)

    add_keys(product, 5, prefix="B")  # 7 left
    buy(product, django_capture_on_commit_callbacks)  # 6: above again, re-armed
    assert len(low_stock_mails()) == 1
    buy(product, django_capture_on_commit_callbacks, quantity=3)  # 3: second crossing
    assert len(low_stock_mails()) == 2

    stock_events = [json.loads(r.body) for r in receiver.requests if b'"stock.low"' in r.body]
    assert [e["id"] for e in stock_events] == [
        f"stock.low:{product.pk}:1",
        f"stock.low:{product.pk}:2",
    ]
    assert [e["data"]["product"]["stock"] for e in stock_events] == [3, 3]
    # A duplicated check changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.check_low_stock(product_id=product.pk) is False
    assert WebhookDelivery.objects.filter(event="stock.low").count() == 2


def test_telegram_notice_through_the_bot_api(
    merchant, stub, settings, caplog, django_capture_on_commit_callbacks
):
    token = "123456:SECRET-bot-token"
    sent = []

    def answer(request):
        sent.append(request)
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    stub.route("POST", f"/bot{token}/sendMessage", answer)
    settings.TELEGRAM_API_BASE_URL = stub.url
    prefs = services.save_notification_settings(
        merchant=merchant,
        language="en",
        email_enabled=True,
        notify_every_order=False,
        telegram_chat_id="-100777",
        telegram_token=token,
    )
    assert token.encode() not in bytes(prefs.telegram_token_ciphertext)
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.MANUAL)

    caplog.set_level(logging.DEBUG)
    order = buy(product, django_capture_on_commit_callbacks)
    # A duplicated task sends nothing more.
    from webhooks import tasks

    assert (
        tasks.send_merchant_notice_task(
            kind="order_paid", object_id=order.pk, object_key=str(order.pk), channel="telegram"
        )
        is False
    )

    [message] = sent
    body = json.loads(message.body)
    assert body["chat_id"] == "-100777"
    assert order.number in body["text"]
    assert token not in caplog.text
    assert MerchantNotice.objects.get(channel="telegram").sent_at is not None


def test_telegram_failure_is_released_for_the_retry_and_never_leaks_the_token(
    merchant, stub, settings, caplog
):
    token = "999:another-secret-token"
    codes = [502, 200]
    calls = []

    def answer(request):
        calls.append(request)
        return codes[len(calls) - 1], {"Content-Type": "application/json"}, b"{}"

    stub.route("POST", f"/bot{token}/sendMessage", answer)
    settings.TELEGRAM_API_BASE_URL = stub.url
    services.save_notification_settings(
        merchant=merchant,
        language="zh-hans",
        email_enabled=False,
        notify_every_order=False,
        telegram_chat_id="42",
        telegram_token=token,
    )
    product = ProductFactory(merchant=merchant, delivery_mode=Product.DeliveryMode.MANUAL)
    order = place(product).order
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PAID)
    caplog.set_level(logging.DEBUG)
    notice = {
        "kind": "order_paid",
        "object_id": order.pk,
        "object_key": str(order.pk),
        "channel": "telegram",
    }

    # The task's autoretry (SMTPException, OSError, TelegramError) sends it again later: the
    # failed attempt must leave the notice unclaimed and unsent.
    with pytest.raises(TelegramError) as failed:
        notifications.send_merchant_notice(**notice)
    assert token not in str(failed.value)
    row = MerchantNotice.objects.get(channel="telegram")
    assert (row.claimed_at, row.sent_at) == (None, None)
    assert notifications.send_merchant_notice(**notice) is True
    assert notifications.send_merchant_notice(**notice) is False

    assert len(calls) == 2
    assert "订单" in json.loads(calls[1].body)["text"]  # the merchant's language
    assert token not in caplog.text
    assert merchant_mail(merchant) == []  # e-mail notices turned off


def test_withdrawal_notices_requested_and_decided(
    merchant, django_capture_on_commit_callbacks, settings
):
    settings.WITHDRAWAL_MIN_AMOUNT = "10.00"
    product = ProductFactory(merchant=merchant, price=Decimal("100.00"))
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    ledger_services.settle_due_orders(now=timezone.now() + timedelta(days=30))
    staff = UserFactory(is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        first = ledger_services.request_withdrawal(
            merchant=merchant,
            amount=Decimal("50.00"),
            currency="CNY",
            payout_details="alipay: shop@example.com",
            actor=merchant.owner,
        )
    with django_capture_on_commit_callbacks(execute=True):
        ledger_services.reject_withdrawal(withdrawal_id=first.pk, note="wrong account", actor=staff)
    with django_capture_on_commit_callbacks(execute=True):
        second = ledger_services.request_withdrawal(
            merchant=merchant,
            amount=Decimal("20.00"),
            currency="CNY",
            payout_details="alipay: shop@example.com",
            actor=merchant.owner,
        )
        ledger_services.mark_withdrawal_paid(
            withdrawal_id=second.pk, payout_reference="BANK-7", actor=staff
        )

    subjects = [m.subject for m in merchant_mail(merchant)]
    assert subjects == [
        "Withdrawal of 50.00 CNY requested",
        "Withdrawal of 50.00 CNY rejected",
        "Withdrawal of 20.00 CNY requested",
        "Withdrawal of 20.00 CNY paid",
    ]
    rejected = merchant_mail(merchant)[1]
    assert "wrong account" in rejected.body and "wrong account" in html_of(rejected)
    assert "BANK-7" in html_of(merchant_mail(merchant)[3])
