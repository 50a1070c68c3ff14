"""Every locking query of the affiliates app (forced to run: an unevaluated queryset locks
nothing)."""

from affiliates.models import Affiliate, AffiliateWithdrawal, Referral


def lock_referral_for_order(*, order_id: int) -> Referral | None:
    return (
        Referral.objects.select_for_update(of=("self",))
        .select_related("affiliate", "merchant")
        .filter(order_id=order_id)
        .first()
    )


def lock_affiliate(*, affiliate_id: int) -> Affiliate:
    return Affiliate.objects.select_for_update(of=("self",)).get(pk=affiliate_id)


def lock_withdrawal(*, withdrawal_id: int) -> AffiliateWithdrawal:
    return (
        AffiliateWithdrawal.objects.select_for_update(of=("self",))
        .select_related("affiliate")
        .get(pk=withdrawal_id)
    )
