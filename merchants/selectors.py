from django.contrib.auth.models import AnonymousUser, User

from merchants.models import Merchant


def merchant_for_user(user: User | AnonymousUser) -> Merchant | None:
    """The merchant a user works for, or None. Suspended merchants still reach their admin (to
    see orders and fix what got them suspended); pending ones can prepare their store."""
    if not user.is_authenticated or not user.is_active:
        return None
    return Merchant.objects.filter(memberships__user=user).first()
