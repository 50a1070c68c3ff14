"""Bursts of checkouts per IP, email and browser ask for a captcha (or block); a solved captcha
lets one checkout through; a wrong or reused answer is refused."""

import re
import time

import pytest
from django.test import Client

from orders.models import Order
from risk import captcha
from risk.device import COOKIE_NAME
from risk.exceptions import CaptchaRequired, RiskBlocked
from risk.models import RiskDecision
from tests.conftest import place
from tests.risk.conftest import add_rule

pytestmark = pytest.mark.django_db


def test_over_velocity_per_ip_asks_for_a_captcha_then_lets_a_solved_one_through(
    stocked_product,
):
    rule = add_rule("velocity_ip", 2, "captcha", window_minutes=10)
    for n in range(2):
        place(stocked_product, email=f"b{n}@example.com", buyer_ip="198.51.100.1")

    with pytest.raises(CaptchaRequired):
        place(stocked_product, email="b2@example.com", buyer_ip="198.51.100.1")
    assert Order.objects.count() == 2
    # Other addresses are not affected.
    place(stocked_product, email="b3@example.com", buyer_ip="198.51.100.2")

    placed = place(
        stocked_product, email="b2@example.com", buyer_ip="198.51.100.1", captcha_passed=True
    )
    decision = RiskDecision.objects.get(order=placed.order)
    assert decision.outcome == RiskDecision.Outcome.CAPTCHA_PASSED
    assert decision.rule == rule
    asked = RiskDecision.objects.get(outcome=RiskDecision.Outcome.CAPTCHA)
    assert asked.order is None
    assert asked.reason == f"velocity_ip 3 > 2 in 10 min (rule {rule.pk})"


def test_velocity_per_email_counts_one_mailbox_however_it_is_spelled(stocked_product):
    add_rule("velocity_email", 2, "captcha")
    place(stocked_product, email="first.last@gmail.com")
    place(stocked_product, email="FirstLast+shop@googlemail.com")
    with pytest.raises(CaptchaRequired):
        place(stocked_product, email="firstlast@gmail.com")


def test_velocity_per_device_cookie(stocked_product):
    add_rule("velocity_device", 1, "captcha")
    device = "d" * 32
    place(stocked_product, email="x@example.com", device_id=device)
    with pytest.raises(CaptchaRequired):
        place(stocked_product, email="y@example.com", device_id=device)
    # No cookie: nothing to count for this rule.
    place(stocked_product, email="z@example.com")
    place(stocked_product, email="w@example.com")


def test_a_block_rule_blocks_even_with_a_solved_captcha(stocked_product):
    add_rule("velocity_ip", 1, "captcha")
    add_rule("velocity_ip", 2, "block")
    place(stocked_product, buyer_ip="198.51.100.1", email="a@example.com")
    place(stocked_product, buyer_ip="198.51.100.1", email="b@example.com", captcha_passed=True)
    with pytest.raises(RiskBlocked) as raised:
        place(stocked_product, buyer_ip="198.51.100.1", email="c@example.com", captcha_passed=True)
    assert "Too many orders" in str(raised.value.user_message)
    assert Order.objects.count() == 2


def test_the_window_forgets_old_checkouts(stocked_product):
    from datetime import timedelta

    from django.utils import timezone

    add_rule("velocity_ip", 1, "captcha", window_minutes=10)
    earlier = timezone.now() - timedelta(minutes=11)
    place(stocked_product, buyer_ip="198.51.100.1", email="a@example.com", now=earlier)
    place(stocked_product, buyer_ip="198.51.100.1", email="b@example.com")


def test_a_merchant_rule_replaces_the_platform_rule_of_its_kind(stocked_product, merchant):
    add_rule("velocity_ip", 1, "captcha")
    add_rule("velocity_ip", 5, "captcha", merchant=merchant)
    for n in range(5):
        place(stocked_product, buyer_ip="198.51.100.1", email=f"b{n}@example.com")
    with pytest.raises(CaptchaRequired):
        place(stocked_product, buyer_ip="198.51.100.1", email="b9@example.com")


