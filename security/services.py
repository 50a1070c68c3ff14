"""Two-factor enrolment (django-otp TOTP devices)."""

from typing import Any

from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from security.exceptions import InvalidOTPToken
from security.lock_objects import lock_pending_totp_device

DEVICE_NAME = "authenticator"


def start_totp_enrolment(*, user: Any) -> TOTPDevice:
    """The user's unconfirmed device (a new secret on first call, the same one after, so a
    reload does not invalidate a QR code already scanned). Callers must have checked that the
    user has no confirmed device: enrolling a second one needs the first."""
    with transaction.atomic(durable=True):
        device = lock_pending_totp_device(user=user)
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
        return device


def confirm_totp_enrolment(*, user: Any, token: str) -> TOTPDevice:
    """Confirm the user's pending device with a code from the authenticator app. Raises
    ``InvalidOTPToken`` (nothing written but django-otp's failure counter) on a wrong code."""
    with transaction.atomic(durable=True):
        device = lock_pending_totp_device(user=user)
        if device is None or not device.verify_token(token):
            raise InvalidOTPToken()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return device
