"""The product page's "Check price" button: the form priced (wholesale tier, coupon) without
placing an order, so the buyer sees the discount before paying. Called by ``shop.views.product``
on the same form and URL (so the checkout rate limit covers it); nothing is written or reserved
and no captcha is spent."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _

from promotions import selectors
from promotions.exceptions import CouponRejected
from shop.models import Product


@dataclass(frozen=True, slots=True)
class PriceCheck:
    product: Product
    quantity: int
    quote: selectors.Quote


def check_price(form: forms.Form) -> PriceCheck | None:
    """Price the product page's bound ``shop.forms.BuyForm``. Returns None, with the reasons as
    form errors, for an invalid form, a quantity outside the option's limits or a coupon code
    that does not apply (the same message the Buy button would give)."""
    if not form.is_valid():
        return None
    try:
        product: Product = form.selected_product()  # type: ignore[attr-defined]
    except forms.ValidationError as exc:
        form.add_error("option", exc)
        return None
    quantity = form.cleaned_data["quantity"]
    if not (product.min_quantity <= quantity <= product.max_quantity):
        form.add_error(
            "quantity",
            _("Choose between %(min)d and %(max)d.")
            % {"min": product.min_quantity, "max": product.max_quantity},
        )
        return None
    try:
        quote = selectors.quote_order(
            product=product,
            quantity=quantity,
            coupon_code=form.cleaned_data.get("coupon_code") or "",
            email=form.cleaned_data["email"],
            now=timezone.now(),
        )
    except CouponRejected as exc:
        for message in exc.errors["coupon_code"]:
            form.add_error("coupon_code", message)
        return None
    return PriceCheck(product=product, quantity=quantity, quote=quote)
