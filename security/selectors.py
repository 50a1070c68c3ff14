"""Reads about a user's second factor."""

from typing import Any

from django_otp.plugins.otp_totp.models import TOTPDevice


def has_confirmed_device(*, user: Any) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def is_verified(*, user: Any) -> bool:
    """Whether this session entered a code (django-otp's OTPMiddleware sets ``is_verified`` on
    authenticated users; anonymous users have none)."""
    check = getattr(user, "is_verified", None)
    return bool(check()) if callable(check) else False
