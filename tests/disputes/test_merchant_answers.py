"""The merchant answers in its merchant centre within the answer window: replace the key (burn the
bad one, deliver a new one from stock), refund (all or part), or contest (staff decide)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from disputes import services
from disputes.exceptions import InvalidDisputeInput, ReplacementNotPossible
from disputes.models import Dispute, DisputeDecision, DisputeEvent, DisputeMessage
from orders import selectors as order_selectors
from orders.models import Delivery, Order, Refund
from shop.models import CardKey
from tests.disputes.factories import delivered_order, merchant_client_for
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def answer_url(dispute: Dispute) -> str:
    return f"/merchant/disputes/dispute/{dispute.pk}/answer/"


def change_url(dispute: Dispute) -> str:
    return f"/merchant/disputes/dispute/{dispute.pk}/change/"


@pytest.fixture
def disputed(shop, delivered, django_capture_on_commit_callbacks):
    merchant, _product, _keys = shop
    with django_capture_on_commit_callbacks(execute=True):
        dispute = services.open_dispute(
            order_id=delivered.order.pk, reason="key_invalid", message="Invalid code."
        )
    mail.outbox.clear()
    return merchant, delivered, Dispute.objects.get(pk=dispute.pk)


def answer(client: Client, dispute: Dispute, callbacks, **data):
    data.setdefault("idempotency", "once")
    with callbacks(execute=True):
        return client.post(answer_url(dispute), data)


def state(order: Order) -> dict:
    """Everything a refused answer must leave as it was."""
    return {
        "keys": sorted(CardKey.objects.values_list("id", "status", "order_id")),
        "deliveries": sorted(Delivery.objects.values_list("id", "order_id", "card_key_id")),
        "order": Order.objects.filter(pk=order.pk).values("status").get(),
        "disputes": list(Dispute.objects.values("id", "status", "resolution")),
        "decisions": DisputeDecision.objects.count(),
        "events": DisputeEvent.objects.count(),
        "refunds": Refund.objects.count(),
    }


def test_merchant_sees_its_dispute_without_any_key(disputed):
    merchant, delivered, dispute = disputed
    page = merchant_client_for(merchant).get(change_url(dispute))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Invalid code." in text
    assert "Send answer" in text
    for key in order_selectors.delivered_keys(order=delivered.order):
        assert key.text not in text


def test_replace_burns_the_bad_key_and_delivers_a_new_one(
    disputed, django_capture_on_commit_callbacks
):
    merchant, delivered, dispute = disputed
    order = delivered.order
    bad_delivery = order.deliveries.get()
    bad_text = order_selectors.delivered_keys(order=order)[0].text

    response = answer(
        merchant_client_for(merchant),
        dispute,
        django_capture_on_commit_callbacks,
        action="replace",
        message="Sorry, here is a fresh key.",
    )

    assert response.status_code == 302
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.RESOLVED
    assert dispute.resolution == Dispute.Resolution.REPLACED
    assert dispute.resolution_reason == "Sorry, here is a fresh key."
    bad = CardKey.objects.get(pk=bad_delivery.card_key_id)
    assert bad.status == CardKey.Status.BURNED
    new_delivery = Delivery.objects.filter(order=order).exclude(pk=bad_delivery.pk).get()
    new_key = new_delivery.card_key
    assert (new_key.status, new_key.order_id, new_key.product_id) == (
        CardKey.Status.SOLD,
        order.pk,
        order.product_id,
    )
    assert new_key.sold_at is not None
    assert dispute.decision.replacement == new_delivery
    assert Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED
    # The buyer finds the new key on the order page, second after the old one.
    texts = [k.text for k in order_selectors.delivered_keys(order=order)]
    assert texts[0] == bad_text and len(texts) == 2 and texts[1] != bad_text
    # A burned key never sells again: not free stock.
    assert CardKey.objects.filter(status=CardKey.Status.AVAILABLE).count() == 3
    # Audit and the buyer's email.
    resolved = dispute.events.get(kind="resolved")
    assert (resolved.actor, resolved.actor_role, resolved.from_status) == (
        merchant.owner,
        "merchant",
        "awaiting_merchant",
    )
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [order.email]
    assert "resolved: Key replaced" in mail.outbox[0].body
    assert "Sorry, here is a fresh key." in mail.outbox[0].body
    assert new_key.pk not in [bad.pk]


def test_replace_without_stock_changes_nothing(django_capture_on_commit_callbacks):
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    delivered = delivered_order(product)
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="key_used", message="m")
    before = state(delivered.order)
    mail.outbox.clear()
    client = merchant_client_for(merchant)

    response = answer(
        client, dispute, django_capture_on_commit_callbacks, action="replace", message="Here."
    )

    assert response.status_code == 302
    assert state(delivered.order) == before
    assert mail.outbox == []
    page = client.get(response["Location"]).content.decode()
    assert "No replacement key in stock: nothing was changed." in page


def test_merchant_refunds_in_full(disputed, django_capture_on_commit_callbacks):
    merchant, delivered, dispute = disputed

    answer(
        merchant_client_for(merchant),
        dispute,
        django_capture_on_commit_callbacks,
        action="refund",
        message="Refunded, sorry.",
    )

    dispute.refresh_from_db()
    refund = Refund.objects.get()
    assert (refund.amount, refund.source, refund.funded_by_platform) == (
        Decimal("10.00"),
        "dispute",
        False,
    )
    assert refund.requested_by == merchant.owner
    assert dispute.resolution == Dispute.Resolution.REFUNDED
    assert dispute.decision.refund == refund
    assert Order.objects.get(pk=delivered.order.pk).status == Order.Status.REFUNDED
    subjects = sorted(m.subject for m in mail.outbox)
    assert len(subjects) == 2  # the resolution and the refund notice
    assert all(delivered.order.number in s for s in subjects)


def test_merchant_refunds_in_part(disputed, django_capture_on_commit_callbacks):
    merchant, delivered, dispute = disputed

    answer(
        merchant_client_for(merchant),
        dispute,
        django_capture_on_commit_callbacks,
        action="refund",
        amount="4.00",
        message="Half the value back.",
    )

    dispute.refresh_from_db()
    assert Refund.objects.get().amount == Decimal("4.00")
    assert dispute.resolution == Dispute.Resolution.PARTIALLY_REFUNDED
    assert Order.objects.get(pk=delivered.order.pk).status == Order.Status.PARTIALLY_REFUNDED


def test_a_refund_above_what_is_left_is_refused_and_frees_the_dispute(
    disputed, django_capture_on_commit_callbacks
):
    merchant, _delivered, dispute = disputed
    client = merchant_client_for(merchant)

    answer(
        client,
        dispute,
        django_capture_on_commit_callbacks,
        action="refund",
        amount="10.01",
        message="x",
    )

    assert Refund.objects.count() == 0
    assert DisputeDecision.objects.count() == 0
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.AWAITING_MERCHANT
    answer(
        client,
        dispute,
        django_capture_on_commit_callbacks,
        action="refund",
        amount="10.00",
        message="x",
        idempotency="second",
    )
    assert Dispute.objects.get(pk=dispute.pk).resolution == Dispute.Resolution.REFUNDED


def test_merchant_contests_and_staff_take_over(disputed, django_capture_on_commit_callbacks):
    merchant, delivered, dispute = disputed

    answer(
        merchant_client_for(merchant),
        dispute,
        django_capture_on_commit_callbacks,
        action="contest",
        message="The key was redeemed by the buyer at 10:02.",
    )

    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.ESCALATED
    assert dispute.escalated_at is not None
    assert list(DisputeMessage.objects.values_list("author_role", "text")) == [
        ("merchant", "The key was redeemed by the buyer at 10:02.")
    ]
    event = dispute.events.get(kind="contested")
    assert (event.actor, event.from_status, event.to_status) == (
        merchant.owner,
        "awaiting_merchant",
        "escalated",
    )
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [delivered.order.email]
    assert "contests" in mail.outbox[0].body
    assert "redeemed by the buyer at 10:02" in mail.outbox[0].body
    # Staff decide now: the merchant can no longer answer.
    with pytest.raises(Exception) as info:
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="x",
            actor=merchant.owner,
            role="merchant",
            request_id="late",
        )
    assert type(info.value).__name__ == "AnswerWindowClosed"


def test_an_answer_after_the_window_is_refused(disputed, django_capture_on_commit_callbacks):
    merchant, delivered, dispute = disputed
    Dispute.objects.filter(pk=dispute.pk).update(answer_due_at=timezone.now() - timedelta(1))
    before = state(delivered.order)
    client = merchant_client_for(merchant)
    assert "Send answer" not in client.get(change_url(dispute)).content.decode()

    for action in ("replace", "refund", "contest"):
        answer(
            client,
            dispute,
            django_capture_on_commit_callbacks,
            action=action,
            message="late",
            idempotency=action,
        )

    assert state(delivered.order) == before


def test_the_merchant_cannot_reject_or_pay_from_the_guarantee_fund(disputed):
    merchant, _delivered, dispute = disputed
    for kwargs in ({"action": "reject"}, {"action": "refund", "funded_by_platform": True}):
        with pytest.raises(InvalidDisputeInput):
            services.resolve_dispute(
                dispute_id=dispute.pk,
                reason="no",
                actor=merchant.owner,
                role="merchant",
                request_id="x",
                **kwargs,
            )
    assert DisputeDecision.objects.count() == 0


def test_another_merchants_user_cannot_answer_through_the_service(disputed):
    _merchant, _delivered, dispute = disputed
    other = MerchantFactory()
    with pytest.raises(Exception) as info:
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="x",
            actor=other.owner,
            role="merchant",
            request_id="x",
        )
    assert type(info.value).__name__ == "DisputeError"
    with pytest.raises(Exception):  # noqa: B017 - DisputeError, counted below
        services.post_message(dispute_id=dispute.pk, role="merchant", text="hi", author=other.owner)
    assert Refund.objects.count() == 0
    assert DisputeMessage.objects.count() == 0


def test_merchant_writes_from_its_dispute_page(disputed, django_capture_on_commit_callbacks):
    merchant, delivered, dispute = disputed
    client = merchant_client_for(merchant)
    url = f"/merchant/disputes/dispute/{dispute.pk}/message/"
    assert client.get(url).status_code == 302  # a GET writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"text": "Which platform did you redeem it on?"})
        empty = client.post(url, {"text": "  "})

    assert (response.status_code, empty.status_code) == (302, 302)
    message = DisputeMessage.objects.get()
    assert (message.author_role, message.author) == ("merchant", merchant.owner)
    assert [m.to for m in mail.outbox] == [[delivered.order.email]]
    assert "The store wrote about your problem report" in mail.outbox[0].body
    buyer_page = Client().get(f"/o/{delivered.token}/problem/{dispute.pk}/").content.decode()
    assert "Which platform did you redeem it on?" in buyer_page
    assert "The store" in buyer_page


def test_only_a_sold_key_of_an_automatic_product_can_be_replaced(shop, staff):
    _merchant, product, _keys = shop
    three = delivered_order(product, quantity=3)
    dispute = services.open_dispute(order_id=three.order.pk, reason="other", message="m")
    decide = {
        "dispute_id": dispute.pk,
        "action": "replace",
        "reason": "r",
        "actor": staff,
        "role": "staff",
    }
    # No key named, and the order has three: nothing to replace.
    with pytest.raises(ReplacementNotPossible):
        services.resolve_dispute(request_id="a", **decide)
    # A key that is no longer sold to the order (voided by hand, say) is not replaced either.
    first = three.order.deliveries.order_by("id").first()
    CardKey.objects.filter(pk=first.card_key_id).update(status=CardKey.Status.BURNED)
    with pytest.raises(ReplacementNotPossible):
        services.resolve_dispute(request_id="b", key_index=1, **decide)
    assert DisputeDecision.objects.count() == 0
    # A manual-delivery product has no stock to replace from.
    product.delivery_mode = "manual"
    product.save()
    with pytest.raises(ReplacementNotPossible):
        services.resolve_dispute(request_id="c", key_index=2, **decide)
    assert Delivery.objects.filter(order=three.order).count() == 3
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN
