"""A dispute decided with a refund the gateway then fails: the buyer's page says so, and staff pay
that same refund by hand (booked once, order refunded, the flag cleared); an amount another
refund has taken since is refused, and a gateway success arriving after a payout by hand is
flagged, never booked twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from disputes import services
from ledger.models import Journal
from orders import services as order_services
from orders.exceptions import RefundNotAllowed
from orders.gateways.base import RefundResult
from orders.models import Order, Payment, Refund

pytestmark = pytest.mark.django_db


def _decline_refunds(order: Order) -> tuple[str, object]:
    """The sandbox gateway declines refunds of a trade it no longer knows."""
    payment = Payment.objects.get(order=order, status=Payment.Status.SUCCEEDED)
    key = f"sandbox:trade:{payment.reference}"
    remote = cache.get(key)
    cache.delete(key)
    return key, remote


@pytest.fixture
def failed_refund_dispute(delivered, staff):
    key, remote = _decline_refunds(delivered.order)
    dispute = services.open_dispute(
        order_id=delivered.order.pk, reason="key_invalid", message="It does not work."
    )
    dispute = services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        reason="The key was invalid.",
        actor=staff,
        role="staff",
        request_id="decide-1",
    )
    refund = Refund.objects.get(order=delivered.order)
    assert refund.status == Refund.Status.FAILED
    assert dispute.is_resolved
    return delivered, dispute, refund, (key, remote)


def _dispute_page(delivered, dispute) -> str:
    url = reverse("disputes:detail", args=[delivered.token, dispute.pk])
    response = Client(headers={"Accept-Language": "en"}).get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_buyer_sees_that_the_refund_failed_and_then_that_staff_paid_it(
    failed_refund_dispute, staff, django_capture_on_commit_callbacks
):
    delivered, dispute, refund, _ = failed_refund_dispute
    page = _dispute_page(delivered, dispute)
    assert 'data-refund-status="failed"' in page
    assert "could not complete the refund" in page
    order = Order.objects.get(pk=delivered.order.pk)
    assert order.status == Order.Status.DELIVERED
    assert f"refund {refund.request_id} failed" in order.needs_attention

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        paid = order_services.pay_failed_refund_by_hand(
            refund_id=refund.pk, reference="wire-42", actor=staff
        )

    assert paid.status == Refund.Status.MANUAL
    assert paid.paid_out_reference == "wire-42" and paid.completed_at is not None
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert order.needs_attention == ""
    assert (
        Journal.objects.filter(kind=Journal.Kind.REFUND, reference=f"refund:{refund.pk}").count()
        == 1
    )
    assert [m.to for m in mail.outbox] == [[order.email]]  # the buyer's refund notice
    page = _dispute_page(delivered, dispute)
    assert "have paid this refund out by hand" in page
    order_page = Client(headers={"Accept-Language": "en"}).get(
        reverse("orders:detail", args=[delivered.token])
    )
    assert "Paid out by staff" in order_page.content.decode()


def test_paying_by_hand_twice_or_a_refund_that_did_not_fail_is_refused(
    failed_refund_dispute, staff
):
    _delivered, _dispute, refund, _ = failed_refund_dispute
    order_services.pay_failed_refund_by_hand(refund_id=refund.pk, reference="wire-1", actor=staff)
    with pytest.raises(RefundNotAllowed):
        order_services.pay_failed_refund_by_hand(
            refund_id=refund.pk, reference="wire-2", actor=staff
        )
    refund.refresh_from_db()
    assert refund.paid_out_reference == "wire-1"
    assert Journal.objects.filter(reference=f"refund:{refund.pk}").count() == 1


def test_an_amount_another_refund_took_since_is_refused_and_nothing_changes(
    failed_refund_dispute, staff
):
    delivered, _dispute, refund, (key, remote) = failed_refund_dispute
    cache.set(key, remote)  # the gateway works again; staff refund most of it another way
    other = order_services.request_refund(
        request_id="other",
        order_id=delivered.order.pk,
        reason="goodwill",
        source="staff",
        amount=refund.amount - Decimal("1.00"),
    )
    assert other.status == Refund.Status.SUCCEEDED

    with pytest.raises(RefundNotAllowed):
        order_services.pay_failed_refund_by_hand(
            refund_id=refund.pk, reference="wire-1", actor=staff
        )
    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED and refund.paid_out_reference == ""
    assert not Journal.objects.filter(reference=f"refund:{refund.pk}").exists()


def test_a_gateway_success_after_the_payout_by_hand_is_flagged_not_booked(
    failed_refund_dispute, staff
):
    delivered, _dispute, refund, _ = failed_refund_dispute
    order_services.pay_failed_refund_by_hand(refund_id=refund.pk, reference="wire-1", actor=staff)

    # A retry that was already on its way to the gateway comes back successful.
    order_services._record_refund_result(
        refund_id=refund.pk,
        asked_about=refund.gateway_refund_id,
        result=RefundResult(refund_id="re_late", amount=refund.amount, succeeded=True),
    )

    refund.refresh_from_db()
    assert refund.status == Refund.Status.MANUAL
    assert Journal.objects.filter(reference=f"refund:{refund.pk}").count() == 1
    order = Order.objects.get(pk=delivered.order.pk)
    assert "paid twice" in order.needs_attention and "re_late" in order.needs_attention


def test_staff_record_the_payout_of_a_failed_refund_in_the_console(
    failed_refund_dispute, staff_client
):
    _delivered, _dispute, refund, _ = failed_refund_dispute
    listing = staff_client.get("/admin/orders/refund/").content.decode()
    url = f"/admin/orders/refund/{refund.pk}/payout/"
    assert url in listing and "Record the payout" in listing

    assert staff_client.post(url, {"reference": "  "}).status_code == 200  # required
    assert staff_client.post(url, {"reference": "alipay-manual-9"}).status_code == 302
    refund.refresh_from_db()
    assert refund.status == Refund.Status.MANUAL
    assert refund.paid_out_reference == "alipay-manual-9"
    assert url not in staff_client.get("/admin/orders/refund/").content.decode()

    again = staff_client.post(url, {"reference": "x"})  # a second payout is refused
    assert again.status_code == 200
    refund.refresh_from_db()
    assert refund.paid_out_reference == "alipay-manual-9"
