"""Staff arbitrate in /admin/: the queue, the case file (keys revealed only on an audited POST),
the outcomes with their written reasons, messages, and the same request never refunding twice."""

from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from disputes import services
from disputes.exceptions import DecisionInProgress, DisputeClosed
from disputes.models import Dispute, DisputeEvent, DisputeMessage
from orders import selectors as order_selectors
from orders.models import Delivery, Order, Refund
from shop.models import CardKey
from tests.disputes.factories import delivered_order, merchant_client_for

pytestmark = pytest.mark.django_db

ADMIN = "/admin/disputes/dispute/"


def change(dispute: Dispute) -> str:
    return f"{ADMIN}{dispute.pk}/change/"


@pytest.fixture
def disputed(shop, delivered, django_capture_on_commit_callbacks):
    merchant, _product, _keys = shop
    # The buyer looked at the keys first: evidence staff weigh.
    Client(HTTP_USER_AGENT="BuyerBrowser/1.0", REMOTE_ADDR="198.51.100.7").get(
        order_selectors.order_page_path(delivered.order)
    )
    with django_capture_on_commit_callbacks(execute=True):
        dispute = services.open_dispute(
            order_id=delivered.order.pk, reason="key_used", message="Already redeemed!"
        )
    mail.outbox.clear()
    return merchant, delivered, Dispute.objects.get(pk=dispute.pk)


def decide(client: Client, dispute: Dispute, callbacks, **data):
    data.setdefault("idempotency", "tok-1")
    data.setdefault("reason", "Decided on the evidence.")
    with callbacks(execute=True):
        response = client.post(f"{ADMIN}{dispute.pk}/decide/", data)
    assert response.status_code == 302
    dispute.refresh_from_db()
    return response


def test_the_queue_lists_unresolved_disputes_oldest_first(shop, staff_client, staff):
    _merchant, product, _keys = shop
    disputes = []
    for i in range(3):
        bought = delivered_order(product, email=f"b{i}@example.com")
        disputes.append(
            services.open_dispute(order_id=bought.order.pk, reason="other", message=f"m{i}")
        )
    services.resolve_dispute(
        dispute_id=disputes[1].pk,
        action="reject",
        reason="no",
        actor=staff,
        role="staff",
        request_id="r",
    )

    queue = staff_client.get(ADMIN)
    everything = staff_client.get(ADMIN, {"queue": "all"})

    assert [d.pk for d in queue.context["cl"].result_list] == [disputes[0].pk, disputes[2].pk]
    assert [d.pk for d in everything.context["cl"].result_list] == [d.pk for d in disputes]


def test_the_case_file_shows_the_evidence_but_no_key(disputed, staff_client, staff):
    _merchant, delivered, dispute = disputed
    DisputeMessage.objects.create(dispute=dispute, author_role="merchant", text="It worked here.")

    page = staff_client.get(change(dispute))

    assert page.status_code == 200
    text = page.content.decode()
    order = Order.objects.get(pk=delivered.order.pk)
    assert order.keys_first_viewed_at is not None
    assert "198.51.100.7" in text and "BuyerBrowser/1.0" in text
    assert "Already redeemed!" in text and "It worked here." in text
    key = order.deliveries.get().card_key
    assert f"Batch {key.batch_id}: 1 bad of 1 sold (100.0%)" in text
    assert "1 disputes, 1 open." in text
    assert "Invalid-key rate: 100.0% (1 of 1 keys sold)." in text
    assert "Dispute rate: 100.0% (1 of 1 delivered orders)." in text
    for delivered_key in order_selectors.delivered_keys(order=order):
        assert delivered_key.text not in text
    assert not DisputeEvent.objects.filter(kind="key_revealed").exists()


def test_a_key_is_revealed_only_on_an_audited_post(disputed, staff_client, staff):
    _merchant, delivered, dispute = disputed
    plaintext = order_selectors.delivered_keys(order=delivered.order)[0].text
    url = f"{ADMIN}{dispute.pk}/reveal/"

    assert staff_client.get(url).status_code == 302
    assert not DisputeEvent.objects.filter(kind="key_revealed").exists()

    response = staff_client.post(url, {"key_index": "1"})

    assert response.status_code == 200
    assert plaintext in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    event = DisputeEvent.objects.get(kind="key_revealed")
    assert (event.actor, event.actor_role) == (staff, "staff")
    assert "key #1" in event.note
    # The audit row shows in the case file; the plaintext does not.
    page = staff_client.get(change(dispute)).content.decode()
    assert "Key revealed to staff" in page
    assert plaintext not in page
    # A key the order does not have reveals nothing and audits nothing more.
    staff_client.post(url, {"key_index": "2"})
    assert DisputeEvent.objects.filter(kind="key_revealed").count() == 1


def test_staff_refund_in_full_with_the_reason_shown_to_both_sides(
    disputed, staff_client, staff, django_capture_on_commit_callbacks
):
    merchant, delivered, dispute = disputed

    decide(
        staff_client,
        dispute,
        django_capture_on_commit_callbacks,
        action="refund",
        reason="The store's log shows the key was used before delivery.",
    )

    assert dispute.resolution == Dispute.Resolution.REFUNDED
    refund = Refund.objects.get()
    assert (refund.amount, refund.requested_by, refund.funded_by_platform) == (
        Decimal("10.00"),
        staff,
        False,
    )
    assert Order.objects.get(pk=delivered.order.pk).status == Order.Status.REFUNDED
    reason = "The store&#x27;s log shows the key was used before delivery."
    buyer_page = Client().get(reverse("disputes:detail", args=[delivered.token, dispute.pk]))
    assert reason in buyer_page.content.decode()
    merchant_page = merchant_client_for(merchant).get(
        f"/merchant/disputes/dispute/{dispute.pk}/change/"
    )
    assert reason in merchant_page.content.decode()
    resolved_mail = [m for m in mail.outbox if "is resolved" in m.subject]
    assert len(resolved_mail) == 1
    assert "The store's log shows the key was used before delivery." in resolved_mail[0].body


