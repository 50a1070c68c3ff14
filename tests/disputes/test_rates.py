"""The rates staff weigh and risk control reads: a batch's defect rate, a merchant's invalid-key
rate and dispute rate."""

from decimal import Decimal

import pytest

from disputes import selectors, services
from disputes.models import DisputeKeyReport
from shop.models import CardKey
from tests.disputes.factories import delivered_order
from tests.factories import MerchantFactory, ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def test_rates_count_reported_and_burned_keys_over_keys_sold(staff):
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    add_keys(product, 10)
    batch_id = CardKey.objects.filter(product=product).first().batch_id
    orders = [delivered_order(product, email=f"b{i}@example.com") for i in range(4)]
    # Order 0: reported invalid, then replaced (its key burned; the replacement is sold too).
    d0 = services.open_dispute(order_id=orders[0].order.pk, reason="key_invalid", message="m")
    services.resolve_dispute(
        dispute_id=d0.pk, action="replace", reason="r", actor=staff, role="staff", request_id="a"
    )
    # Order 1: reported used, rejected (still reported). Order 2: wrong goods (no key mark).
    d1 = services.open_dispute(order_id=orders[1].order.pk, reason="key_used", message="m")
    services.resolve_dispute(
        dispute_id=d1.pk, action="reject", reason="r", actor=staff, role="staff", request_id="b"
    )
    services.open_dispute(order_id=orders[2].order.pk, reason="wrong_goods", message="m")

    assert DisputeKeyReport.objects.count() == 2
    # 5 keys sold (4 orders + 1 replacement); bad: the burned-and-reported one and the used one.
    batch = selectors.batch_defect_rate(batch_id=batch_id)
    assert (batch.count, batch.base, batch.rate) == (2, 5, Decimal("0.4000"))
    assert batch.percent == "40.0%"
    invalid = selectors.merchant_invalid_key_rate(merchant_id=merchant.pk)
    assert (invalid.count, invalid.base) == (2, 5)
    disputes = selectors.merchant_dispute_rate(merchant_id=merchant.pk)
    assert (disputes.count, disputes.base, disputes.rate) == (3, 4, Decimal("0.7500"))
    history = selectors.merchant_dispute_history(merchant_id=merchant.pk)
    assert (history.total, history.open) == (3, 1)
    assert history.outcomes == {"Key replaced": 1, "Rejected": 1}


def test_a_merchant_with_no_sales_has_no_rate():
    merchant = MerchantFactory()
    rate = selectors.merchant_invalid_key_rate(merchant_id=merchant.pk)
    assert (rate.count, rate.base, rate.rate, rate.percent) == (0, 0, None, "—")


def test_another_merchants_reports_do_not_count(staff):
    mine = ProductFactory(merchant=MerchantFactory())
    theirs = ProductFactory(merchant=MerchantFactory())
    add_keys(mine, 2)
    add_keys(theirs, 2)
    delivered_order(mine)
    bad = delivered_order(theirs)
    services.open_dispute(order_id=bad.order.pk, reason="key_invalid", message="m")
    assert selectors.merchant_invalid_key_rate(merchant_id=mine.merchant_id).count == 0
    assert selectors.merchant_dispute_rate(merchant_id=mine.merchant_id).count == 0
    assert selectors.merchant_invalid_key_rate(merchant_id=theirs.merchant_id).count == 1


def test_open_disputes_keep_settlement_waiting(delivered):
    dispute = services.open_dispute(order_id=delivered.order.pk, reason="other", message="m")
    assert selectors.order_ids_with_open_disputes(order_ids=[delivered.order.pk, 0]) == {
        delivered.order.pk
    }
    assert dispute.status in selectors.OPEN_STATES
