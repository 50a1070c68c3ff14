from typing import cast

from django import forms
from django.utils.translation import gettext_lazy as _


class OrderLookupForm(forms.Form):
    number = forms.CharField(label=_("Order number"), max_length=24)
    email = forms.EmailField(label=_("Email used for the order"), max_length=254)
    query_password = forms.CharField(
        label=_("Query password (if you set one)"),
        required=False,
        max_length=64,
        widget=forms.PasswordInput(render_value=False),
    )


class PayForm(forms.Form):
    gateway = forms.ChoiceField(label=_("Payment method"), widget=forms.RadioSelect)

    def __init__(self, *args: object, gateways: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = cast(forms.ChoiceField, self.fields["gateway"])
        field.choices = gateways
        if gateways:
            field.initial = gateways[0][0]


class ManualDeliveryForm(forms.Form):
    content = forms.CharField(
        label=_("Goods to deliver"),
        widget=forms.Textarea(attrs={"rows": 6}),
        max_length=5000,
        help_text=_("Shown to the buyer on the order page, encrypted at rest."),
    )
