from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from shop.models import CURRENCIES


class SignUpForm(forms.Form):
    email = forms.EmailField(label=_("Email"), max_length=150)
    password = forms.CharField(
        label=_("Password"), max_length=128, widget=forms.PasswordInput(render_value=False)
    )


class WithdrawalForm(forms.Form):
    amount = forms.DecimalField(label=_("Amount"), max_digits=12, decimal_places=2, min_value=0)
    currency = forms.ChoiceField(label=_("Currency"), choices=CURRENCIES)
    payout_details = forms.CharField(
        label=_("Payout details"),
        max_length=300,
        help_text=_("Where to send the money (account, wallet address)."),
    )


class ResaleBuyForm(forms.Form):
    """A reseller listing's order form; the rules are checked by ``place_order``."""

    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, initial=1)
    email = forms.EmailField(
        label=_("Email"), help_text=_("Your receipt and order link go here."), max_length=254
    )
    query_password = forms.CharField(
        label=_("Query password (optional)"),
        required=False,
        max_length=64,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Needed, with your email, to look the order up later."),
    )
    gateway = forms.ChoiceField(label=_("Payment method"), widget=forms.RadioSelect)

    def __init__(self, *args: Any, gateways: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["gateway"])
        field.choices = gateways
        if gateways:
            field.initial = gateways[0][0]
