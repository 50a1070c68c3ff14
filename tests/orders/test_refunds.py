"""The one refund service: idempotent, bounded by what was paid, through the gateway or manual;
a refund the gateway takes but finishes later books nothing until it succeeds."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from ledger import selectors as ledger_selectors
from ledger.models import Journal
from orders import services
from orders.exceptions import RefundNotAllowed
from orders.gateways.stripe_checkout import StripeCheckoutGateway
from orders.models import GatewayConfig, Order, Refund
from shop.models import CardKey
from tests.conftest import open_payment, place
from tests.factories import ProductFactory, UserFactory, add_keys
from tests.orders.gateways.test_stripe import (
    StripeStub,
    configure,
    event_body,
    open_stripe_payment,
    send,
    stripe_signature,
)
from tests.stub_server import StubServer
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(product):
    add_keys(product, 3)
    order = place(product, quantity=2).order  # 20.00 CNY
    payment = open_payment(order)
    pay(payment)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order, payment


def test_full_refund_through_the_gateway(delivered, django_capture_on_commit_callbacks):
    order, _payment = delivered
    staff = UserFactory(is_staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_refund(
            request_id="r-1", order_id=order.pk, reason="bad keys", source="staff", actor=staff
        )

    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.amount == Decimal("20.00") and refund.currency == "CNY"
    assert refund.gateway_refund_id.startswith("SBXR")
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    change = order.status_changes.order_by("-id").first()
    assert (change.actor, change.note) == (staff, "bad keys")
    assert len(mail.outbox) == 1 and order.number in mail.outbox[0].subject


def test_same_request_twice_refunds_once(delivered, django_capture_on_commit_callbacks):
    order, _payment = delivered
    with django_capture_on_commit_callbacks(execute=True):
        first = services.request_refund(
            request_id="r-1", order_id=order.pk, amount=Decimal("5.00"), reason="x", source="t"
        )
        second = services.request_refund(
            request_id="r-1", order_id=order.pk, amount=Decimal("5.00"), reason="x", source="t"
        )
    assert first.pk == second.pk
    assert Refund.objects.count() == 1
    assert len(mail.outbox) == 1
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIALLY_REFUNDED


def test_partial_refunds_never_exceed_what_was_paid(delivered):
    order, payment = delivered
    services.request_refund(
        request_id="a", order_id=order.pk, amount=Decimal("15.00"), reason="x", source="t"
    )
    with pytest.raises(RefundNotAllowed):
        services.request_refund(
            request_id="b", order_id=order.pk, amount=Decimal("5.01"), reason="x", source="t"
        )
    assert services.refundable_amount(payment=payment) == Decimal("5.00")
    rest = services.request_refund(request_id="c", order_id=order.pk, reason="x", source="t")
    assert rest.amount == Decimal("5.00")
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    with pytest.raises(RefundNotAllowed):
        services.request_refund(request_id="d", order_id=order.pk, reason="x", source="t")
    assert Refund.objects.count() == 2


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1"), Decimal("20.01")])
def test_bad_amounts_change_nothing(delivered, amount):
    order, _payment = delivered
    with pytest.raises(RefundNotAllowed):
        services.request_refund(
            request_id="bad", order_id=order.pk, amount=amount, reason="x", source="t"
        )
    assert not Refund.objects.exists()
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED


def test_unpaid_order_cannot_be_refunded(stocked_product):
    order = place(stocked_product).order
    open_payment(order)
    with pytest.raises(RefundNotAllowed):
        services.request_refund(request_id="x", order_id=order.pk, reason="x", source="t")


def test_gateway_without_refunds_records_a_manual_refund(
    delivered, settings, django_capture_on_commit_callbacks
):
    order, _payment = delivered
    # The sandbox switched off: its refund API is out of reach, so staff pay it out.
    settings.SANDBOX_GATEWAY_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_refund(
            request_id="m", order_id=order.pk, reason="x", source="staff"
        )
    assert refund.status == Refund.Status.MANUAL
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert "by hand" in mail.outbox[0].body
    staff = UserFactory(is_staff=True)
    services.record_manual_payout(refund_id=refund.pk, reference="bank-123", actor=staff)
    refund.refresh_from_db()
    assert refund.paid_out_reference == "bank-123" and refund.completed_at is not None


def test_declined_refund_is_flagged_and_retried_with_the_same_request(delivered, settings):
    from django.core.cache import cache

    order, payment = delivered
    trade_key = f"sandbox:trade:{payment.reference}"
    remote = cache.get(trade_key)
    cache.delete(trade_key)  # the gateway no longer knows the trade: it declines

    refund = services.request_refund(request_id="d", order_id=order.pk, reason="x", source="t")

    assert refund.status == Refund.Status.FAILED
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert "refund d" in order.needs_attention

    cache.set(trade_key, remote)
    again = services.request_refund(request_id="d", order_id=order.pk, reason="x", source="t")
    assert again.pk == refund.pk and again.status == Refund.Status.SUCCEEDED
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED


def test_refunding_an_unfulfilled_order_releases_the_keys_it_holds(product):
    from datetime import timedelta

    from django.utils import timezone

    add_keys(product, 2)
    order = place(product, quantity=2).order
    payment = open_payment(order)
    CardKey.objects.filter(order=order).update(reserved_until=timezone.now() - timedelta(minutes=1))
    place(product, quantity=1)  # takes one of the lapsed keys
    pay(payment)
    order.refresh_from_db()
    assert order.status == Order.Status.UNFULFILLED

    services.request_refund(request_id="u", order_id=order.pk, reason="no stock", source="t")

    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert not CardKey.objects.filter(order=order).exists()
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE).count() == 1


def test_payment_for_a_refunded_order_is_refunded_not_delivered(
    delivered, django_capture_on_commit_callbacks
):
    order, _payment = delivered
    services.request_refund(request_id="r", order_id=order.pk, reason="x", source="t")
    late = open_payment_on_closed(order)
    deliveries = order.deliveries.count()

    with django_capture_on_commit_callbacks(execute=True):
        assert pay(late).status_code == 200

    assert order.deliveries.count() == deliveries
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert Refund.objects.get(payment=late).status == Refund.Status.SUCCEEDED


def open_payment_on_closed(order):
    from orders import tokens
    from orders.models import Payment

    return Payment.objects.create(
        reference=tokens.new_payment_reference(),
        order=order,
        gateway="sandbox",
        amount=order.amount,
        currency=order.currency,
    )


def test_gateway_config_secrets_are_sealed_and_bound_to_their_gateway(db):
    config = GatewayConfig.objects.create(gateway="alipay")
    config.set_secrets({"app_private_key": "-----BEGIN PRIVATE KEY-----secret"})
    config.save()
    stored = bytes(GatewayConfig.objects.get(pk=config.pk).secrets_ciphertext)
    assert b"secret" not in stored
    assert (
        GatewayConfig.objects.get(pk=config.pk).get_secrets()["app_private_key"].endswith("secret")
    )
    other = GatewayConfig.objects.create(
        gateway="epay",
        secrets_key_id=config.secrets_key_id,
        secrets_nonce=config.secrets_nonce,
        secrets_ciphertext=config.secrets_ciphertext,
    )
    from shop.vault import VaultError

    with pytest.raises(VaultError):
        other.get_secrets()


# --- refunds the gateway takes but finishes later (Stripe "pending") ----------------------------
# Driven through the real Stripe adapter against the local stub of the Stripe API (its
# ``GET /v1/refunds/{id}`` answers what ``settle_refund`` decided), and the repair job that asks.


@pytest.fixture
def stripe_stub():
    import secrets

    with StubServer() as server:
        yield StripeStub(server, "sk_test_" + secrets.token_urlsafe(24))


@pytest.fixture
def stripe_paid(stripe_stub, merchant):
    import secrets

    webhook_secret = "whsec_" + secrets.token_urlsafe(24)
    configure(stripe_stub, {"secret_key": stripe_stub.secret_key, "webhook_secret": webhook_secret})
    product = ProductFactory(merchant=merchant, title="Game key", currency="USD")
    add_keys(product, 4)
    payment = open_stripe_payment(product)  # 2 × 10.00 USD
    body = event_body(payment, intent="pi_3Ppending")
    assert send(body, stripe_signature(body, webhook_secret)).status_code == 200
    payment.refresh_from_db()
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.DELIVERED
    # Its receipt went out (so the repair job below sends none: the outbox holds refund notices).
    services.mark_receipt_sent(order_id=payment.order_id)
    stripe_stub.refund_status = "pending"
    return payment


def later(minutes: int = 10):
    return timezone.now() + timedelta(minutes=minutes)


def refund_journals(refund: Refund) -> int:
    return Journal.objects.filter(reference=f"refund:{refund.pk}").count()


def assert_books_balance() -> None:
    assert ledger_selectors.unbalanced_journal_ids() == []
    assert all(total == 0 for total in ledger_selectors.trial_balance().values())


def test_pending_refund_books_nothing_until_the_gateway_finishes_it(
    stripe_paid, stripe_stub, django_capture_on_commit_callbacks
):
    payment = stripe_paid
    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_refund(
            request_id="p-1", order_id=payment.order_id, reason="buyer asked", source="staff"
        )

    assert refund.status == Refund.Status.PENDING
    assert refund.gateway_refund_id.startswith("re_")
    assert refund.completed_at is None
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED and not order.needs_attention
    assert refund_journals(refund) == 0 and mail.outbox == []
    # Still counted against the payment: nobody can refund the same money again meanwhile.
    assert services.refundable_amount(payment=payment) == Decimal(0)
    with pytest.raises(RefundNotAllowed):
        services.request_refund(request_id="p-2", order_id=order.pk, reason="x", source="t")
    # The same request again returns the pending refund and sends nothing.
    assert (
        services.request_refund(request_id="p-1", order_id=order.pk, reason="x", source="t").pk
        == refund.pk
    )
    assert len(stripe_stub.refund_posts) == 1

    # Still pending at Stripe: the repair job asks, and nothing changes.
    with django_capture_on_commit_callbacks(execute=True):
        services.repair_paid_orders(now=later())
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.PENDING
    assert len(stripe_stub.refund_gets) == 1 and len(stripe_stub.refund_posts) == 1
    assert refund_journals(refund) == 0 and mail.outbox == []

    stripe_stub.settle_refund(refund.gateway_refund_id, "succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        services.repair_paid_orders(now=later())

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED and refund.completed_at is not None
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert refund_journals(refund) == 1
    assert len(mail.outbox) == 1 and order.number in mail.outbox[0].subject
    assert len(stripe_stub.refund_posts) == 1  # asked about, never sent again
    assert_books_balance()

    # Replays: the job again, the service again, the same answer again: nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        services.repair_paid_orders(now=later())
        services._execute_refund(refund_id=refund.pk)
        services.request_refund(request_id="p-1", order_id=order.pk, reason="x", source="t")
        services._record_refund_result(
            refund_id=refund.pk,
            asked_about=refund.gateway_refund_id,
            result=StripeCheckoutGateway(GatewayConfig.objects.get(gateway="stripe")).query_refund(
                payment=payment, refund_id=refund.gateway_refund_id, amount=refund.amount
            ),
        )
    assert refund_journals(refund) == 1 and len(mail.outbox) == 1
    assert Order.objects.get(pk=order.pk).status_changes.filter(to_status="refunded").count() == 1
    assert_books_balance()


def test_pending_refund_that_fails_is_failed_flagged_and_retried_as_a_new_refund(
    stripe_paid, stripe_stub, django_capture_on_commit_callbacks
):
    payment = stripe_paid
    refund = services.request_refund(
        request_id="f-1", order_id=payment.order_id, reason="buyer asked", source="staff"
    )
    first_id = refund.gateway_refund_id
    stripe_stub.settle_refund(first_id, "failed", failure_reason="expired_or_canceled_card")

    with django_capture_on_commit_callbacks(execute=True):
        services.repair_paid_orders(now=later())

    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert refund.failure == "stripe refund failed: expired_or_canceled_card"
    assert refund.gateway_refund_id == first_id
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.DELIVERED
    assert "refund f-1 failed" in order.needs_attention
    assert refund_journals(refund) == 0 and mail.outbox == []
    # The money did not go back: it is refundable again (staff may also pay it by hand).
    assert services.refundable_amount(payment=payment) == payment.amount
    # The job leaves failed refunds to staff, and a replay of the answer changes nothing.
    services.repair_paid_orders(now=later())
    assert len(stripe_stub.refund_gets) == 1
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.FAILED

    # Staff retry the same request: a new refund at Stripe (the first key would only replay the
    # failed one), which succeeds.
    stripe_stub.refund_status = "succeeded"
    with django_capture_on_commit_callbacks(execute=True):
        again = services.request_refund(
            request_id="f-1", order_id=order.pk, reason="buyer asked", source="staff"
        )
    assert again.pk == refund.pk and again.status == Refund.Status.SUCCEEDED
    assert again.gateway_refund_id != first_id and again.failure == ""
    first_key, retry_key = (r.headers["Idempotency-Key"] for r in stripe_stub.refund_posts)
    assert first_key != retry_key
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert refund_journals(refund) == 1 and len(mail.outbox) == 1
    assert_books_balance()


def test_a_retry_repeated_after_a_crash_is_one_refund_at_the_gateway(stripe_paid, stripe_stub):
    payment = stripe_paid
    refund = services.request_refund(
        request_id="c-1", order_id=payment.order_id, reason="x", source="staff"
    )
    stripe_stub.settle_refund(refund.gateway_refund_id, "canceled")
    services.repair_paid_orders(now=later())
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.FAILED

    stripe_stub.refund_status = "pending"
    services.request_refund(request_id="c-1", order_id=payment.order_id, reason="x", source="t")
    retried = Refund.objects.get(pk=refund.pk)
    assert retried.status == Refund.Status.PENDING
    # Crash before the answer was recorded: the row still names the failed attempt.
    Refund.objects.filter(pk=refund.pk).update(
        status=Refund.Status.FAILED, gateway_refund_id=refund.gateway_refund_id
    )
    services.request_refund(request_id="c-1", order_id=payment.order_id, reason="x", source="t")
    assert Refund.objects.get(pk=refund.pk).gateway_refund_id == retried.gateway_refund_id
    keys = [r.headers["Idempotency-Key"] for r in stripe_stub.refund_posts]
    assert keys[1] == keys[2] != keys[0]
    assert len(stripe_stub.refunds) == 2  # the canceled one and one retry, never a third


def test_an_outage_while_asking_leaves_the_refund_pending(
    stripe_paid, stripe_stub, django_capture_on_commit_callbacks
):
    payment = stripe_paid
    refund = services.request_refund(
        request_id="o-1", order_id=payment.order_id, reason="x", source="staff"
    )
    stripe_stub.settle_refund(refund.gateway_refund_id, "succeeded")
    stripe_stub.refund_get_reply = (500, {"error": {"type": "api_error"}})

    services.repair_paid_orders(now=later())

    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING and refund.failure == ""
    assert not Order.objects.get(pk=payment.order_id).needs_attention
    assert len(stripe_stub.refund_posts) == 1

    stripe_stub.refund_get_reply = None
    with django_capture_on_commit_callbacks(execute=True):
        services.repair_paid_orders(now=later())
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.SUCCEEDED
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.REFUNDED


def test_the_order_counts_only_refunds_that_returned_money(stripe_paid, stripe_stub):
    payment = stripe_paid
    stripe_stub.refund_status = "succeeded"
    first = services.request_refund(
        request_id="s-1", order_id=payment.order_id, amount=Decimal("5.00"), reason="x", source="t"
    )
    assert first.status == Refund.Status.SUCCEEDED
    stripe_stub.refund_status = "pending"
    rest = services.request_refund(
        request_id="s-2", order_id=payment.order_id, reason="x", source="t"
    )
    assert (rest.status, rest.amount) == (Refund.Status.PENDING, Decimal("15.00"))
    order = Order.objects.get(pk=payment.order_id)
    assert order.status == Order.Status.PARTIALLY_REFUNDED  # not refunded while 15.00 is pending

    stripe_stub.settle_refund(rest.gateway_refund_id, "succeeded")
    services.repair_paid_orders(now=later())
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert refund_journals(first) == refund_journals(rest) == 1
    assert_books_balance()


def test_a_refund_pending_for_minutes_only_is_not_asked_about_yet(stripe_paid, stripe_stub):
    refund = services.request_refund(
        request_id="n-1", order_id=stripe_paid.order_id, reason="x", source="staff"
    )
    services.repair_paid_orders()
    assert stripe_stub.refund_gets == []
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.PENDING


def test_a_pending_refund_is_never_failed_because_its_gateway_is_switched_off(
    stripe_paid, stripe_stub
):
    refund = services.request_refund(
        request_id="d-1", order_id=stripe_paid.order_id, reason="x", source="staff"
    )
    GatewayConfig.objects.filter(gateway="stripe").update(enabled=False)
    stripe_stub.settle_refund(refund.gateway_refund_id, "succeeded")

    services.repair_paid_orders(now=later())

    refund.refresh_from_db()
    assert (refund.status, refund.failure) == (Refund.Status.PENDING, "")
    assert stripe_stub.refund_gets == [] and len(stripe_stub.refund_posts) == 1

    GatewayConfig.objects.filter(gateway="stripe").update(enabled=True)
    services.repair_paid_orders(now=later())
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.SUCCEEDED


def refund_event(gateway_refund_id: str, *, event_id: str, status: str = "succeeded") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(timezone.now().timestamp()),
        "livemode": False,
        "type": "refund.updated",
        "data": {
            "object": {
                "id": gateway_refund_id,
                "object": "refund",
                "status": status,
                "amount": 2000,
                "currency": "usd",
            }
        },
    }
    return json.dumps(event, indent=2).encode()


def test_a_refund_webhook_makes_us_ask_at_once_and_decides_nothing_itself(
    stripe_paid, stripe_stub, django_capture_on_commit_callbacks
):
    payment = stripe_paid
    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_refund(
            request_id="w-1", order_id=payment.order_id, reason="buyer asked", source="staff"
        )
    assert refund.status == Refund.Status.PENDING
    secret = "whsec_refund_events_test_secret"
    configure(stripe_stub, {"secret_key": stripe_stub.secret_key, "webhook_secret": secret})

    # The report says "succeeded", Stripe (asked) says pending: the report decides nothing.
    body = refund_event(refund.gateway_refund_id, event_id="evt_1Refund1")
    with django_capture_on_commit_callbacks(execute=True):
        assert send(body, stripe_signature(body, secret)).status_code == 200
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.PENDING
    assert len(stripe_stub.refund_gets) == 1
    assert refund_journals(refund) == 0

    # Stripe settles it; its next report makes us ask again, and now it is booked, once.
    stripe_stub.settle_refund(refund.gateway_refund_id, "succeeded")
    body = refund_event(refund.gateway_refund_id, event_id="evt_1Refund2")
    with django_capture_on_commit_callbacks(execute=True):
        assert send(body, stripe_signature(body, secret)).status_code == 200
        assert send(body, stripe_signature(body, secret)).status_code == 200  # a replay
    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund_journals(refund) == 1
    assert Order.objects.get(pk=payment.order_id).status == Order.Status.REFUNDED
    assert len(stripe_stub.refund_gets) == 2  # the replay found nothing pending to ask about

    # A report about a refund we do not have, or a forged one, asks nothing and changes nothing.
    stranger = refund_event("re_3NotOurs", event_id="evt_1Refund3")
    assert send(stranger, stripe_signature(stranger, secret)).status_code == 200
    assert send(stranger, stripe_signature(stranger, "whsec_wrong")).status_code == 400
    assert len(stripe_stub.refund_gets) == 2
    assert_books_balance()
