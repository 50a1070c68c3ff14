"""Affiliates are e-mailed staff's decision on their withdrawal (paid with the reference, or
rejected with the note), after commit, once per decision, in the language they used."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from affiliates import notifications, services
from affiliates.models import AffiliateWithdrawal
from tests.affiliates.helpers import enable_programme, make_affiliate, pay_order, settle_all
from tests.conftest import place
from tests.factories import ProductFactory, UserFactory, add_keys
from webhooks import tasks
from webhooks.models import AffiliateNotice

pytestmark = pytest.mark.django_db


@pytest.fixture
def affiliate(settings):
    settings.PLATFORM_FEE_RATE = "0"
    settings.WITHDRAWAL_MIN_AMOUNT = "1"
    product = ProductFactory(price=Decimal("100.00"))
    add_keys(product, 2)
    enable_programme(product.merchant, "0.1000")
    found = make_affiliate("aff@example.com")
    order = place(product, attach=services.referral_attacher(code=found.code)).order
    pay_order(order)
    settle_all()
    return found


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True)


def request_withdrawal(affiliate, amount: str = "10") -> AffiliateWithdrawal:
    return services.request_affiliate_withdrawal(
        affiliate=affiliate, amount=Decimal(amount), currency="CNY", payout_details="alipay a@b"
    )


def test_paid_withdrawal_is_emailed_after_commit_with_the_reference(
    affiliate, staff, django_capture_on_commit_callbacks
):
    withdrawal = request_withdrawal(affiliate)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks() as callbacks:
        services.decide_affiliate_withdrawal(
            withdrawal_id=withdrawal.pk, paid=True, payout_reference="BANK-9", actor=staff
        )
    assert len(callbacks) == 1
    assert mail.outbox == []
    callbacks[0]()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["aff@example.com"]
    assert message.subject == "Withdrawal of 10.00 CNY paid"
    assert "was paid out (reference BANK-9)" in message.body
    assert reverse("affiliates:dashboard") in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "reference BANK-9" in html


def test_rejected_withdrawal_is_emailed_with_the_note(
    affiliate, staff, django_capture_on_commit_callbacks
):
    withdrawal = request_withdrawal(affiliate)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_affiliate_withdrawal(
            withdrawal_id=withdrawal.pk, paid=False, note="wallet <unknown>", actor=staff
        )

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Withdrawal of 10.00 CNY rejected"
    assert "was rejected: wallet <unknown>. The amount is available again." in message.body
    html = message.alternatives[0][0]
    assert "wallet &lt;unknown&gt;" in html


def test_the_email_is_in_the_language_the_affiliate_requested_in(
    affiliate, staff, django_capture_on_commit_callbacks
):
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(affiliate.user)
    response = client.post(
        reverse("affiliates:withdraw"),
        {"amount": "10.00", "currency": "CNY", "payout_details": "usdt T123"},
    )
    assert response.status_code == 302
    withdrawal = AffiliateWithdrawal.objects.get()
    assert AffiliateNotice.objects.get(object_key=str(withdrawal.pk)).language == "zh-hans"
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_affiliate_withdrawal(
            withdrawal_id=withdrawal.pk, paid=True, payout_reference="PAY-1", actor=staff
        )

    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "10.00 CNY 提现已打款"


def test_unknown_language_falls_back_to_the_site_default(
    affiliate, staff, settings, django_capture_on_commit_callbacks
):
    withdrawal = request_withdrawal(affiliate)
    # A request made before languages were recorded: no notice row yet.
    AffiliateNotice.objects.all().delete()
    settings.LANGUAGE_CODE = "zh-hans"
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_affiliate_withdrawal(
            withdrawal_id=withdrawal.pk, paid=True, payout_reference="PAY-1", actor=staff
        )

    assert [m.subject for m in mail.outbox] == ["10.00 CNY 提现已打款"]


def test_a_decision_is_emailed_once_however_often_the_task_runs(
    affiliate, staff, django_capture_on_commit_callbacks
):
    withdrawal = request_withdrawal(affiliate)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.decide_affiliate_withdrawal(
            withdrawal_id=withdrawal.pk, paid=False, note="no", actor=staff
        )

    again = tasks.send_affiliate_notice_task.delay(
        kind=notifications.WITHDRAWAL_DECIDED, object_id=withdrawal.pk
    ).get()

    assert again is False
    assert len(mail.outbox) == 1
    notice = AffiliateNotice.objects.get()
    assert notice.sent_at is not None


def test_no_email_while_the_withdrawal_is_undecided(affiliate):
    withdrawal = request_withdrawal(affiliate)
    mail.outbox.clear()

    assert notifications.send_withdrawal_decided(withdrawal_id=withdrawal.pk) is False
    assert mail.outbox == []
    assert AffiliateNotice.objects.get().sent_at is None
