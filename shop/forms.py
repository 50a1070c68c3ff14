from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from shop.models import Product
from shop.selectors import Listing, stock_left


class BuyForm(forms.Form):
    """The product page's order form. Business rules (stock, limits, manual fields) are checked
    by ``orders.services.place_order``; this form only shapes the input."""

    option = forms.TypedChoiceField(label=_("Option"), coerce=int)
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, initial=1)
    email = forms.EmailField(
        label=_("Email"),
        help_text=_("Your receipt and order link go here."),
        max_length=254,
    )
    query_password = forms.CharField(
        label=_("Query password (optional)"),
        required=False,
        max_length=64,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Needed, with your email, to look the order up later."),
    )
    coupon_code = forms.CharField(label=_("Coupon code (optional)"), required=False, max_length=40)
    gateway = forms.ChoiceField(label=_("Payment method"), widget=forms.RadioSelect)

    def __init__(
        self, *args: Any, listing: Listing, gateways: list[tuple[str, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.listing = listing
        option_field = cast(forms.TypedChoiceField, self.fields["option"])
        option_field.choices = [
            (option.pk, self._option_label(option)) for option in listing.options
        ]
        option_field.initial = listing.options[0].pk
        if len(listing.options) == 1:
            option_field.widget = forms.HiddenInput()
        else:
            option_field.widget = forms.RadioSelect(choices=option_field.choices)
        gateway_field = cast(forms.ChoiceField, self.fields["gateway"])
        gateway_field.choices = gateways
        if gateways:
            gateway_field.initial = gateways[0][0]
        self.manual_field_names: list[str] = []
        for option in listing.options:
            if option.delivery_mode != Product.DeliveryMode.MANUAL:
                continue
            for spec in option.manual_fields:
                name = f"manual_{spec['name']}"
                if name in self.fields:
                    continue
                self.fields[name] = forms.CharField(
                    label=spec.get("label") or spec["name"], required=False, max_length=200
                )
                self.manual_field_names.append(name)

    @staticmethod
    def _option_label(option: Product) -> str:
        left = stock_left(option)
        stock = _("unlimited") if left is None else _("%(n)d in stock") % {"n": left}
        label = option.variant_label or option.title
        return f"{label} — {option.price} {option.currency} ({stock})"

    def selected_product(self) -> Product:
        chosen = self.cleaned_data["option"]
        for option in self.listing.options:
            if option.pk == chosen:
                return option
        raise forms.ValidationError(_("Choose an option."))

    def manual_inputs(self) -> dict[str, str]:
        return {
            name.removeprefix("manual_"): self.cleaned_data.get(name) or ""
            for name in self.manual_field_names
        }


class SearchForm(forms.Form):
    q = forms.CharField(label=_("Search products"), max_length=100, required=False)
