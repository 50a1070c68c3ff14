"""Gaps closed after the first round: low stock re-armed by a restock and crossed by voiding,
the webhook connection pinned to the checked address, bounded response reads, HTML for every
buyer e-mail, plain text that is not HTML-escaped, the merchant's language before they chose one,
and no secret in the staff lists."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client

from disputes import services as dispute_services
from merchants.models import MerchantApplication
from orders import services as order_services
from shop import services as shop_services
from shop.models import CardKey
from tests.conftest import place as place_order
from tests.conftest import verify_otp
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.webhooks.conftest import buy
from webhooks import services, signing, transport
from webhooks.models import NotificationSettings, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def merchant_mail(merchant):
    return [m for m in mail.outbox if m.to == [merchant.owner.email]]


def buyer_mail():
    return [m for m in mail.outbox if m.to == ["buyer@example.com"]]


def html_of(message) -> str:
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


def low_stock_events(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests if b'"stock.low"' in r.body]


# --- low stock ------------------------------------------------------------------------------
def test_a_restock_re_arms_the_alert_even_if_one_order_takes_it_straight_back_below(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant, low_stock_threshold=3)
    add_keys(product, 4, prefix="A")
    buy(product, django_capture_on_commit_callbacks)  # 3 left: first crossing
    assert len(low_stock_events(receiver)) == 1

    add_keys(product, 3, prefix="B")  # 6 left: above the threshold again, no sale in between
    buy(product, django_capture_on_commit_callbacks, quantity=4)  # 2 left: second crossing

    events = low_stock_events(receiver)
    assert [e["id"] for e in events] == [f"stock.low:{product.pk}:1", f"stock.low:{product.pk}:2"]
    assert [e["data"]["product"]["stock"] for e in events] == [3, 2]
    assert len([m for m in merchant_mail(merchant) if m.subject.startswith("Low stock")]) == 2


def test_a_restock_that_stays_at_or_below_the_threshold_does_not_re_arm(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant, low_stock_threshold=5)
    add_keys(product, 7, prefix="A")
    buy(product, django_capture_on_commit_callbacks, quantity=2)  # 5: crossing
    buy(product, django_capture_on_commit_callbacks)  # 4: still low
    add_keys(product, 1, prefix="B")  # 5: still at the threshold, not re-armed
    buy(product, django_capture_on_commit_callbacks)  # 4: no second notice
    assert len(low_stock_events(receiver)) == 1


def test_voiding_keys_below_the_threshold_is_a_crossing(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant, low_stock_threshold=3)
    add_keys(product, 6)
    ids = list(CardKey.objects.filter(product=product).values_list("id", flat=True)[:3])
    with django_capture_on_commit_callbacks(execute=True):
        assert shop_services.void_keys(merchant_id=merchant.pk, key_ids=ids) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert shop_services.void_keys(merchant_id=merchant.pk, key_ids=ids) == 0
    [event] = low_stock_events(receiver)
    assert event["data"]["product"] == {
        "id": product.pk,
        "title": product.display_title,
        "stock": 3,
        "threshold": 3,
    }


def test_a_replacement_key_from_stock_can_be_the_crossing(
    merchant, endpoint, receiver, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant, low_stock_threshold=3)
    add_keys(product, 5)
    order = buy(product, django_capture_on_commit_callbacks)  # 4 left
    with django_capture_on_commit_callbacks(execute=True):
        dispute = dispute_services.open_dispute(order_id=order.pk, reason="key_used", message="x")
    with django_capture_on_commit_callbacks(execute=True):
        dispute_services.resolve_dispute(
            dispute_id=dispute.pk,
            action="replace",
            reason="sent a new one",
            actor=merchant.owner,
            role="merchant",
            request_id="replace-1",
        )
    [event] = low_stock_events(receiver)
    assert event["data"]["product"]["stock"] == 3


def test_events_leave_only_after_the_payment_commits(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    from tests.conftest import open_payment, place
    from tests.test_helpers_payments import pay

    order = place(stocked_product).order
    payment = open_payment(order)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert pay(payment).status_code == 200
    # Committed but the callbacks not yet run: nothing emitted, nothing sent.
    assert WebhookDelivery.objects.count() == 0 and receiver.requests == []
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()
    assert receiver.events() == ["order.paid", "order.delivered"]


def test_a_rolled_back_transaction_emits_nothing(
    stocked_product, endpoint, receiver, django_capture_on_commit_callbacks
):
    from django.db import transaction

    order = place_order(stocked_product).order
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.emit_after_commit(event="order.paid", object_id=order.pk)
        raise RuntimeError("rolled back")
    assert callbacks == []
    assert WebhookDelivery.objects.count() == 0 and receiver.requests == []


# --- the connection -------------------------------------------------------------------------
def test_the_host_is_resolved_once_and_the_connection_goes_to_that_address(
    merchant, stub, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """The SSRF check's DNS answer is the one used: no second lookup a rebinding DNS server
    could answer differently. The receiver still sees its own host name."""
    port = stub.url.rsplit(":", 1)[1]
    endpoint = services.create_endpoint(
        merchant=merchant, url=f"http://localhost:{port}/hook", events=["order.paid"]
    )
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def spy(host, *args, **kwargs):
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)

    [request] = receiver.requests
    assert request.headers["Host"] == f"localhost:{port}"
    assert looked_up.count("localhost") == 1
    assert signing.verify_signature(
        secret=endpoint.get_secret(),
        body=request.body,
        header=request.headers[signing.SIGNATURE_HEADER],
    )
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_pinned_urls_keep_the_name_for_tls():
    url, extensions = transport._pinned("https://hooks.example.com:8443/x?a=1", "93.184.216.34")
    assert (url, extensions) == (
        "https://93.184.216.34:8443/x?a=1",
        {"sni_hostname": "hooks.example.com"},
    )
    url, extensions = transport._pinned("http://hooks.example.com/x", "2606:2800:220:1::1")
    assert (url, extensions) == ("http://[2606:2800:220:1::1]/x", {})
    assert transport._pinned("https://93.184.216.34/x", "93.184.216.34") == (
        "https://93.184.216.34/x",
        {},
    )


def test_a_huge_answer_is_not_read_whole(
    merchant, stub, receiver, django_capture_on_commit_callbacks
):
    stub.route("POST", "/hook", lambda request: (200, {"Content-Type": "text/plain"}, b"x" * 2**21))
    services.create_endpoint(merchant=merchant, url=receiver.url, events=["order.paid"])
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code) == ("succeeded", 200)
    assert delivery.response_excerpt == "x" * 500


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
    merchant, receiver, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A public-looking name that resolves to loopback (``*.localtest.me``-style tricks)."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    services.create_endpoint(
        merchant=merchant, url=f"http://hooks.example.com:{port}/hook", events=["order.paid"]
    )
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_error) == ("failed", "refused target: private address")
    assert receiver.requests == []


class TricklingServer:
    """Accepts connections on 127.0.0.1 and answers a byte every ``interval`` seconds, forever:
    each read is fast, the answer never ends."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                    if self.stop.wait(self.interval):
                        break
                    try:
                        conn.sendall(bytes([byte]) if byte != 10 else b"a")
                    except OSError:
                        break

    def __enter__(self) -> TricklingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def test_a_receiver_trickling_its_answer_cannot_hold_the_worker(
    merchant, settings, django_capture_on_commit_callbacks
):
    settings.OUTBOUND_HTTP_TIMEOUT_SECONDS = 1.0
    settings.WEBHOOK_ATTEMPT_TIMEOUT_SECONDS = 1.5
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    with TricklingServer() as slow:
        services.create_endpoint(merchant=merchant, url=slow.url, events=["order.paid"])
        started = time.monotonic()
        buy(product, django_capture_on_commit_callbacks)
        took = time.monotonic() - started
    delivery = WebhookDelivery.objects.get()
    assert took < 6
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, None)
    assert delivery.last_error == "ReadTimeout"
    assert delivery.attempt_log.get().error == "ReadTimeout"


