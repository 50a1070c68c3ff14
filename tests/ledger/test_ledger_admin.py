"""Balances, statement and withdrawals in the merchant site; the withdrawal queue for staff."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from ledger import services
from ledger.models import Withdrawal
from tests.conftest import verify_otp
from tests.factories import MerchantFactory, UserFactory
from tests.ledger.helpers import admin_fields_shown
from tests.ledger.test_ledger import balances, sell

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded(settings):
    settings.WITHDRAWAL_MIN_AMOUNT = "10.00"
    merchant = MerchantFactory()
    order = sell(merchant, "100.00")
    services.settle_due_orders(now=timezone.now() + timedelta(days=30))
    sell(merchant, "20.00")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(merchant.owner)
    return merchant, client, order


def test_balance_page_and_statement(funded):
    _merchant, client, order = funded
    page = client.get("/merchant/ledger/withdrawal/").content.decode()
    assert "95.00" in page and "19.00" in page  # available, pending

    statement = client.get("/merchant/ledger/withdrawal/statement/").content.decode()
    assert order.number in statement
    only_sales = client.get("/merchant/ledger/withdrawal/statement/?kind=settlement")
    assert only_sales.status_code == 200
    assert "Settlement" in only_sales.content.decode()

    csv_response = client.get("/merchant/ledger/withdrawal/statement/?format=csv")
    body = b"".join(csv_response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("date,kind,reference,order")
    assert any(order.number in line and ",95.00," in line for line in lines)
    assert len(lines) == 1 + 4  # two sales, one settlement (pending out, available in)


def test_request_a_withdrawal_and_see_errors(funded):
    merchant, client, _order = funded
    too_much = client.post(
        "/merchant/ledger/withdrawal/add/",
        {"amount": "500.00", "currency": "CNY", "payout_details": "alipay x"},
        follow=True,
    )
    assert "at most 95.00 CNY" in too_much.content.decode()
    assert not Withdrawal.objects.exists()

    ok = client.post(
        "/merchant/ledger/withdrawal/add/",
        {"amount": "50.00", "currency": "CNY", "payout_details": "alipay x"},
    )
    assert ok.status_code == 302
    withdrawal = Withdrawal.objects.get()
    assert (withdrawal.merchant, withdrawal.requested_by) == (merchant, merchant.owner)
    assert balances(merchant) == (Decimal("19.00"), Decimal("45.00"), Decimal("50.00"))
    # Merchants can neither change nor delete a withdrawal.
    assert client.post(
        f"/merchant/ledger/withdrawal/{withdrawal.pk}/change/", {"amount": "1"}
    ).status_code in (403, 302, 200)
    assert (
        client.post(
            f"/merchant/ledger/withdrawal/{withdrawal.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    withdrawal.refresh_from_db()
    assert withdrawal.amount == Decimal("50.00")


def test_other_merchants_see_nothing(funded):
    _merchant, _client, order = funded
    other = MerchantFactory()
    other_client = Client(HTTP_ACCEPT_LANGUAGE="en")
    other_client.force_login(other.owner)
    statement = other_client.get("/merchant/ledger/withdrawal/statement/").content.decode()
    assert order.number not in statement
    body = b"".join(
        other_client.get("/merchant/ledger/withdrawal/statement/?format=csv").streaming_content
    )
    assert order.number.encode() not in body


def signed_in_staff() -> tuple[User, Client]:
    staff = UserFactory(is_staff=True, is_superuser=True)
    admin_client = Client(HTTP_ACCEPT_LANGUAGE="en")
    admin_client.force_login(staff)
    verify_otp(admin_client, staff)
    return staff, admin_client


def test_staff_pay_or_reject(funded):
    merchant, _client, _order = funded
    withdrawal = services.request_withdrawal(
        merchant=merchant,
        amount=Decimal("60.00"),
        currency="CNY",
        payout_details="bank 9",
        actor=merchant.owner,
    )
    _staff, admin_client = signed_in_staff()
    url = f"/admin/ledger/withdrawal/{withdrawal.pk}/decide/"
    assert "bank 9" in admin_client.get(url).content.decode()

    missing = admin_client.post(url, {"pay": "1", "payout_reference": ""})
    assert missing.status_code == 200
    assert Withdrawal.objects.get().status == Withdrawal.Status.REQUESTED

    paid = admin_client.post(url, {"pay": "1", "payout_reference": "WIRE-1"})
    assert paid.status_code == 302
    assert Withdrawal.objects.get().status == Withdrawal.Status.PAID
    assert balances(merchant)[2] == 0
    again = admin_client.post(url, {"reject": "1", "note": "late"})
    assert again.status_code == 200  # already decided
    for page in ("/admin/ledger/journal/", "/admin/ledger/account/", "/admin/ledger/withdrawal/"):
        assert admin_client.get(page).status_code == 200


def test_staff_reject_with_a_note_and_read_the_request(funded):
    merchant, _client, _order = funded
    withdrawal = services.request_withdrawal(
        merchant=merchant,
        amount=Decimal("40.00"),
        currency="CNY",
        payout_details="bank 7",
        actor=merchant.owner,
    )
    staff, admin_client = signed_in_staff()
    page = admin_client.get(f"/admin/ledger/withdrawal/{withdrawal.pk}/decide/")
    assert [(b.currency, b.available, b.withdrawing) for b in page.context["balances"]] == [
        ("CNY", Decimal("55.00"), Decimal("40.00"))
    ]

    rejected = admin_client.post(
        f"/admin/ledger/withdrawal/{withdrawal.pk}/decide/", {"reject": "1", "note": "wrong iban"}
    )
    assert rejected.status_code == 302
    assert rejected.url == "/admin/ledger/withdrawal/"
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.decision_note) == ("rejected", "wrong iban")
    assert (withdrawal.decided_by, withdrawal.payout_reference) == (staff, "")
    assert balances(merchant)[1:] == (Decimal("95.00"), 0)

    # The request's own page lists its fields in their usual order, the merchant first.
    change_url = f"/admin/ledger/withdrawal/{withdrawal.pk}/change/"
    assert admin_fields_shown(admin_client, change_url) == [
        "merchant",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decision_note",
        "requested_by",
        "decided_by",
        "decided_at",
    ]
