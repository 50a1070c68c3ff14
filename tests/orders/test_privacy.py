"""Buyers' personal data: erased after the retention period (and on the buyer's request after the
dispute window) while the books stay exactly as they were; downloadable from the order page;
masked for merchants unless a dispute is open."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from disputes.models import Dispute
from ledger import selectors as ledger_selectors
from orders import privacy, selectors, services
from orders.models import (
    Delivery,
    Order,
    OrderStatusChange,
    Payment,
    PaymentNotification,
    Refund,
)
from orders.tasks import anonymise_buyer_data_task
from risk.models import RiskDecision
from tests.conftest import (
    assert_real_postgres_transactions,
    open_payment,
    place,
    post_callback,
    sandbox_notification,
    verify_otp,
)
from tests.factories import UserFactory, add_keys
from tests.pages import find_all

RETENTION = 180


@pytest.fixture(autouse=True)
def _privacy_settings(settings):
    settings.BUYER_DATA_RETENTION_DAYS = RETENTION
    settings.DISPUTE_WINDOW_DAYS = 7


# --- helpers -------------------------------------------------------------------------------------
def buy(product, *, email="buyer@example.com", pay=True, view=True, **kwargs):
    """A checkout from a known IP and browser, paid through a signed callback that came through
    a proxy (X-Forwarded-For stored in the notification's headers), keys viewed once."""
    placed = place(
        product,
        email=email,
        query_password="secret-pw",
        buyer_ip="203.0.113.10",
        user_agent="Checkout/1.0",
        **kwargs,
    )
    if pay:
        body, headers = sandbox_notification(open_payment(placed.order))
        response = post_callback(Client(), body, {**headers, "X-Forwarded-For": "198.51.100.77"})
        assert response.status_code == 200, response.content
    if view:
        Client().get(
            reverse("orders:detail", args=[placed.token]),
            REMOTE_ADDR="203.0.113.11",
            HTTP_USER_AGENT="Viewer/2.0",
        )
    placed.order.refresh_from_db()
    return placed


def backdate(order: Order, days: int) -> None:
    """Move everything that happened to an order ``days`` into the past."""
    delta = timedelta(days=days)
    Order.objects.filter(pk=order.pk).update(
        created_at=F("created_at") - delta,
        expires_at=F("expires_at") - delta,
        paid_at=F("paid_at") - delta,
        delivered_at=F("delivered_at") - delta,
        keys_first_viewed_at=F("keys_first_viewed_at") - delta,
    )
    OrderStatusChange.objects.filter(order=order).update(created_at=F("created_at") - delta)
    Refund.objects.filter(order=order).update(
        created_at=F("created_at") - delta, completed_at=F("completed_at") - delta
    )
    Dispute.objects.filter(order=order).update(created_at=F("created_at") - delta)
    order.refresh_from_db()


def open_dispute(order: Order, message: str = "") -> Dispute:
    return Dispute.objects.create(
        order=order,
        reason=Dispute.Reason.KEY_INVALID,
        message=message,
        answer_due_at=timezone.now() + timedelta(days=2),
    )


def expired_order(product, *, days_ago: int) -> Order:
    placed = buy(product, pay=False, view=False)
    services.expire_pending_orders(now=timezone.now() + timedelta(hours=1))
    placed.order.refresh_from_db()
    assert placed.order.status == Order.Status.EXPIRED
    backdate(placed.order, days_ago)
    return placed.order


def notifications_of(order: Order):
    references = Payment.objects.filter(order=order).values("reference")
    return PaymentNotification.objects.filter(payment_reference__in=references)


def accounting_snapshot(orders: list[Order]) -> dict[str, object]:
    ids = [o.pk for o in orders]
    return {
        "orders": list(
            Order.objects.filter(pk__in=ids)
            .order_by("pk")
            .values_list("number", "status", "quantity", "unit_price", "amount", "currency")
        ),
        "payments": list(
            Payment.objects.filter(order__in=ids)
            .order_by("pk")
            .values_list("reference", "amount", "status", "gateway_trade_id", "completed_at")
        ),
        "refunds": list(
            Refund.objects.filter(order__in=ids).order_by("pk").values_list("amount", "status")
        ),
        "deliveries": list(
            Delivery.objects.filter(order__in=ids)
            .order_by("pk")
            .values_list("card_key_id", "created_at")
        ),
        "history": list(
            OrderStatusChange.objects.filter(order__in=ids)
            .order_by("pk")
            .values_list("from_status", "to_status", "created_at")
        ),
    }


def assert_books_balanced() -> None:
    assert ledger_selectors.unbalanced_journal_ids() == []
    assert all(total == 0 for total in ledger_selectors.trial_balance().values())


# --- the retention job ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_job_erases_only_orders_settled_longer_than_the_retention_period(product):
    add_keys(product, 10)
    due = buy(product).order
    backdate(due, RETENTION + 5)
    refunded = buy(product).order
    services.request_refund(request_id="r-old", order_id=refunded.pk, reason="x", source="test")
    refunded.refresh_from_db()
    assert refunded.status == Order.Status.REFUNDED
    backdate(refunded, RETENTION + 1)
    old_expired = expired_order(product, days_ago=RETENTION + 30)
    recent = buy(product).order
    backdate(recent, RETENTION - 1)
    disputed = buy(product).order
    open_dispute(disputed)
    backdate(disputed, RETENTION + 60)
    old_pending = buy(product, pay=False, view=False).order
    backdate(old_pending, RETENTION + 60)
    owed_refund = buy(product).order
    Refund.objects.create(
        request_id="r-owed",
        order=owed_refund,
        payment=owed_refund.payments.get(),
        amount=Decimal("1.00"),
        currency="CNY",
        status=Refund.Status.MANUAL,
        reason="to pay out",
        source="test",
    )
    backdate(owed_refund, RETENTION + 60)
    everything = [due, refunded, old_expired, recent, disputed, old_pending, owed_refund]
    balances_before = ledger_selectors.merchant_balances(merchant=product.merchant)
    accounts_before = accounting_snapshot(everything)
    untouched_notifications = list(
        notifications_of(recent).values_list("pk", "remote_ip", "headers")
    )
    assert due.keys_first_viewed_ip == "203.0.113.11"
    assert notifications_of(due).get().headers["X-Forwarded-For"] == "198.51.100.77"

    screening = RiskDecision.objects.create(
        order=due,
        stage="pay",
        outcome=RiskDecision.Outcome.ALLOW,
        ip="203.0.113.10",
        email_hash="f" * 64,
        email_masked="b***@example.com",
        device_id="d" * 32,
        user_agent="Checkout/1.0",
        created_at=due.created_at,
    )

    erased = anonymise_buyer_data_task.delay().get()

    assert erased == 3
    anonymised = set(Order.objects.filter(anonymised_at__isnull=False).values_list("pk", flat=True))
    assert anonymised == {due.pk, refunded.pk, old_expired.pk}
    due.refresh_from_db()
    assert due.email == f"anon-{due.number}@anonymised.invalid"
    assert (due.buyer_ip, due.buyer_user_agent) == (None, "")
    assert (due.keys_first_viewed_ip, due.keys_first_viewed_user_agent) == (None, "")
    assert (due.query_password_hash, due.manual_inputs) == ("", {})
    assert due.keys_first_viewed_at is not None  # the moment stays as evidence, not the address
    notification = notifications_of(due).get()
    assert notification.remote_ip is None
    assert "X-Forwarded-For" not in notification.headers
    assert "X-Sandbox-Signature" in notification.headers  # still processable
    screening.refresh_from_db()
    assert (screening.ip, screening.email_hash, screening.email_masked) == (None, "", "")
    assert (screening.device_id, screening.user_agent) == ("", "")
    assert screening.outcome == RiskDecision.Outcome.ALLOW
    assert (
        list(notifications_of(recent).values_list("pk", "remote_ip", "headers"))
        == untouched_notifications
    )
    for kept in (recent, disputed, old_pending, owed_refund):
        kept.refresh_from_db()
        assert (kept.email, kept.buyer_ip) == ("buyer@example.com", "203.0.113.10")
    # The accounting did not move by a cent.
    assert accounting_snapshot(everything) == accounts_before
    assert ledger_selectors.merchant_balances(merchant=product.merchant) == balances_before
    assert_books_balanced()


@pytest.mark.django_db
def test_job_is_idempotent(product):
    add_keys(product, 2)
    order = buy(product).order
    backdate(order, RETENTION + 1)
    assert privacy.anonymise_settled_orders() == 1
    first = Order.objects.get(pk=order.pk)

    assert privacy.anonymise_settled_orders() == 0
    assert Order.objects.get(pk=order.pk).anonymised_at == first.anonymised_at
    assert_books_balanced()


@pytest.mark.django_db
def test_job_batches_through_every_due_order(product):
    add_keys(product, 5)
    orders = [buy(product, view=False).order for _ in range(5)]
    for order in orders:
        backdate(order, RETENTION + 1)
    assert privacy.anonymise_settled_orders(batch_size=2) == 5
    assert Order.objects.filter(anonymised_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_retention_period_is_configurable(product, settings):
    settings.BUYER_DATA_RETENTION_DAYS = 30
    add_keys(product, 2)
    older = buy(product).order
    backdate(older, 31)
    younger = buy(product).order
    backdate(younger, 29)
    assert privacy.anonymise_settled_orders() == 1
    assert list(Order.objects.filter(anonymised_at__isnull=False)) == [older]


@pytest.mark.django_db
def test_retention_never_undercuts_the_dispute_window(product, settings):
    settings.BUYER_DATA_RETENTION_DAYS = 1
    settings.DISPUTE_WINDOW_DAYS = 14
    add_keys(product, 1)
    order = buy(product).order
    backdate(order, 10)
    assert privacy.anonymise_settled_orders() == 0
    backdate(order, 5)
    assert privacy.anonymise_settled_orders() == 1


@pytest.mark.django_db
def test_recent_activity_restarts_the_clock(product):
    """A refund yesterday on an order delivered long ago: the order is not settled yet."""
    add_keys(product, 1)
    order = buy(product).order
    backdate(order, RETENTION + 30)
    services.request_refund(request_id="late", order_id=order.pk, reason="x", source="test")
    assert privacy.anonymise_settled_orders() == 0


@pytest.mark.django_db(transaction=True)
def test_two_jobs_at_once_erase_each_order_once(product):
    assert_real_postgres_transactions()
    add_keys(product, 6)
    orders = [buy(product).order for _ in range(6)]
    for order in orders:
        backdate(order, RETENTION + 1)
    barrier = threading.Barrier(2)

    def run(_: int) -> int | Exception:
        try:
            barrier.wait(timeout=30)
            return privacy.anonymise_settled_orders()
        except Exception as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, range(2)))

    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 6
    assert Order.objects.filter(anonymised_at__isnull=False).count() == 6
    assert_books_balanced()


