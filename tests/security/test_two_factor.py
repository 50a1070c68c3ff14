"""TOTP two-factor: mandatory for staff at /admin/, optional (once enrolled, required) for
merchants at /merchant/."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import verify_otp
from tests.factories import MerchantFactory, UserFactory
from tests.security.helpers import PASSWORD, current_code, english_client, wrong_code

pytestmark = pytest.mark.django_db

SETUP = "/account/2fa/setup/"
VERIFY = "/account/2fa/verify/"


def staff_user(**kwargs):
    return UserFactory(username="ops", is_staff=True, is_superuser=True, **kwargs)


def test_staff_without_a_device_reaches_only_the_setup_page():
    staff = staff_user()
    client = english_client()
    client.force_login(staff)

    for url in ("/admin/", "/admin/orders/order/", "/admin/audit/auditentry/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(SETUP), url

    page = client.get(response["Location"])
    assert page.status_code == 200
    content = page.content.decode()
    assert "<svg" in content
    device = TOTPDevice.objects.get(user=staff)
    assert device.confirmed is False
    assert page.context["secret"] in content
    assert "otpauth://totp/" in page.context["otpauth_uri"]


def test_enrolment_with_a_wrong_code_confirms_nothing_and_a_right_code_lets_staff_in():
    staff = staff_user()
    client = english_client()
    client.force_login(staff)
    client.get(SETUP)
    device = TOTPDevice.objects.get(user=staff)

    wrong = client.post(SETUP, {"token": wrong_code(device), "next": "/admin/"})
    assert wrong.status_code == 400
    assert "not valid" in wrong.content.decode()
    assert TOTPDevice.objects.filter(user=staff, confirmed=True).count() == 0
    assert client.get("/admin/").status_code == 302

    device.refresh_from_db()
    right = client.post(SETUP, {"token": current_code(device), "next": "/admin/"})
    # The recovery codes are shown once, with the way on (tests/security/test_recovery_codes.py).
    assert right.status_code == 200
    assert len(right.context["codes"]) == 10
    assert 'href="/admin/"' in right.content.decode()
    assert TOTPDevice.objects.filter(user=staff, confirmed=True).count() == 1
    assert client.get("/admin/").status_code == 200


def test_password_sign_in_then_code_for_an_enrolled_staff_user():
    staff = staff_user()
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client = english_client()

    login = client.post(
        "/admin/login/", {"username": "ops", "password": PASSWORD, "next": "/admin/"}
    )
    assert login.status_code == 302
    gate = client.get("/admin/")
    assert gate["Location"].startswith(VERIFY)

    # An enrolled user cannot enrol a second device with the password alone.
    assert client.get(SETUP)["Location"].startswith(VERIFY)
    assert TOTPDevice.objects.filter(user=staff).count() == 1

    assert client.post(VERIFY, {"token": wrong_code(device), "next": "/admin/"}).status_code == 400
    assert client.get("/admin/").status_code == 302
    device.refresh_from_db()
    device.throttle_reset()
    ok = client.post(VERIFY, {"token": current_code(device), "next": "/admin/"})
    assert ok["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_verify_refuses_an_offsite_next():
    staff = staff_user()
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client = english_client()
    client.force_login(staff)
    ok = client.post(VERIFY, {"token": current_code(device), "next": "https://evil.example/"})
    assert ok["Location"] == "/admin/"


def test_merchant_without_a_device_is_not_asked_for_a_code():
    merchant = MerchantFactory()
    client = english_client()
    client.force_login(merchant.owner)
    assert client.get("/merchant/").status_code == 200


def test_merchant_can_enrol_and_is_then_asked_for_a_code():
    merchant = MerchantFactory()
    client = english_client()
    client.force_login(merchant.owner)
    page = client.get("/merchant/")
    assert SETUP in page.content.decode()  # the link in the user menu

    setup = client.get(f"{SETUP}?next=/merchant/")
    assert setup.status_code == 200
    device = TOTPDevice.objects.get(user=merchant.owner)
    done = client.post(SETUP, {"token": current_code(device), "next": "/merchant/"})
    assert done.status_code == 200
    assert len(done.context["codes"]) == 10
    assert 'href="/merchant/"' in done.content.decode()
    assert client.get("/merchant/").status_code == 200

    # A new session (sign-in with the password) now needs the code.
    second = english_client()
    second.force_login(merchant.owner)
    assert second.get("/merchant/")["Location"].startswith(VERIFY)
    verify_otp(second, merchant.owner)
    assert second.get("/merchant/").status_code == 200


def test_anonymous_setup_goes_to_a_login_page():
    response = english_client().get(SETUP)
    assert response.status_code == 302
    assert "login" in response["Location"]
