"""先行赔付: staff refund the buyer at once from the guarantee fund; the merchant's share is clawed
back from its available balance, which may go negative and then blocks withdrawals. The books stay
balanced throughout."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from disputes import services
from disputes.models import Dispute
from ledger import accounts
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.exceptions import WithdrawalNotAllowed
from ledger.models import Journal
from orders.models import Order, Refund

pytestmark = pytest.mark.django_db


def available(merchant) -> Decimal:
    return ledger_selectors.balance(accounts.merchant_available(merchant, "CNY"))


def assert_books_balance() -> None:
    assert ledger_selectors.unbalanced_journal_ids() == []
    assert all(total == 0 for total in ledger_selectors.trial_balance().values())


def test_platform_pays_first_and_claws_the_merchant_share_back(shop, delivered, staff, settings):
    settings.PLATFORM_FEE_RATE = "0.05"
    settings.WITHDRAWAL_MIN_AMOUNT = "1.00"
    merchant, _product, _keys = shop
    order = delivered.order
    # The sale settled and the merchant withdrew everything it had: available is 0.
    ledger_services.settle_due_orders(now=timezone.now() + timedelta(days=4))
    ledger_services.request_withdrawal(
        merchant=merchant,
        amount=Decimal("9.50"),
        currency="CNY",
        payout_details="bank",
        actor=merchant.owner,
    )
    assert available(merchant) == Decimal("0.00")
    dispute = services.open_dispute(order_id=order.pk, reason="key_invalid", message="dead key")

    resolved = services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        reason="Paid by the guarantee fund while the store is investigated.",
        actor=staff,
        role="staff",
        request_id="pp-1",
        funded_by_platform=True,
    )

    assert resolved.resolution == Dispute.Resolution.REFUNDED
    refund = Refund.objects.get()
    assert (refund.amount, refund.funded_by_platform, refund.source) == (
        Decimal("10.00"),
        True,
        "dispute",
    )
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    # 10.00 sale, 5% fee: the merchant's share is 9.50, clawed back into the negative.
    assert available(merchant) == Decimal("-9.50")
    kinds = set(Journal.objects.filter(order=order).values_list("kind", flat=True))
    assert {Journal.Kind.COMPENSATION, Journal.Kind.CLAWBACK} <= kinds
    assert ledger_selectors.balance(accounts.guarantee("CNY")) == Decimal("0.00")
    assert_books_balance()
    with pytest.raises(WithdrawalNotAllowed):
        ledger_services.request_withdrawal(
            merchant=merchant,
            amount=Decimal("1.00"),
            currency="CNY",
            payout_details="bank",
            actor=merchant.owner,
        )
    assert_books_balance()


def test_platform_pays_first_before_the_merchant_even_heard(shop, delivered, staff):
    """Staff may pay at once, while the dispute is still open; the books balance either way."""
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN

    services.resolve_dispute(
        dispute_id=dispute.pk,
        action="refund",
        amount=Decimal("3.00"),
        reason="Goodwill while we check.",
        actor=staff,
        role="staff",
        request_id="pp-2",
        funded_by_platform=True,
    )

    dispute.refresh_from_db()
    assert dispute.resolution == Dispute.Resolution.PARTIALLY_REFUNDED
    assert list(dispute.events.values_list("kind", "from_status", "to_status")) == [
        ("opened", "", "open"),
        ("resolved", "open", "resolved"),
    ]
    assert Refund.objects.get().funded_by_platform is True
    assert_books_balance()


def test_the_staff_form_offers_it(delivered, staff_client):
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    response = staff_client.post(
        f"/admin/disputes/dispute/{dispute.pk}/decide/",
        {
            "action": "refund",
            "funded_by_platform": "on",
            "reason": "Platform pays first.",
            "idempotency": "t",
        },
    )
    assert response.status_code == 302
    assert Refund.objects.get().funded_by_platform is True
    assert_books_balance()
