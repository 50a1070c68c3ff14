"""The daily merchant inspection: metrics per merchant, staff alerted over a warning threshold,
a store suspended over a hard one (checkout refused, merchant e-mailed), one report per day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from disputes.models import Dispute
from merchants import services
from merchants.models import InspectionReport, Merchant, MerchantInspection
from merchants.selectors import MerchantMetrics
from merchants.tasks import inspect_merchants_task
from orders.models import Order
from shop.exceptions import ProductUnavailable
from tests.conftest import open_payment, place
from tests.factories import MerchantFactory, ProductFactory, UserFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.INSPECTION_MIN_ORDERS = 4
    settings.INSPECTION_DISPUTE_RATE_WARNING = "0.10"
    settings.INSPECTION_DISPUTE_RATE_HARD = "0.40"
    settings.INSPECTION_INVALID_KEY_RATE_WARNING = "0.10"
    settings.INSPECTION_INVALID_KEY_RATE_HARD = "0.60"
    settings.INSPECTION_REFUND_RATE_WARNING = "0.10"
    settings.INSPECTION_REFUND_RATE_HARD = "0.50"
    settings.INSPECTION_SALES_SPIKE_WARNING = "5"
    settings.INSPECTION_SALES_SPIKE_HARD = "0"
    settings.INSPECTION_SPIKE_MIN_ORDERS = 100
    settings.INSPECTION_PRICE_CHANGE_WARNING = "0.5"
    settings.INSPECTION_PRICE_CHANGE_HARD = "0"


@pytest.fixture
def staff(db):
    return UserFactory(username="ops", email="ops@example.com", is_staff=True)


@pytest.fixture
def shop(db):
    merchant = MerchantFactory(name="Risky", slug="risky")
    product = ProductFactory(merchant=merchant, slug="card", price=Decimal("10.00"))
    add_keys(product, 20)
    return merchant, product


def delivered_orders(product, count: int) -> list[Order]:
    orders = []
    for i in range(count):
        order = place(product, email=f"buyer{i}@example.com").order
        pay(open_payment(order))
        order.refresh_from_db()
        assert order.status == Order.Status.DELIVERED
        orders.append(order)
    return orders


def dispute(order: Order, reason: str = Dispute.Reason.OTHER) -> Dispute:
    return Dispute.objects.create(
        order=order, reason=reason, answer_due_at=timezone.now() + timedelta(days=2)
    )


def run(capture, now=None) -> InspectionReport:
    with capture(execute=True):
        return services.run_daily_inspection(now=now)


def test_a_clean_merchant_gets_an_ok_row_and_nobody_is_mailed(
    shop, staff, django_capture_on_commit_callbacks
):
    merchant, product = shop
    delivered_orders(product, 4)
    mail.outbox.clear()

    report = run(django_capture_on_commit_callbacks)

    inspection = MerchantInspection.objects.get(report=report, merchant=merchant)
    assert inspection.level == MerchantInspection.Level.OK
    assert inspection.findings == []
    assert inspection.metrics["delivered_orders"] == 4
    assert inspection.metrics["dispute_rate"] == "0.0000"
    assert report.finished_at is not None
    assert mail.outbox == []


def test_over_a_warning_threshold_staff_are_alerted(
    shop, staff, django_capture_on_commit_callbacks
):
    merchant, product = shop
    orders = delivered_orders(product, 5)
    dispute(orders[0])  # 1 of 5 = 0.20: over the warning (0.10), under the hard limit (0.40)
    mail.outbox.clear()

    report = run(django_capture_on_commit_callbacks)

    inspection = MerchantInspection.objects.get(report=report, merchant=merchant)
    assert inspection.level == MerchantInspection.Level.WARNING
    assert inspection.findings == [
        {"metric": "dispute_rate", "value": "0.2000", "threshold": "0.10", "level": "warning"}
    ]
    assert inspection.suspended is False
    merchant.refresh_from_db()
    assert merchant.status == Merchant.Status.ACTIVE
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "Risky" in mail.outbox[0].body
    assert "0.2000" in mail.outbox[0].body
    report.refresh_from_db()
    assert report.staff_alerted_at is not None


def test_over_a_hard_threshold_the_store_is_suspended_and_told_why(
    shop, staff, django_capture_on_commit_callbacks
):
    merchant, product = shop
    orders = delivered_orders(product, 4)
    for order in orders[:2]:
        dispute(order, Dispute.Reason.KEY_INVALID)  # 2 of 4 = 0.50 > 0.40
    mail.outbox.clear()

    report = run(django_capture_on_commit_callbacks)

    inspection = MerchantInspection.objects.get(report=report, merchant=merchant)
    assert inspection.level == MerchantInspection.Level.HARD
    assert inspection.suspended is True
    assert {f["metric"]: f["level"] for f in inspection.findings} == {
        "dispute_rate": "hard",
        "invalid_key_rate": "warning",
    }
    merchant.refresh_from_db()
    assert merchant.status == Merchant.Status.SUSPENDED
    recipients = sorted(tuple(message.to) for message in mail.outbox)
    assert recipients == [("ops@example.com",), (merchant.owner.email,)]
    notice = next(m for m in mail.outbox if m.to == [merchant.owner.email])
    assert "suspended" in notice.subject
    assert "0.5000" in notice.body
    with pytest.raises(ProductUnavailable):
        place(product)


def test_rates_need_the_minimum_number_of_orders(shop, staff, django_capture_on_commit_callbacks):
    _merchant, product = shop
    orders = delivered_orders(product, 3)  # below INSPECTION_MIN_ORDERS (4)
    dispute(orders[0])
    mail.outbox.clear()

    report = run(django_capture_on_commit_callbacks)

    assert MerchantInspection.objects.get(report=report).level == MerchantInspection.Level.OK
    assert mail.outbox == []


def test_running_twice_a_day_writes_one_report_and_mails_once(
    shop, staff, django_capture_on_commit_callbacks
):
    merchant, product = shop
    orders = delivered_orders(product, 4)
    for order in orders[:2]:
        dispute(order)
    mail.outbox.clear()
    now = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        first = inspect_merchants_task.delay().get()
        merchant.refresh_from_db()
        assert merchant.status == Merchant.Status.SUSPENDED
        # Staff reinstate the store the same day; the second run must not suspend it again.
        Merchant.objects.filter(pk=merchant.pk).update(status=Merchant.Status.ACTIVE)
        second = inspect_merchants_task.delay().get()

    assert first == second
    assert InspectionReport.objects.count() == 1
    assert MerchantInspection.objects.count() == 1
    assert len(mail.outbox) == 2  # one staff alert, one suspension notice
    merchant.refresh_from_db()
    assert merchant.status == Merchant.Status.ACTIVE
    # The next day is a new report.
    run(django_capture_on_commit_callbacks, now=now + timedelta(days=1))
    assert InspectionReport.objects.count() == 2


def test_a_merchant_approved_after_the_run_is_inspected_by_the_next_run_that_day(
    shop, staff, django_capture_on_commit_callbacks
):
    _merchant, _product = shop
    run(django_capture_on_commit_callbacks)
    late = MerchantFactory(slug="late")

    report = run(django_capture_on_commit_callbacks)

    assert sorted(report.inspections.values_list("merchant__slug", flat=True)) == [
        "late",
        "risky",
    ]
    assert late.pk in report.inspections.values_list("merchant", flat=True)


def test_refund_rate_counts_refunded_orders(shop, staff, django_capture_on_commit_callbacks):
    from orders import services as order_services

    merchant, product = shop
    orders = delivered_orders(product, 4)
    for order in orders[:2]:  # 2 of 4 paid orders refunded: 0.50, not over the hard 0.50
        order_services.request_refund(
            request_id=f"test-{order.pk}", order_id=order.pk, reason="test", source="staff"
        )
    mail.outbox.clear()

    report = run(django_capture_on_commit_callbacks)

    inspection = report.inspections.get(merchant=merchant)
    assert inspection.metrics["refunded_orders"] == 2
    assert inspection.findings == [
        {"metric": "refund_rate", "value": "0.5000", "threshold": "0.10", "level": "warning"}
    ]


def test_a_price_jump_since_yesterday_is_a_warning(shop, staff, django_capture_on_commit_callbacks):
    merchant, product = shop
    now = timezone.now()
    run(django_capture_on_commit_callbacks, now=now - timedelta(days=1))
    product.price = Decimal("25.00")
    product.save(update_fields=["price"])

    report = run(django_capture_on_commit_callbacks, now=now)

    inspection = report.inspections.get(merchant=merchant)
    assert inspection.findings == [
        {
            "metric": "price_change",
            "value": "1.5000",
            "threshold": "0.5",
            "level": "warning",
            "product_id": product.pk,
            "old_price": "10.00",
            "new_price": "25.00",
        }
    ]
    assert inspection.prices == {str(product.pk): "25.00"}


def metrics(**overrides) -> MerchantMetrics:
    values = {
        "delivered_orders": 0,
        "paid_orders": 0,
        "disputes": 0,
        "invalid_key_disputes": 0,
        "refunded_orders": 0,
        "paid_last_day": 0,
        "daily_mean_before": Decimal("0"),
        "prices": {},
    }
    values.update(overrides)
    return MerchantMetrics(**values)


def test_sales_spike_against_the_trailing_mean(settings):
    settings.INSPECTION_SPIKE_MIN_ORDERS = 20
    settings.INSPECTION_SALES_SPIKE_HARD = "20"

    assert services.judge(
        metrics=metrics(paid_last_day=30, daily_mean_before=Decimal("10")), previous_prices={}
    ) == ("ok", [])
    level, findings = services.judge(
        metrics=metrics(paid_last_day=60, daily_mean_before=Decimal("10")), previous_prices={}
    )
    assert (level, findings[0]["value"]) == ("warning", "6.0000")
    level, _findings = services.judge(
        metrics=metrics(paid_last_day=25, daily_mean_before=Decimal("0")), previous_prices={}
    )
    assert level == "hard"  # from no sales at all to 25 in a day
    assert services.judge(
        metrics=metrics(paid_last_day=19, daily_mean_before=Decimal("0")), previous_prices={}
    ) == ("ok", [])


def test_staff_see_the_report_read_only(shop, staff_client, django_capture_on_commit_callbacks):
    _merchant, product = shop
    orders = delivered_orders(product, 5)
    dispute(orders[0])
    report = run(django_capture_on_commit_callbacks)

    listing = staff_client.get("/admin/merchants/inspectionreport/")
    page = staff_client.get(f"/admin/merchants/inspectionreport/{report.pk}/change/")

    assert listing.status_code == 200
    assert page.status_code == 200
    content = page.content.decode()
    assert "Risky" in content
    assert "0.2000" in content
    assert 'name="_save"' not in content
    assert staff_client.get("/admin/merchants/inspectionreport/add/").status_code == 403