def test_failed_order_lookups_ask_for_a_captcha(stocked_product):
    from orders import throttle

    add_rule("lookup_failures", 2, "captcha")
    for _ in range(3):
        throttle.record_lookup_failure("198.51.100.1")
    with pytest.raises(CaptchaRequired):
        place(stocked_product, buyer_ip="198.51.100.1")
    place(stocked_product, buyer_ip="198.51.100.2")


# --- the captcha itself -------------------------------------------------------------------------
def test_an_answer_is_checked_once_and_expires(monkeypatch):
    monkeypatch.setattr(captcha, "new_question", lambda: ("12+7=?", "19"))
    session: dict = {}
    assert captcha.issue_challenge(session)
    stored = session[captcha.SESSION_KEY]
    assert re.fullmatch(r"[0-9a-f]{64}", stored["answer"]), "the answer is kept hashed"
    assert captcha.check_answer(session, " 19 ") is captcha.Verdict.PASSED
    assert captcha.check_answer(session, "19") is captcha.Verdict.NO_CHALLENGE

    captcha.issue_challenge(session)
    assert captcha.check_answer(session, "18") is captcha.Verdict.WRONG
    assert captcha.check_answer(session, "19") is captcha.Verdict.NO_CHALLENGE

    captcha.issue_challenge(session)
    later = time.time() + captcha.CHALLENGE_TTL_SECONDS + 1
    assert captcha.check_answer(session, "19", now=later) is captcha.Verdict.EXPIRED


def test_the_picture_has_no_text_to_read():
    svg = captcha.render_svg("12+7=?")
    assert svg.startswith("<svg") and "<text" not in svg and "12" not in re.sub(r"[\d.]+", "", svg)
    assert svg.count("<rect") > 60


# --- through the product page ---------------------------------------------------------------------
@pytest.fixture
def fixed_question(monkeypatch):
    monkeypatch.setattr(captcha, "new_question", lambda: ("3+4=?", "7"))


def _buy(client: Client, product, email: str, **extra):
    url = f"/s/{product.merchant.slug}/p/{product.slug}/"
    data = {"option": product.pk, "quantity": 1, "email": email, "gateway": "sandbox", **extra}
    return client.post(url, data, HTTP_ACCEPT_LANGUAGE="en")


def test_product_page_shows_the_captcha_refuses_wrong_and_reused_answers(
    stocked_product, fixed_question
):
    add_rule("velocity_ip", 1, "captcha")
    client = Client()
    page = client.get(
        f"/s/{stocked_product.merchant.slug}/p/{stocked_product.slug}/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert page.status_code == 200
    device = page.cookies[COOKIE_NAME]
    assert device["httponly"] and len(device.value) >= 20
    assert 'name="captcha_answer"' not in page.content.decode()

    assert _buy(client, stocked_product, "a@example.com").status_code == 302
    refused = _buy(client, stocked_product, "b@example.com")
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "confirm you are not a robot" in html
    assert 'name="captcha_answer"' in html and "/risk/captcha.svg" in html
    assert Order.objects.count() == 1
    picture = client.get("/risk/captcha.svg")
    assert picture.status_code == 200 and picture["Content-Type"] == "image/svg+xml"

    wrong = _buy(client, stocked_product, "b@example.com", captcha_answer="8")
    assert wrong.status_code == 400
    assert "The answer to the security check was wrong" in wrong.content.decode()
    assert Order.objects.count() == 1

    solved = _buy(client, stocked_product, "b@example.com", captcha_answer="7")
    assert solved.status_code == 302
    assert Order.objects.count() == 2
    assert RiskDecision.objects.filter(outcome="captcha_passed").count() == 1
    # All orders of this browser carry its device id.
    assert set(RiskDecision.objects.values_list("device_id", flat=True)) == {device.value}

    reused = _buy(client, stocked_product, "c@example.com", captcha_answer="7")
    assert reused.status_code == 400
    assert "confirm you are not a robot" in reused.content.decode()
    assert Order.objects.count() == 2


def test_no_picture_without_a_challenge(client):
    assert client.get("/risk/captcha.svg").status_code == 404
