"""Merchant A, in /merchant/, sees and touches only its own disputes: B's dispute is not listed,
and its change page, answer, message and screenshot URLs answer 404 and change nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from disputes import services
from disputes.models import Dispute, DisputeDecision, DisputeEvent, DisputeMessage
from orders.models import Delivery, Refund
from shop.models import CardKey
from tests.disputes.factories import delivered_order, merchant_client_for, png_bytes
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db

BASE = "/merchant/disputes/dispute/"


def store(name: str):
    merchant = MerchantFactory(name=f"{name} Store")
    product = ProductFactory(merchant=merchant, title=f"{name} Widget")
    add_keys(product, 3, prefix=name.upper())
    bought = delivered_order(product, email=f"buyer@{name.lower()}.example")
    dispute = services.open_dispute(
        order_id=bought.order.pk,
        reason="key_invalid",
        message=f"{name} buyer's complaint",
        screenshot=SimpleUploadedFile("s.png", png_bytes(), content_type="image/png"),
    )
    return merchant, bought, dispute


def everything() -> dict:
    return {
        "disputes": list(Dispute.objects.order_by("pk").values()),
        "messages": list(DisputeMessage.objects.order_by("pk").values()),
        "events": list(DisputeEvent.objects.order_by("pk").values()),
        "decisions": list(DisputeDecision.objects.order_by("pk").values()),
        "refunds": list(Refund.objects.order_by("pk").values("id", "amount", "status")),
        "keys": list(CardKey.objects.order_by("pk").values_list("id", "status", "order_id")),
        "deliveries": list(Delivery.objects.order_by("pk").values_list("id", "card_key_id")),
    }


@pytest.fixture
def two_stores(db):
    return store("Alpha"), store("Bravo")


def test_merchant_a_lists_only_its_own_disputes(two_stores):
    (alpha, alpha_order, alpha_dispute), (_bravo, bravo_order, _bravo_dispute) = two_stores
    client = merchant_client_for(alpha)

    response = client.get(BASE)

    assert response.status_code == 200
    assert [d.pk for d in response.context["cl"].result_list] == [alpha_dispute.pk]
    text = response.content.decode()
    assert alpha_order.order.number in text
    assert bravo_order.order.number not in text
    # Filters and search naming B's order find nothing either.
    for query in (
        {"order__id__exact": bravo_order.order.pk},
        {"q": bravo_order.order.number},
    ):
        found = client.get(BASE, query, follow=True)
        if found.status_code == 200:
            assert list(found.context["cl"].result_list) == []


def test_every_url_of_bs_dispute_is_404_and_changes_nothing(two_stores):
    (alpha, _alpha_order, alpha_dispute), (_bravo, bravo_order, bravo_dispute) = two_stores
    client = merchant_client_for(alpha)
    # Positive controls: A opens its own.
    assert client.get(f"{BASE}{alpha_dispute.pk}/change/").status_code == 200
    assert client.get(f"{BASE}{alpha_dispute.pk}/screenshot/").status_code == 200
    before = everything()

    forged = {
        "action": "refund",
        "message": "hijacked",
        "text": "hijacked",
        "idempotency": "x",
    }
    for suffix in ("change/", "answer/", "message/", "screenshot/", "delete/", "history/"):
        url = f"{BASE}{bravo_dispute.pk}/{suffix}"
        for method in ("get", "post"):
            response = client.get(url) if method == "get" else client.post(url, forged)
            if suffix in ("delete/", "history/") and response.status_code == 302:
                # Django's own views send a missing object back to the index, with a notice.
                assert response["Location"] == "/merchant/", url
                continue
            assert response.status_code in (403, 404), (method, url, response.status_code)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert b"Bravo buyer" not in body
            assert bravo_order.order.number.encode() not in body
            assert png_bytes() not in body

    assert everything() == before


def test_a_merchant_sees_nothing_of_its_dispute_at_the_staff_site(two_stores):
    (alpha, _order, alpha_dispute), _bravo = two_stores
    client = merchant_client_for(alpha)
    response = client.get(f"/admin/disputes/dispute/{alpha_dispute.pk}/change/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
