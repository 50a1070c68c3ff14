"""The buyer's dispute page (by token): the conversation, the timeline, the outcome, in a fixed
number of queries, never a key; the buyer's emails at every step, in the order's language."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from disputes import services
from disputes.models import Dispute, DisputeMessage
from orders import selectors as order_selectors
from tests.disputes.factories import delivered_order

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
DETAIL_PAGE_QUERIES = 4


def detail_url(bought, dispute) -> str:
    return reverse("disputes:detail", args=[bought.token, dispute.pk])


@pytest.mark.parametrize("messages", [1, 12])
def test_the_dispute_page_takes_a_fixed_number_of_queries(
    delivered, staff, django_assert_num_queries, messages
):
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    for i in range(messages):
        services.post_message(
            dispute_id=dispute.pk,
            role="staff" if i % 2 else "buyer",
            text=f"message {i}",
            author=staff,
        )
    client = Client(**EN)

    with django_assert_num_queries(DETAIL_PAGE_QUERIES):
        response = client.get(detail_url(delivered, dispute))

    assert response.status_code == 200
    text = response.content.decode()
    assert f"message {messages - 1}" in text
    assert "no-store" in response["Cache-Control"]


def test_the_page_shows_the_conversation_and_no_key(delivered, staff):
    dispute = services.open_dispute(
        order_id=delivered.order.pk, reason="key_invalid", message="My key fails."
    )
    services.post_message(dispute_id=dispute.pk, role="staff", text="Which error?", author=staff)

    text = Client(**EN).get(detail_url(delivered, dispute)).content.decode()

    assert "My key fails." in text
    assert "Which error?" in text
    assert "Cardvault staff" in text
    assert staff.username not in text
    assert "Key #1 on your order page" in text
    for key in order_selectors.delivered_keys(order=delivered.order):
        assert key.text not in text


def test_the_buyer_writes_by_token(delivered, django_capture_on_commit_callbacks):
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    mail.outbox.clear()
    client = Client(**EN)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("disputes:message", args=[delivered.token, dispute.pk]),
            {"text": "Error 0x42 when redeeming."},
        )

    assert response.status_code == 302
    message = DisputeMessage.objects.get()
    assert (message.author_role, message.author, message.text) == (
        "buyer",
        None,
        "Error 0x42 when redeeming.",
    )
    assert mail.outbox == []  # the buyer is not emailed their own message
    empty = client.post(
        reverse("disputes:message", args=[delivered.token, dispute.pk]), {"text": ""}
    )
    assert empty.status_code == 400
    assert DisputeMessage.objects.count() == 1


def test_another_orders_token_cannot_read_or_write(delivered, shop):
    _merchant, product, _keys = shop
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    other = delivered_order(product, email="other@example.com")
    client = Client(**EN)
    assert client.get(reverse("disputes:detail", args=[other.token, dispute.pk])).status_code == 404
    response = client.post(
        reverse("disputes:message", args=[other.token, dispute.pk]), {"text": "hi"}
    )
    assert response.status_code == 404
    assert not DisputeMessage.objects.exists()


def test_the_buyer_is_emailed_at_every_step(delivered, staff, django_capture_on_commit_callbacks):
    merchant = delivered.order.merchant
    with django_capture_on_commit_callbacks(execute=True):
        dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
        services.post_message(
            dispute_id=dispute.pk, role="merchant", text="Checking.", author=merchant.owner
        )
        services.contest_dispute(dispute_id=dispute.pk, actor=merchant.owner, message="It works.")
        services.post_message(
            dispute_id=dispute.pk, role="staff", text="Send a photo.", author=staff
        )
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="reject",
            reason="The key was used from your account.",
            actor=staff,
            role="staff",
            request_id="r",
        )

    to_buyer = [m for m in mail.outbox if m.to == [delivered.order.email]]
    assert [m.subject for m in to_buyer] == [
        f"New message about your problem report for order {delivered.order.number}",
        f"The store answered your problem report for order {delivered.order.number}",
        f"New message about your problem report for order {delivered.order.number}",
        f"Your problem report for order {delivered.order.number} is resolved",
    ]
    assert [m.to for m in mail.outbox if m not in to_buyer] == [[merchant.owner.email]]
    url = f"http://127.0.0.1:8000{reverse('disputes:detail', args=[delivered.token, dispute.pk])}"
    assert all(url in m.body for m in to_buyer)
    assert "The key was used from your account." in to_buyer[-1].body
    for key in order_selectors.delivered_keys(order=delivered.order):
        assert all(key.text not in m.body for m in mail.outbox)


def test_escalation_email_and_each_notice_once(delivered, django_capture_on_commit_callbacks):
    from disputes.notifications import send_buyer_event_notice

    with django_capture_on_commit_callbacks(execute=True):
        dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
        services.escalate_overdue_disputes(now=dispute.answer_due_at.replace(year=2100))
    mail.outbox.clear()
    event = Dispute.objects.get(pk=dispute.pk).events.get(kind="escalated")
    assert send_buyer_event_notice(event_id=event.pk) is False
    assert mail.outbox == []


def test_a_chinese_buyer_gets_chinese_pages_and_emails(
    shop, staff, django_capture_on_commit_callbacks
):
    _merchant, product, _keys = shop
    bought = delivered_order(product, email="zh@example.com", language="zh-hans")
    client = Client(**ZH)
    form = client.get(reverse("disputes:start", args=[bought.token])).content.decode()
    assert "提交报告" in form

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("disputes:start", args=[bought.token]),
            {"reason": "key_invalid", "message": "卡密无效"},
        )
        dispute = Dispute.objects.get()
        services.resolve_dispute(
            dispute_id=dispute.pk,
            action="refund",
            reason="已退款",
            actor=staff,
            role="staff",
            request_id="zh",
        )

    page = client.get(detail_url(bought, dispute)).content.decode()
    assert "已解决" in page
    resolved = [m for m in mail.outbox if m.to == ["zh@example.com"] and "问题" in m.subject]
    assert len(resolved) == 1
    assert "已退款" in resolved[0].body
    assert "Your problem report" not in resolved[0].body
