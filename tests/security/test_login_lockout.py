"""django-axes: repeated failed sign-ins lock a username + client IP pair, for a cool-off."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEntry
from tests.factories import MerchantFactory, UserFactory
from tests.security.helpers import PASSWORD, english_client

pytestmark = pytest.mark.django_db

STAFF_LOGIN = "/admin/login/"
MERCHANT_LOGIN = "/merchant/login/"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=30)


def attempt(client, url, username, password, **headers):
    return client.post(
        url, {"username": username, "password": password, "next": url}, headers=headers
    )


@pytest.mark.parametrize("url", [STAFF_LOGIN, MERCHANT_LOGIN])
def test_third_failure_locks_even_the_right_password_out(url):
    user = UserFactory(username="target", is_staff=True)
    MerchantFactory(owner=user)
    client = english_client()

    assert attempt(client, url, "target", "wrong1").status_code == 200
    assert attempt(client, url, "target", "wrong2").status_code == 200
    locked = attempt(client, url, "target", "wrong3")

    assert locked.status_code == 429
    assert "Sign-in locked" in locked.content.decode()
    right = attempt(client, url, "target", PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    # Three wrong passwords and the refused right one are failures; the last two met the lock.
    assert AuditEntry.objects.filter(action="login_failed", actor_name="target").count() == 4
    assert AuditEntry.objects.filter(action="lockout", actor_name="target").count() == 2


def test_lockout_is_per_username_and_ip():
    UserFactory(username="target", is_staff=True)
    UserFactory(username="other", is_staff=True)
    attacker = english_client(REMOTE_ADDR="203.0.113.7")
    for n in range(3):
        attempt(attacker, STAFF_LOGIN, "target", f"wrong{n}")
    assert attempt(attacker, STAFF_LOGIN, "target", PASSWORD).status_code == 429

    # The owner, from their own address, still gets in; the attacker can try other names.
    owner = english_client(REMOTE_ADDR="198.51.100.2")
    assert attempt(owner, STAFF_LOGIN, "target", PASSWORD).status_code == 302
    assert attempt(attacker, STAFF_LOGIN, "other", PASSWORD).status_code == 302


def test_lockout_lapses_after_the_cool_off():
    UserFactory(username="target", is_staff=True)
    client = english_client()
    for n in range(3):
        attempt(client, STAFF_LOGIN, "target", f"wrong{n}")
    assert attempt(client, STAFF_LOGIN, "target", PASSWORD).status_code == 429

    with time_machine.travel(timezone.now() + timedelta(minutes=31)):
        assert attempt(client, STAFF_LOGIN, "target", PASSWORD).status_code == 302


def test_forged_forwarded_for_does_not_escape_the_lockout(settings):
    """Behind one trusted proxy the client is the right-most X-Forwarded-For entry; entries the
    client writes further left change nothing."""
    settings.TRUSTED_PROXY_COUNT = 1
    UserFactory(username="target", is_staff=True)
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for n in range(3):
        attempt(
            english_client(**proxy),
            STAFF_LOGIN,
            "target",
            f"wrong{n}",
            **{"X-Forwarded-For": f"192.0.2.{n}, 203.0.113.7"},
        )
    forged = attempt(
        english_client(**proxy),
        STAFF_LOGIN,
        "target",
        PASSWORD,
        **{"X-Forwarded-For": "192.0.2.99, 203.0.113.7"},
    )
    assert forged.status_code == 429
    # Another real client behind the same proxy is not locked out.
    elsewhere = attempt(
        english_client(**proxy),
        STAFF_LOGIN,
        "target",
        PASSWORD,
        **{"X-Forwarded-For": "198.51.100.2"},
    )
    assert elsewhere.status_code == 302


def test_lockout_settings_come_from_the_environment():
    from django.conf import settings

    assert settings.AXES_COOLOFF_TIME is not None
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_CLIENT_IP_CALLABLE == "security.axes_ip.axes_client_ip"
