"""Reads about a user's second factor."""

from typing import Any

from django_otp.plugins.otp_totp.models import TOTPDevice

from security.models import RecoveryCode

# At or below this many unused recovery codes, the user is told to make new ones.
LOW_RECOVERY_CODES = 2


def has_confirmed_device(*, user: Any) -> bool:
    """Whether the user has two-factor on: a confirmed authenticator (TOTP) device. Recovery
    codes alone do not count."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def confirmed_totp_device(*, user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def recovery_codes_left(*, user: Any) -> int:
    return RecoveryCode.objects.filter(device__user=user).count()


def is_verified(*, user: Any) -> bool:
    """Whether this session entered a code (django-otp's OTPMiddleware sets ``is_verified`` on
    authenticated users; anonymous users have none)."""
    check = getattr(user, "is_verified", None)
    return bool(check()) if callable(check) else False
