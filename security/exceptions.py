from django.utils.translation import gettext_lazy as _

from shop.exceptions import CardvaultError


class InvalidOTPToken(CardvaultError):
    user_message = _("That code is not valid. Check your authenticator app and try again.")
