"""A buyer reports a problem from the order page, by token, within the window after delivery."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from disputes import services
from disputes.exceptions import DisputeAlreadyOpen, DisputeNotAllowed, DisputeWindowClosed
from disputes.models import Dispute, DisputeEvent, DisputeKeyReport
from orders import selectors as order_selectors
from orders.models import Order
from tests.conftest import place
from tests.disputes.factories import DisputeFactory, delivered_order

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def start_url(token: str) -> str:
    return reverse("disputes:start", args=[token])


def test_order_page_links_to_report_a_problem(delivered):
    page = Client(**EN).get(order_selectors.order_page_path(delivered.order)).content.decode()
    assert start_url(delivered.token) in page
    assert "Report a problem" in page


def test_buyer_opens_a_dispute_by_token_and_the_merchant_is_emailed(
    shop, delivered, django_capture_on_commit_callbacks
):
    merchant, _product, _keys = shop
    client = Client(**EN)
    form = client.get(start_url(delivered.token))
    assert form.status_code == 200
    assert "Send the report" in form.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            start_url(delivered.token),
            {"reason": "key_invalid", "message": "Redeem page says the code is invalid."},
        )

    dispute = Dispute.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("disputes:detail", args=[delivered.token, dispute.pk])
    assert dispute.order == delivered.order
    assert dispute.reason == Dispute.Reason.KEY_INVALID
    # One key on the order: it is the one reported, and it is marked.
    only = delivered.order.deliveries.get()
    assert (dispute.delivery, dispute.key_index) == (only, 1)
    assert list(DisputeKeyReport.objects.values_list("card_key_id", "reason")) == [
        (only.card_key_id, "key_invalid")
    ]
    # Notified: the dispute now waits for the merchant, its answer due in 48 hours.
    assert dispute.status == Dispute.Status.AWAITING_MERCHANT
    assert dispute.merchant_notified_at is not None
    assert abs(dispute.answer_due_at - (timezone.now() + timedelta(hours=48))) < timedelta(
        minutes=1
    )
    assert list(dispute.events.values_list("kind", "from_status", "to_status", "actor_role")) == [
        ("opened", "", "open", "buyer"),
        ("merchant_notified", "open", "awaiting_merchant", "system"),
    ]
    assert len(mail.outbox) == 1
    notice = mail.outbox[0]
    assert notice.to == [merchant.owner.email]
    assert delivered.order.number in notice.subject
    assert "Redeem page says" not in notice.body  # the buyer's words stay in the merchant centre
    assert f"/merchant/disputes/dispute/{dispute.pk}/change/" in notice.body
    assert mail.outbox[0].to != [delivered.order.email]


def test_the_buyer_points_at_one_key_by_its_number(shop):
    _merchant, product, _keys = shop
    bought = delivered_order(product, quantity=3)
    client = Client(**EN)
    page = client.get(start_url(bought.token)).content.decode()
    assert "Key #3" in page
    for delivery_key in order_selectors.delivered_keys(order=bought.order):
        assert delivery_key.text not in page, "the dispute form never shows a key"

    client.post(
        start_url(bought.token), {"reason": "key_used", "key_index": "2", "message": "Used."}
    )

    dispute = Dispute.objects.get()
    second = list(bought.order.deliveries.order_by("id"))[1]
    assert (dispute.delivery, dispute.key_index) == (second, 2)
    assert DisputeKeyReport.objects.get().card_key_id == second.card_key_id


def test_a_key_number_the_order_does_not_have_is_refused(delivered):
    response = Client(**EN).post(
        start_url(delivered.token), {"reason": "key_used", "key_index": "4", "message": "x"}
    )
    assert response.status_code == 400
    assert not Dispute.objects.exists()


def test_reason_and_message_are_required(delivered):
    response = Client(**EN).post(start_url(delivered.token), {"reason": "bogus", "message": " "})
    assert response.status_code == 400
    assert not Dispute.objects.exists()
    with pytest.raises(Exception) as info:
        services.open_dispute(order_id=delivered.order.pk, reason="bogus", message="  ")
    assert set(info.value.errors) == {"reason", "message"}


def test_after_the_window_the_buyer_is_refused_with_a_clear_message(delivered, settings):
    settings.DISPUTE_WINDOW_DAYS = 7
    Order.objects.filter(pk=delivered.order.pk).update(
        delivered_at=timezone.now() - timedelta(days=7, minutes=1)
    )
    client = Client(**EN)

    page = client.get(start_url(delivered.token))
    posted = client.post(start_url(delivered.token), {"reason": "other", "message": "late"})

    for response in (page, posted):
        text = response.content.decode()
        assert "Problems can be reported within 7 days of delivery" in text
        assert "window has closed" in text
        assert "Send the report" not in text
    assert not Dispute.objects.exists()
    with pytest.raises(DisputeWindowClosed):
        services.open_dispute(order_id=delivered.order.pk, reason="other", message="late")


def test_the_window_is_counted_from_delivery(delivered):
    delivered_at = delivered.order.delivered_at
    just_inside = delivered_at + timedelta(days=7)
    dispute = services.open_dispute(
        order_id=delivered.order.pk, reason="other", message="m", now=just_inside
    )
    assert dispute.pk is not None


def test_the_refusal_is_translated(delivered):
    Order.objects.filter(pk=delivered.order.pk).update(
        delivered_at=timezone.now() - timedelta(days=30)
    )
    page = Client(HTTP_ACCEPT_LANGUAGE="zh-CN").get(start_url(delivered.token)).content.decode()
    assert "7 天" in page


def test_an_undelivered_order_cannot_be_disputed(shop):
    _merchant, product, _keys = shop
    placed = place(product)
    response = Client(**EN).get(start_url(placed.token))
    assert "for delivered orders only" in response.content.decode()
    with pytest.raises(DisputeNotAllowed):
        services.open_dispute(order_id=placed.order.pk, reason="other", message="m")


def test_one_open_dispute_per_order(delivered):
    first = services.open_dispute(order_id=delivered.order.pk, reason="other", message="one")
    with pytest.raises(DisputeAlreadyOpen):
        services.open_dispute(order_id=delivered.order.pk, reason="other", message="two")
    # The page sends the buyer to the open one instead of a second form.
    page = Client(**EN).get(start_url(delivered.token)).content.decode()
    assert reverse("disputes:detail", args=[delivered.token, first.pk]) in page
    assert "Send the report" not in page
    # The database refuses it too, whatever code tries.
    with pytest.raises(IntegrityError), transaction.atomic():
        DisputeFactory(order=delivered.order)
    assert Dispute.objects.count() == 1
    assert DisputeEvent.objects.filter(kind="opened").count() == 1


def test_a_resolved_dispute_leaves_room_for_a_new_one(delivered, staff):
    first = services.open_dispute(order_id=delivered.order.pk, reason="other", message="one")
    services.resolve_dispute(
        dispute_id=first.pk,
        action="reject",
        reason="Works for us.",
        actor=staff,
        role="staff",
        request_id="r1",
    )
    second = services.open_dispute(order_id=delivered.order.pk, reason="other", message="two")
    assert second.pk != first.pk
    assert Dispute.objects.filter(status="resolved").count() == 1


def test_an_unknown_token_finds_nothing(delivered):
    assert Client().get(start_url("x" * 64)).status_code == 404
