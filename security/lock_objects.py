"""Every row lock the security app takes."""

from typing import Any

from django_otp.plugins.otp_totp.models import TOTPDevice


def lock_pending_totp_device(*, user: Any) -> TOTPDevice | None:
    """The user's oldest unconfirmed TOTP device, locked (call inside a transaction)."""
    return (
        TOTPDevice.objects.select_for_update(of=("self",))
        .filter(user=user, confirmed=False)
        .order_by("pk")
        .first()
    )