def test_a_refused_connection_is_logged_and_retried(merchant, django_capture_on_commit_callbacks):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    services.create_endpoint(
        merchant=merchant, url=f"http://127.0.0.1:{port}/hook", events=["order.paid"]
    )
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "pending",
        1,
        "ConnectError",
    )
    assert delivery.next_attempt_at is not None


def test_a_host_that_does_not_resolve_right_now_is_retried_not_refused(
    merchant, monkeypatch, django_capture_on_commit_callbacks
):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.com":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    services.create_endpoint(
        merchant=merchant, url="https://hooks.example.com/hook", events=["order.paid"]
    )
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "pending",
        1,
        "host does not resolve",
    )
    assert delivery.next_attempt_at is not None


# --- e-mails --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "phrase"),
    [("en", "We are refunding 10.00 CNY"), ("zh-hans", "订单")],
)
def test_refund_notice_has_text_and_html_in_the_buyers_language(
    stocked_product, language, phrase, django_capture_on_commit_callbacks
):
    order = buy(stocked_product, django_capture_on_commit_callbacks, language=language)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        order_services.request_refund(
            request_id="mail-1", order_id=order.pk, reason="test", source="test"
        )
    [notice] = buyer_mail()
    html = html_of(notice)
    assert phrase in notice.body and phrase in html
    assert "/o/" in html and f'lang="{language}"' in html


