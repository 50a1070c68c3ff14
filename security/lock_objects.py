"""Every row lock the security app takes."""

from typing import Any

from django_otp.plugins.otp_totp.models import TOTPDevice

from security.models import RecoveryCodeDevice


def lock_pending_totp_device(*, user: Any) -> TOTPDevice | None:
    """The user's oldest unconfirmed TOTP device, locked (call inside a transaction)."""
    return (
        TOTPDevice.objects.select_for_update(of=("self",))
        .filter(user=user, confirmed=False)
        .order_by("pk")
        .first()
    )


def lock_recovery_device(*, user: Any) -> RecoveryCodeDevice | None:
    """The user's recovery code set, locked (call inside a transaction): uses, wrong guesses
    (the throttle counters) and regeneration of one user's codes happen one at a time."""
    return RecoveryCodeDevice.objects.select_for_update(of=("self",)).filter(user=user).first()
