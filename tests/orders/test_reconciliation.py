"""Never lose a paid order: reconciliation, repair, crash safety, late and closed-order payments,
staff tools and gateway alerts."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from orders import services
from orders.exceptions import IllegalTransition, InvalidOrderInput
from orders.models import (
    Delivery,
    GatewayAlert,
    GatewayConfig,
    Order,
    OrderStatusChange,
    Payment,
    PaymentEvent,
    PaymentNotification,
    Refund,
)
from shop.models import CardKey
from tests.conftest import (
    clear_this_runs_cache,
    open_payment,
    place,
    post_callback,
    sandbox_notification,
)
from tests.factories import UserFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


def paid_at_gateway_only(payment: Payment) -> tuple[bytes, dict[str, str]]:
    """The buyer paid, the gateway knows it, but its notification never reached us."""
    return sandbox_notification(payment)


def age(payment: Payment, minutes: int = 2) -> None:
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_reconcile_delivers_a_payment_whose_notification_never_came(
    stocked_product, django_capture_on_commit_callbacks
):
    order = place(stocked_product, quantity=2).order
    payment = open_payment(order)
    paid_at_gateway_only(payment)
    fresh = open_payment(place(stocked_product).order)
    paid_at_gateway_only(fresh)
    age(payment)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.reconcile_pending_payments() == 1

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert Delivery.objects.filter(order=order).count() == 2
    assert len(mail.outbox) == 1
    # Less than a minute old: not queried yet.
    assert Payment.objects.get(pk=fresh.pk).status == Payment.Status.CREATED
    # Running again (or the late notification arriving) changes nothing.
    Payment.objects.filter(pk=payment.pk).update(last_queried_at=None)
    assert services.reconcile_pending_payments() == 0
    body, headers = sandbox_notification(payment)
    assert post_callback(Client(), body, headers).status_code == 409
    assert Delivery.objects.filter(order=order).count() == 2


def test_reconcile_leaves_open_payments_open(stocked_product):
    payment = open_payment(place(stocked_product).order)
    age(payment)
    assert services.reconcile_pending_payments() == 0
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CREATED
    assert payment.last_queried_at is not None


def test_crash_between_claiming_keys_and_commit_leaves_nothing_half_done(
    stocked_product, monkeypatch
):
    order = place(stocked_product, quantity=2).order
    payment = open_payment(order)
    keys_before = sorted(CardKey.objects.values_list("id", "status", "order_id"))

    from orders import lock_objects

    sell = lock_objects.sell_held_keys_and_deliver

    def worker_dies(**kwargs):
        sell(**kwargs)  # the keys are sold and their deliveries written, uncommitted
        raise RuntimeError("worker killed mid-transaction")

    monkeypatch.setattr(lock_objects, "sell_held_keys_and_deliver", worker_dies)
    body, headers = sandbox_notification(payment)
    response = post_callback(Client(raise_request_exception=False), body, headers)
    assert response.status_code == 500
    monkeypatch.undo()

    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not PaymentEvent.objects.exists()
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.CREATED
    assert sorted(CardKey.objects.values_list("id", "status", "order_id")) == keys_before

    # The next run (the gateway's retry, or reconciliation) delivers exactly once.
    age(payment)
    assert services.reconcile_pending_payments() == 1
    assert post_callback(Client(), body, headers).status_code == 409
    assert Delivery.objects.filter(order=order).count() == 2


@pytest.mark.parametrize("closing", ["expire", "cancel"])
def test_payment_after_expiry_or_cancel_takes_the_late_path(
    product, closing, django_capture_on_commit_callbacks
):
    add_keys(product, 1)
    order = place(product).order
    payment = open_payment(order)
    if closing == "expire":
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        services.expire_pending_orders()
    else:
        services.cancel_order(order_id=order.pk, source="buyer")
    assert CardKey.objects.get().status == CardKey.Status.AVAILABLE

    # Stock allows: delivered.
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(payment).status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED


@pytest.mark.parametrize("closing", ["expire", "cancel"])
def test_late_payment_without_stock_is_refunded_and_the_buyer_told(
    product, closing, django_capture_on_commit_callbacks
):
    add_keys(product, 1)
    order = place(product).order
    payment = open_payment(order)
    if closing == "expire":
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        services.expire_pending_orders()
    else:
        services.cancel_order(order_id=order.pk, source="buyer")
    place(product)  # someone else takes the only key

    with django_capture_on_commit_callbacks(execute=True):
        assert pay(payment).status_code == 200

    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert not Delivery.objects.filter(order=order).exists()
    refund = Refund.objects.get(order=order)
    assert refund.request_id == f"auto:late:{payment.reference}"
    assert [m for m in mail.outbox if order.email in m.to and "Refund" in m.subject]


def test_notification_first_then_expiry_changes_nothing(stocked_product):
    order = place(stocked_product).order
    pay(open_payment(order))
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert services.expire_pending_orders() == 0
    with pytest.raises(IllegalTransition):
        services.cancel_order(order_id=order.pk, source="buyer")
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED


def test_manual_mark_paid_runs_the_callback_path_and_is_audited(
    stocked_product, django_capture_on_commit_callbacks
):
    order = place(stocked_product).order
    open_payment(order)
    staff = UserFactory(is_staff=True)
    with pytest.raises(InvalidOrderInput) as exc:
        services.mark_paid_manually(
            order_id=order.pk, gateway_name="sandbox", gateway_trade_id="", reason="", actor=staff
        )
    assert set(exc.value.errors) == {"reason", "gateway_trade_id"}
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING

    with django_capture_on_commit_callbacks(execute=True):
        event = services.mark_paid_manually(
            order_id=order.pk,
            gateway_name="sandbox",
            gateway_trade_id="T-BANK-1",
            reason="buyer sent a screenshot, seen in the gateway console",
            actor=staff,
        )

    assert event.outcome == PaymentEvent.Outcome.DELIVERED
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    paid_change = OrderStatusChange.objects.get(order=order, to_status="paid")
    assert paid_change.actor == staff and "screenshot" in paid_change.note
    assert len(mail.outbox) == 1
    # Marking it again is a no-op.
    services.mark_paid_manually(
        order_id=order.pk,
        gateway_name="sandbox",
        gateway_trade_id="T-BANK-1",
        reason="again",
        actor=staff,
    )
    assert Delivery.objects.filter(order=order).count() == 1


def test_reprocess_a_notification_after_fixing_the_configuration(stocked_product, settings):
    order = place(stocked_product).order
    payment = open_payment(order)
    settings.SANDBOX_GATEWAY_SECRET = "misconfigured"
    body, headers = sandbox_notification(payment, secret="sandbox-test-secret")
    assert post_callback(Client(), body, headers).status_code == 400
    rejected = PaymentNotification.objects.get()
    assert rejected.detail == "invalid_signature"
    assert Order.objects.get(pk=order.pk).status == Order.Status.PENDING

    settings.SANDBOX_GATEWAY_SECRET = "sandbox-test-secret"
    reply = services.reprocess_notification(notification_id=rejected.pk)

    assert reply.status == 200
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED
    assert services.reprocess_notification(notification_id=rejected.pk).status == 409
    assert Delivery.objects.filter(order=order).count() == 1


def test_amount_mismatch_is_flagged_for_staff_and_never_delivered(stocked_product):
    order = place(stocked_product).order
    payment = open_payment(order)
    assert pay(payment, amount="0.01").status_code == 400
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert "amount_mismatch" in order.needs_attention
    unmatched = pay(payment, reference="PNOSUCHPAYMENT")
    assert unmatched.status_code == 400
    assert PaymentNotification.objects.filter(detail="unknown_payment").count() == 1


def test_gateway_alerts_when_callbacks_fail_or_stop(
    stocked_product, django_capture_on_commit_callbacks
):
    UserFactory(is_staff=True, email="ops@example.com")
    GatewayConfig.objects.create(gateway="sandbox", enabled=True)
    payment = open_payment(place(stocked_product).order)
    for _ in range(5):
        pay(payment, secret="forged")

    with django_capture_on_commit_callbacks(execute=True):
        alerts = services.check_gateway_health()
        again = services.check_gateway_health()

    assert [a.kind for a in alerts] == [GatewayAlert.Kind.FAILING]
    assert again == []
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com"]

    PaymentNotification.objects.all().delete()
    for _ in range(3):
        age(open_payment(place(stocked_product).order), minutes=30)
    with django_capture_on_commit_callbacks(execute=True):
        silent = services.check_gateway_health()
    assert [a.kind for a in silent] == [GatewayAlert.Kind.SILENT]
    assert len(mail.outbox) == 2


def test_redis_flush_does_not_lose_paid_undelivered_orders(
    product, django_capture_on_commit_callbacks
):
    """20 orders paid while stock was short; Redis (cache, queued tasks) is flushed; the repair
    job finds them in the database after the restock and delivers each once."""
    add_keys(product, 20)
    orders = [place(product).order for _ in range(20)]
    payments = [open_payment(order) for order in orders]
    # Their reservations lapse and another buyer's big order takes all 20 keys.
    CardKey.objects.filter(order__in=orders).update(
        reserved_until=timezone.now() - timedelta(minutes=1)
    )
    product.max_quantity = 20
    product.save()
    place(product, quantity=20)
    for payment in payments:
        pay(payment)  # on_commit not run: whatever was queued is lost with Redis below
    assert Order.objects.filter(status=Order.Status.UNFULFILLED).count() == 20
    clear_this_runs_cache()

    add_keys(product, 20, prefix="RESTOCK")
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(
        paid_at=timezone.now() - timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.repair_paid_orders() == 20
        assert services.repair_paid_orders() == 0

    for order in orders:
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        assert Delivery.objects.filter(order=order).count() == 1
        assert order.needs_attention == ""
    receipts = [m for m in mail.outbox if "ready" in m.subject]
    assert len(receipts) == 20


def test_repair_flags_what_it_still_cannot_deliver(product):
    add_keys(product, 1)
    order = place(product).order
    payment = open_payment(order)
    CardKey.objects.filter(order=order).update(reserved_until=timezone.now() - timedelta(minutes=1))
    place(product)
    pay(payment)
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=5))

    assert services.repair_paid_orders() == 0
    order.refresh_from_db()
    assert order.status == Order.Status.UNFULFILLED
    assert "not enough stock" in order.needs_attention
