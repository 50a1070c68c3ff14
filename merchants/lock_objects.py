"""Every row-locking query of the merchants app."""

from merchants.models import MerchantApplication


def lock_application(*, application_id: int) -> MerchantApplication:
    return (
        MerchantApplication.objects.select_for_update(of=("self",))
        .select_related("user")
        .get(pk=application_id)
    )
