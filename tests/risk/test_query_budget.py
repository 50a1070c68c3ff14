"""Screening costs a fixed number of queries, however many rules there are."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from risk import services
from risk.screening import Buyer
from tests.risk.conftest import add_entry, add_rule

pytestmark = pytest.mark.django_db


def _screen(merchant):
    from decimal import Decimal

    from django.utils import timezone

    return services.screen_checkout(
        merchant_id=merchant.pk,
        amount=Decimal("10.00"),
        currency="CNY",
        buyer=Buyer(ip="198.51.100.1", email="a@example.com", device_id="d" * 24),
        captcha_passed=False,
        lookup_failure_count=0,
        now=timezone.now(),
    )


def _all_kinds(threshold: int) -> None:
    for kind in ("velocity_ip", "velocity_email", "velocity_device", "unpaid_ip", "unpaid_email"):
        add_rule(kind, threshold, "captcha")
    add_rule("amount", 1000 + threshold, "block")
    add_rule("lookup_failures", threshold, "captcha")


def test_screening_a_checkout_takes_four_queries_whatever_the_rules(merchant):
    add_entry("cidr", "203.0.113.0/24")
    add_entry("email_domain", "throwaway.test")
    _all_kinds(50)
    with CaptureQueriesContext(connection) as first:
        assert _screen(merchant).outcome == "allow"
    _all_kinds(60)
    add_rule("velocity_ip", 70, "block", window_minutes=5)
    with CaptureQueriesContext(connection) as second:
        assert _screen(merchant).outcome == "allow"
    # rules, blacklist, the advisory locks, one aggregate for every count
    assert len(first) == len(second) == 4, [q["sql"][:80] for q in second.captured_queries]


def test_without_count_rules_only_rules_and_blacklist_are_read(merchant):
    add_rule("amount", 500, "block")
    with CaptureQueriesContext(connection) as queries:
        _screen(merchant)
    assert len(queries) == 2
