"""Recovery codes for two-factor sign-in.

django-otp's own static-token plugin (``otp_static``) stores its tokens in plain text, so anyone
who can read the database (a backup, a replica, a staff SQL console) could sign in as any user
who has codes. We keep only a salted PBKDF2 hash of each code (``security/recovery_codes.py``);
the plain codes exist only in the response that shows them once.

``RecoveryCodeDevice`` is a django-otp device (one per user that has codes) so that a session
verified with a recovery code is verified exactly like one verified with the authenticator
(``django_otp.login``, ``user.is_verified()``). It is not a second factor on its own: the
two-factor pages and gate look at the TOTP device only (``security.selectors``).
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device, ThrottlingMixin, TimestampMixin


class RecoveryCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """A user's set of single-use recovery codes. Wrong codes slow further tries down
    (django-otp's growing delays, shared with the authenticator's factor setting)."""

    class Meta:
        verbose_name = _("recovery code set")
        verbose_name_plural = _("recovery code sets")
        constraints = [
            models.UniqueConstraint(fields=["user"], name="security_one_recovery_device_per_user")
        ]

    def get_throttle_factor(self) -> float:
        return float(getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1))

    def verify_token(self, token: Any) -> bool:
        """django-otp's interface: consume ``token`` if it is one of this user's codes.
        The work (and the audit row) is in ``security.services.use_recovery_code``."""
        from security.exceptions import InvalidOTPToken
        from security.services import use_recovery_code  # services imports this module

        try:
            use_recovery_code(user=self.user, code=str(token))
        except InvalidOTPToken:
            return False
        return True


class RecoveryCode(models.Model):
    """One unused recovery code: only its hash. Using a code deletes the row."""

    device = models.ForeignKey(
        RecoveryCodeDevice,
        verbose_name=_("recovery code set"),
        on_delete=models.CASCADE,
        related_name="codes",
    )
    code_hash = models.CharField(_("code hash"), max_length=128)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")

    def __str__(self) -> str:
        return f"recovery code #{self.pk}"  # never the code, never the hash


class TwoFactorAccount(User):  # type: ignore[django-manager-missing]  # Device.user has no related_name
    """A user seen from the two-factor side, for the staff admin's list and reset action."""

    class Meta:
        proxy = True
        verbose_name = _("two-factor account")
        verbose_name_plural = _("two-factor accounts")