def test_buyer_dispute_mails_have_html_with_the_text_escaped(
    merchant, django_capture_on_commit_callbacks
):
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    order = buy(product, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        dispute = dispute_services.open_dispute(order_id=order.pk, reason="key_used", message="x")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        dispute_services.post_message(
            dispute_id=dispute.pk,
            role="merchant",
            text="Try <b>this</b> & that",
            author=merchant.owner,
        )
    with django_capture_on_commit_callbacks(execute=True):
        dispute_services.contest_dispute(
            dispute_id=dispute.pk, actor=merchant.owner, message="It worked <here>"
        )
    message_mail, event_mail = buyer_mail()
    assert "Try <b>this</b> & that" in message_mail.body
    assert "Try &lt;b&gt;this&lt;/b&gt; &amp; that" in html_of(message_mail)
    assert "The store contests your problem report" in html_of(event_mail)
    assert "It worked &lt;here&gt;" in html_of(event_mail)
    assert "It worked <here>" in event_mail.body


def test_plain_text_parts_and_subjects_are_not_html_escaped(
    merchant, django_capture_on_commit_callbacks
):
    merchant.name = "Tom & Jerry's"
    merchant.save(update_fields=["name"])
    product = ProductFactory(merchant=merchant, title="Gift <card> & more", low_stock_threshold=5)
    add_keys(product, 2)
    buy(product, django_capture_on_commit_callbacks)
    [receipt] = buyer_mail()
    assert "Gift <card> & more" in receipt.body
    assert "Tom & Jerry's" in receipt.body
    assert "Gift &lt;card&gt; &amp; more" in html_of(receipt)
    [low] = [m for m in merchant_mail(merchant) if m.subject.startswith("Low stock")]
    assert low.subject == "Low stock: Gift <card> & more"
    assert "Gift <card> & more" in low.body
    assert "Gift &lt;card&gt; &amp; more" in html_of(low)


def test_merchant_notices_default_to_the_language_the_merchant_applied_in(
    merchant, django_capture_on_commit_callbacks
):
    MerchantApplication.objects.create(
        user=UserFactory(),
        store_name=merchant.name,
        slug=merchant.slug,
        contact="c",
        goods="g",
        language="zh-hans",
        status=MerchantApplication.Status.APPROVED,
        merchant=merchant,
    )
    assert not NotificationSettings.objects.filter(merchant=merchant).exists()
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    order = buy(product, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        dispute_services.open_dispute(order_id=order.pk, reason="key_used", message="used")
    [notice] = merchant_mail(merchant)
    assert "有买家报告了订单" in notice.subject
    assert 'lang="zh-hans"' in html_of(notice)

    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    form = client.get("/merchant/webhooks/notificationsettings/add/")
    assert form.context["adminform"].form.initial["language"] == "zh-hans"


def test_withdrawal_notice_is_wired_to_the_ledger_and_sent_once(
    merchant, django_capture_on_commit_callbacks, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from ledger import services as ledger_services
    from webhooks import tasks

    settings.WITHDRAWAL_MIN_AMOUNT = "10.00"
    product = ProductFactory(merchant=merchant, price=Decimal("100.00"))
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)
    ledger_services.settle_due_orders(now=timezone.now() + timedelta(days=30))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        withdrawal = ledger_services.request_withdrawal(
            merchant=merchant,
            amount=Decimal("30.00"),
            currency="CNY",
            payout_details="alipay: shop@example.com",
            actor=merchant.owner,
        )
    assert callbacks  # queued after commit, not sent inside the transaction
    # Celery delivering the task again sends nothing more.
    assert (
        tasks.send_merchant_notice_task(
            kind="withdrawal_requested",
            object_id=withdrawal.pk,
            object_key=str(withdrawal.pk),
            channel="email",
        )
        is False
    )
    assert [m.subject for m in merchant_mail(merchant)] == ["Withdrawal of 30.00 CNY requested"]


# --- secrets in lists -----------------------------------------------------------------------
def test_staff_lists_never_show_bot_tokens_or_signing_secrets(merchant):
    token = "777:staff-list-token"
    services.save_notification_settings(
        merchant=merchant,
        language="en",
        email_enabled=True,
        notify_every_order=False,
        telegram_chat_id="1",
        telegram_token=token,
    )
    endpoint = services.create_endpoint(
        merchant=merchant, url="https://hooks.example.com/x", events=["order.paid"]
    )
    secret = endpoint.get_secret()
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(staff)
    verify_otp(client, staff)
    prefs = NotificationSettings.objects.get(merchant=merchant)
    for url in (
        "/admin/webhooks/notificationsettings/",
        f"/admin/webhooks/notificationsettings/{prefs.pk}/change/",
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        "/merchant/webhooks/webhookendpoint/",
    ):
        page = client.get(url) if url.startswith("/admin/") else _merchant_get(merchant, url)
        assert page.status_code == 200, url
        content = page.content.decode()
        assert token not in content and secret not in content, url
    assert WebhookEndpoint.objects.count() == 1


def _merchant_get(merchant, url):
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(merchant.owner)
    return client.get(url)