# --- what erased orders still do -----------------------------------------------------------------
@pytest.mark.django_db
def test_erased_order_page_works_but_lookup_by_placeholder_email_does_not(product, client):
    add_keys(product, 1)
    placed = buy(product)
    backdate(placed.order, RETENTION + 1)
    privacy.anonymise_settled_orders()
    order = Order.objects.get(pk=placed.order.pk)

    page = client.get(reverse("orders:detail", args=[placed.token]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "buyer@example.com" not in html and order.email not in html
    assert len(find_all(page.content, cls="anonymised")) == 1
    assert len(find_all(page.content, "code", cls="key")) == 1
    assert (
        selectors.find_order_for_lookup(number=order.number, email=order.email, query_password="")
        is None
    )


@pytest.mark.django_db
def test_erased_order_records_no_new_first_view(product, client):
    add_keys(product, 1)
    placed = buy(product, view=False)
    backdate(placed.order, RETENTION + 1)
    privacy.anonymise_settled_orders()
    client.get(reverse("orders:detail", args=[placed.token]), REMOTE_ADDR="203.0.113.99")
    placed.order.refresh_from_db()
    assert (placed.order.keys_first_viewed_at, placed.order.keys_first_viewed_ip) == (None, None)


@pytest.mark.django_db
def test_refund_of_an_erased_order_mails_nobody(product, django_capture_on_commit_callbacks):
    add_keys(product, 1)
    order = buy(product).order
    backdate(order, RETENTION + 1)
    privacy.anonymise_settled_orders()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_refund(request_id="r", order_id=order.pk, reason="x", source="t")
    assert refund.status == Refund.Status.SUCCEEDED
    assert mail.outbox == []
    assert_books_balanced()


# --- the buyer's download ------------------------------------------------------------------------
@pytest.mark.django_db
def test_download_holds_the_orders_data_and_no_secrets(product, client):
    plaintexts = add_keys(product, 2)
    placed = buy(product, quantity=2)
    order = placed.order
    open_dispute(order, message="second key fails")

    response = client.get(reverse("orders:data_download", args=[placed.token]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="order-{order.number}-data.json"'
    )
    assert (
        response["Cache-Control"].startswith("no-store") or "no-store" in response["Cache-Control"]
    )
    data = json.loads(response.content)
    assert set(data) == {
        "order",
        "payments",
        "refunds",
        "status_history",
        "deliveries",
        "first_view",
        "disputes",
    }
    assert data["order"]["number"] == order.number
    assert data["order"]["email"] == "buyer@example.com"
    assert data["order"]["amount"] == "20.00"
    assert data["order"]["buyer_ip"] == "203.0.113.10"
    assert data["order"]["query_password_set"] is True
    payment = order.payments.get()
    assert data["payments"] == [
        {
            "reference": payment.reference,
            "gateway": "sandbox",
            "amount": "20.00",
            "currency": "CNY",
            "status": "succeeded",
            "created_at": payment.created_at.isoformat(),
            "completed_at": payment.completed_at.isoformat(),
        }
    ]
    assert [(h["from"], h["to"]) for h in data["status_history"]] == [
        ("", "pending"),
        ("pending", "paid"),
        ("paid", "delivered"),
    ]
    assert [d["key"] for d in data["deliveries"]] == plaintexts
    assert data["first_view"]["ip"] == "203.0.113.11"
    assert data["disputes"][0]["message"] == "second key fails"
    body = response.content.decode()
    for secret in (order.token_hash, order.token_nonce, order.query_password_hash, placed.token):
        assert secret not in body
    for field in ("token_hash", "token_nonce", "query_password_hash", "receipt_claimed_at"):
        assert field not in body


@pytest.mark.django_db
def test_download_leaves_out_keys_the_order_page_no_longer_shows(product, client):
    add_keys(product, 1)
    placed = buy(product)
    services.request_refund(request_id="r", order_id=placed.order.pk, reason="x", source="t")
    data = client.get(reverse("orders:data_download", args=[placed.token])).json()
    assert [d["key"] for d in data["deliveries"]] == [None]
    assert [r["status"] for r in data["refunds"]] == ["succeeded"]


@pytest.mark.django_db
def test_download_with_a_wrong_token_is_404(product, client):
    add_keys(product, 1)
    buy(product)
    assert client.get(reverse("orders:data_download", args=["0" * 64])).status_code == 404


@pytest.mark.django_db
def test_order_page_links_the_download_and_the_policy(product, client):
    add_keys(product, 1)
    placed = buy(product)
    page = client.get(reverse("orders:detail", args=[placed.token]))
    hrefs = {a.attrs.get("href") for a in find_all(page.content, "a")}
    assert reverse("orders:data_download", args=[placed.token]) in hrefs
    assert reverse("orders:privacy") in hrefs


# --- the buyer's erasure request -----------------------------------------------------------------
def erase(client, token, confirm=True):
    data = {"confirm": "yes"} if confirm else {}
    return client.post(reverse("orders:anonymise", args=[token]), data)


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.django_db
def test_erasure_before_the_dispute_window_passed_is_refused(product, client):
    add_keys(product, 1)
    placed = buy(product)

    response = erase(client, placed.token)

    assert response.status_code == 302
    assert response["Location"] == reverse("orders:detail", args=[placed.token])
    [message] = flash(response)
    assert "dispute window" in message
    placed.order.refresh_from_db()
    assert placed.order.anonymised_at is None
    assert placed.order.email == "buyer@example.com"


@pytest.mark.django_db
def test_erasure_after_the_dispute_window_erases_at_once(product, client):
    add_keys(product, 1)
    placed = buy(product)
    page = client.get(reverse("orders:detail", args=[placed.token]))
    assert (
        len(find_all(page.content, "form", action=reverse("orders:anonymise", args=[placed.token])))
        == 1
    )

    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = erase(client, placed.token)

    [message] = flash(response)
    assert "erased" in message
    placed.order.refresh_from_db()
    assert placed.order.anonymised_at is not None
    assert placed.order.email == privacy.anonymous_email(placed.order.number)
    page = client.get(reverse("orders:detail", args=[placed.token]))
    assert page.status_code == 200
    assert "buyer@example.com" not in page.content.decode()
    assert (
        find_all(page.content, "form", action=reverse("orders:anonymise", args=[placed.token]))
        == []
    )
    data = client.get(reverse("orders:data_download", args=[placed.token])).json()
    assert data["order"]["email"] is None
    assert data["order"]["buyer_ip"] is None
    assert data["first_view"]["ip"] is None
    assert_books_balanced()


@pytest.mark.django_db
def test_erasure_needs_the_confirmation_box(product, client):
    add_keys(product, 1)
    placed = buy(product)
    backdate(placed.order, 8)
    erase(client, placed.token, confirm=False)
    placed.order.refresh_from_db()
    assert placed.order.anonymised_at is None


@pytest.mark.django_db
def test_erasure_is_refused_while_a_dispute_is_open(product, client):
    add_keys(product, 1)
    placed = buy(product)
    open_dispute(placed.order)
    backdate(placed.order, 30)
    [message] = flash(erase(client, placed.token))
    assert "dispute" in message
    placed.order.refresh_from_db()
    assert placed.order.anonymised_at is None


@pytest.mark.django_db
def test_erasure_of_an_unpaid_order_is_refused(product, client):
    add_keys(product, 1)
    placed = buy(product, pay=False, view=False)
    erase(client, placed.token)
    placed.order.refresh_from_db()
    assert placed.order.anonymised_at is None


@pytest.mark.django_db
def test_erasure_with_a_wrong_token_is_404_and_get_is_405(product, client):
    add_keys(product, 1)
    placed = buy(product)
    assert erase(client, "0" * 64).status_code == 404
    assert client.get(reverse("orders:anonymise", args=[placed.token])).status_code == 405


@pytest.mark.django_db
def test_second_erasure_request_changes_nothing(product):
    add_keys(product, 1)
    order = buy(product).order
    backdate(order, 8)
    first = privacy.request_anonymisation(order=order)
    second = privacy.request_anonymisation(order=Order.objects.get(pk=order.pk))
    assert first.anonymised_at == second.anonymised_at is not None


# --- who sees the email --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("bob@example.com", "b***@example.com"),
        ("x@y.cn", "x***@y.cn"),
        ("not-an-email", "***"),
    ],
)
def test_mask_email(email, masked):
    assert privacy.mask_email(email) == masked


@pytest.fixture
def merchant_orders(product):
    add_keys(product, 2)
    quiet = buy(product, email="bob@example.com").order
    disputed = buy(product, email="carol@example.org").order
    open_dispute(disputed)
    return quiet, disputed


@pytest.mark.django_db
def test_merchant_sees_masked_emails_unless_a_dispute_is_open(merchant_orders, client, merchant):
    quiet, disputed = merchant_orders
    client.force_login(merchant.owner)

    changelist = client.get(reverse("merchant_admin:orders_order_changelist"))
    quiet_page = client.get(reverse("merchant_admin:orders_order_change", args=[quiet.pk]))
    disputed_page = client.get(reverse("merchant_admin:orders_order_change", args=[disputed.pk]))

    assert changelist.status_code == quiet_page.status_code == disputed_page.status_code == 200
    listing = changelist.content.decode()
    assert "b***@example.com" in listing and "bob@example.com" not in listing
    assert "carol@example.org" in listing
    assert "b***@example.com" in quiet_page.content.decode()
    assert "bob@example.com" not in quiet_page.content.decode()
    assert "carol@example.org" in disputed_page.content.decode()


@pytest.mark.django_db
def test_merchant_email_search_is_exact_only(merchant_orders, client, merchant):
    quiet, _ = merchant_orders
    client.force_login(merchant.owner)
    url = reverse("merchant_admin:orders_order_changelist")
    assert quiet.number in client.get(url, {"q": "bob@example.com"}).content.decode()
    assert quiet.number not in client.get(url, {"q": "bob@"}).content.decode()


@pytest.mark.django_db
def test_dispute_resolved_masks_the_email_again(merchant_orders, client, merchant):
    _, disputed = merchant_orders
    Dispute.objects.filter(order=disputed).update(
        status=Dispute.Status.RESOLVED,
        resolution=Dispute.Resolution.REJECTED,
        resolution_reason="The key works.",
        resolved_at=timezone.now(),
    )
    client.force_login(merchant.owner)
    page = client.get(reverse("merchant_admin:orders_order_change", args=[disputed.pk]))
    assert "carol@example.org" not in page.content.decode()
    assert "c***@example.org" in page.content.decode()


@pytest.mark.django_db
def test_staff_see_full_emails(merchant_orders, client):
    quiet, _ = merchant_orders
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    verify_otp(client, staff)
    page = client.get(reverse("admin:orders_order_change", args=[quiet.pk]))
    assert page.status_code == 200
    assert "bob@example.com" in page.content.decode()


@pytest.mark.django_db
def test_retention_job_erases_who_was_screened_in_old_refused_checkouts(settings):
    settings.BUYER_DATA_RETENTION_DAYS = 30
    now = timezone.now()
    identity = {
        "ip": "203.0.113.50",
        "email_hash": "e" * 64,
        "email_masked": "c***@example.com",
        "device_id": "a" * 32,
        "user_agent": "Refused/1.0",
    }
    old = RiskDecision.objects.create(
        order=None,
        stage="order",
        outcome=RiskDecision.Outcome.BLOCK,
        reason="blacklisted",
        created_at=now - timedelta(days=31),
        **identity,
    )
    recent = RiskDecision.objects.create(
        order=None,
        stage="order",
        outcome=RiskDecision.Outcome.BLOCK,
        reason="blacklisted",
        created_at=now - timedelta(days=29),
        **identity,
    )

    privacy.anonymise_settled_orders(now=now)

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.ip, old.email_hash, old.email_masked, old.device_id, old.user_agent) == (
        None,
        "",
        "",
        "",
        "",
    )
    assert (old.outcome, old.reason) == (RiskDecision.Outcome.BLOCK, "blacklisted")
    assert recent.ip == "203.0.113.50" and recent.email_hash == "e" * 64