def test_staff_partial_refund(disputed, staff_client, django_capture_on_commit_callbacks):
    _merchant, delivered, dispute = disputed
    decide(
        staff_client, dispute, django_capture_on_commit_callbacks, action="refund", amount="2.50"
    )
    assert dispute.resolution == Dispute.Resolution.PARTIALLY_REFUNDED
    assert Refund.objects.get().amount == Decimal("2.50")
    assert Order.objects.get(pk=delivered.order.pk).status == Order.Status.PARTIALLY_REFUNDED


def test_staff_replace(disputed, staff_client, django_capture_on_commit_callbacks):
    _merchant, delivered, dispute = disputed
    old = delivered.order.deliveries.get()

    decide(
        staff_client,
        dispute,
        django_capture_on_commit_callbacks,
        action="replace",
        key_index="1",
    )

    assert dispute.resolution == Dispute.Resolution.REPLACED
    assert CardKey.objects.get(pk=old.card_key_id).status == CardKey.Status.BURNED
    assert Delivery.objects.filter(order=delivered.order).count() == 2
    page = Client().get(reverse("disputes:detail", args=[delivered.token, dispute.pk]))
    assert "Key #1 was replaced by key #2" in page.content.decode()


def test_staff_reject(disputed, staff_client, django_capture_on_commit_callbacks):
    _merchant, delivered, dispute = disputed
    decide(
        staff_client,
        dispute,
        django_capture_on_commit_callbacks,
        action="reject",
        reason="The key was redeemed from the buyer's own account.",
    )
    assert dispute.resolution == Dispute.Resolution.REJECTED
    assert Refund.objects.count() == 0
    assert Order.objects.get(pk=delivered.order.pk).status == Order.Status.DELIVERED
    assert "resolved: Rejected" in mail.outbox[-1].body
    # Resolved is final: no second outcome, no more messages.
    with pytest.raises(DisputeClosed):
        services.post_message(dispute_id=dispute.pk, role="buyer", text="But!")


def test_staff_message_reaches_the_buyer_and_the_merchant(
    disputed, staff_client, staff, django_capture_on_commit_callbacks
):
    merchant, delivered, dispute = disputed
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            f"{ADMIN}{dispute.pk}/message/", {"text": "Please send the redeem error."}
        )
    assert response.status_code == 302
    message = DisputeMessage.objects.get()
    assert (message.author_role, message.author) == ("staff", staff)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [delivered.order.email]
    assert "Please send the redeem error." in mail.outbox[0].body
    assert reverse("disputes:detail", args=[delivered.token, dispute.pk]) in mail.outbox[0].body
    merchant_page = merchant_client_for(merchant).get(
        f"/merchant/disputes/dispute/{dispute.pk}/change/"
    )
    assert "Please send the redeem error." in merchant_page.content.decode()
    assert staff.username not in merchant_page.content.decode()


def test_the_same_request_twice_refunds_once(
    disputed, staff_client, staff, django_capture_on_commit_callbacks
):
    _merchant, _delivered, dispute = disputed
    # A double-clicked submit: the same form token twice.
    decide(staff_client, dispute, django_capture_on_commit_callbacks, action="refund")
    decide(staff_client, dispute, django_capture_on_commit_callbacks, action="refund")

    assert Refund.objects.count() == 1
    assert DisputeEvent.objects.filter(kind="resolved").count() == 1
    # And through the service: the replay returns the first outcome.
    again = services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        reason="Decided on the evidence.",
        actor=staff,
        role="staff",
        request_id=f"staff:{staff.pk}:tok-1",
    )
    assert again.resolution == Dispute.Resolution.REFUNDED
    assert Refund.objects.count() == 1
    # Another request on the resolved dispute is refused, not a second refund.
    with pytest.raises(DisputeClosed):
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="again",
            actor=staff,
            role="staff",
            request_id="other",
        )
    assert Refund.objects.count() == 1


def test_a_second_decision_while_one_is_in_flight_is_refused(disputed, staff):
    _merchant, _delivered, dispute = disputed
    from disputes.models import DisputeDecision

    DisputeDecision.objects.create(
        dispute=dispute,
        action="refund",
        reason="r",
        decided_by=staff,
        decided_by_role="staff",
        request_id="first",
    )
    with pytest.raises(DecisionInProgress):
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="reject",
            reason="no",
            actor=staff,
            role="staff",
            request_id="second",
        )


def test_a_non_staff_user_cannot_decide_through_the_service(disputed):
    merchant, _delivered, dispute = disputed
    with pytest.raises(Exception) as info:
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="reject",
            reason="no",
            actor=merchant.owner,
            role="staff",
            request_id="x",
        )
    assert type(info.value).__name__ == "DisputeError"
    with pytest.raises(Exception):  # noqa: B017 - DisputeError, checked by its effect
        services.reveal_key(dispute_id=dispute.pk, key_index=1, actor=merchant.owner)
    assert not DisputeEvent.objects.filter(kind="key_revealed").exists()
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.AWAITING_MERCHANT
