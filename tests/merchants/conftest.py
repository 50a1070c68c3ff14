import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import UserFactory


@pytest.fixture
def staff_user(db):
    return UserFactory(username="ops", email="ops@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff_user):
    """A staff session past the two-factor gate: a confirmed TOTP device, verified."""
    device = TOTPDevice.objects.create(user=staff_user, name="authenticator", confirmed=True)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(staff_user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
