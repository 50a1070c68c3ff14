"""Forms of the staff console: gateway configuration (credentials write-only), marking an order
paid by hand, refunding, recording a manual payout."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from orders.gateways.registry import GATEWAY_CLASSES, gateway_class
from orders.models import GatewayConfig
from shop.models import CURRENCIES

SECRET_PREFIX = "secret__"  # noqa: S105 - a form-field name prefix, not a secret
OPTION_PREFIX = "option__"


class GatewayConfigForm(forms.ModelForm):
    """Options and secrets become real form fields from the gateway's declared fields. Secrets
    are never rendered back: a blank secret field keeps the stored value."""

    gateway = forms.ChoiceField(label=_("Gateway"))
    currency_list = forms.MultipleChoiceField(
        label=_("Currencies"),
        choices=CURRENCIES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: the gateway's defaults."),
    )

    class Meta:
        model = GatewayConfig
        fields = (
            "gateway",
            "enabled",
            "display_name",
            "fee_rate",
            "min_amount",
            "max_amount",
            "sort_order",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gateway_field = cast(forms.ChoiceField, self.fields["gateway"])
        gateway_field.choices = [
            (name, str(cls.display_name)) for name, cls in GATEWAY_CLASSES.items()
        ]
        self.fields["currency_list"].initial = list(self.instance.currencies or [])
        cls = gateway_class(self.instance.gateway) if self.instance.pk else None
        if cls is None:
            return
        gateway_field.disabled = True  # a row's secrets are bound to its gateway's name
        stored_secrets = self.instance.get_secrets()
        for spec in cls.option_fields:
            option_widget: forms.Widget = (
                forms.Textarea(attrs={"rows": 4}) if spec.multiline else forms.TextInput()
            )
            self.fields[OPTION_PREFIX + spec.name] = forms.CharField(
                label=str(spec.label),
                required=False,
                help_text=str(spec.help_text),
                widget=option_widget,
                initial=self.instance.options.get(spec.name, ""),
            )
        for spec in cls.secret_fields:
            is_set = bool(stored_secrets.get(spec.name))
            secret_widget: forms.Widget = (
                forms.Textarea(attrs={"rows": 4, "autocomplete": "off"})
                if spec.multiline
                else forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
            )
            state = _("set — leave blank to keep it") if is_set else _("not set")
            self.fields[SECRET_PREFIX + spec.name] = forms.CharField(
                label=str(spec.label),
                required=False,
                help_text=f"{spec.help_text} ({state})" if spec.help_text else str(state),
                widget=secret_widget,
                strip=True,
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        cls = gateway_class(self.instance.gateway) if self.instance.pk else None
        if cls is not None and cleaned.get("enabled"):
            stored = self.instance.get_secrets()
            for spec in cls.option_fields:
                if spec.required and not cleaned.get(OPTION_PREFIX + spec.name):
                    self.add_error(OPTION_PREFIX + spec.name, _("Required to enable the gateway."))
            for spec in cls.secret_fields:
                if spec.required and not (
                    cleaned.get(SECRET_PREFIX + spec.name) or stored.get(spec.name)
                ):
                    self.add_error(SECRET_PREFIX + spec.name, _("Required to enable the gateway."))
        return cleaned

    def save(self, commit: bool = True) -> GatewayConfig:
        config = super().save(commit=False)
        config.currencies = list(self.cleaned_data.get("currency_list") or [])
        cls = gateway_class(config.gateway)
        if cls is not None and config.pk:
            config.options = {
                spec.name: self.cleaned_data.get(OPTION_PREFIX + spec.name, "")
                for spec in cls.option_fields
            }
            secrets = config.get_secrets()
            for spec in cls.secret_fields:
                new_value = self.cleaned_data.get(SECRET_PREFIX + spec.name)
                if new_value:
                    secrets[spec.name] = new_value
            config.set_secrets(secrets)
        if commit:
            config.save()
        return config


class MarkPaidForm(forms.Form):
    gateway = forms.ChoiceField(label=_("Gateway"))
    gateway_trade_id = forms.CharField(label=_("Gateway transaction id"), max_length=128)
    reason = forms.CharField(label=_("Reason"), max_length=300, widget=forms.Textarea)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["gateway"])
        field.choices = [(name, str(cls.display_name)) for name, cls in GATEWAY_CLASSES.items()]


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        label=_("Amount"),
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        help_text=_("Blank: everything still refundable."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=300, widget=forms.Textarea)


class PayoutForm(forms.Form):
    reference = forms.CharField(label=_("Payout reference"), max_length=128)
