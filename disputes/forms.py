"""Forms of the dispute pages: they collect input; ``disputes.services`` validates it (the
screenshot by content, the window, the transitions) and the views map its errors back here."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from disputes.models import Dispute, DisputeDecision
from disputes.services import MAX_TEXT_LENGTH


def key_choices(count: int) -> list[tuple[str, str]]:
    """The order's delivered keys by their number on the order page; never their text."""
    return [("", str(_("Not about one key in particular")))] + [
        (str(i), str(_("Key #%(n)d")) % {"n": i}) for i in range(1, count + 1)
    ]


class OpenDisputeForm(forms.Form):
    reason = forms.ChoiceField(label=_("What is wrong?"), choices=Dispute.Reason.choices)
    key_index = forms.TypedChoiceField(
        label=_("Which key?"), coerce=int, empty_value=None, required=False
    )
    message = forms.CharField(
        label=_("Describe the problem"),
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("What happened when you used the key? Error messages help the store."),
    )
    screenshot = forms.FileField(
        label=_("Screenshot (optional)"),
        required=False,
        help_text=_("An image (PNG, JPEG, WebP or GIF). Only the store and our staff see it."),
        widget=forms.ClearableFileInput(
            attrs={"accept": "image/png,image/jpeg,image/webp,image/gif"}
        ),
    )

    def __init__(self, *args: Any, key_count: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.TypedChoiceField, self.fields["key_index"])
        field.choices = key_choices(key_count)
        if key_count <= 1:
            field.widget = forms.HiddenInput()


class MessageForm(forms.Form):
    text = forms.CharField(
        label=_("Your message"),
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )


class MerchantAnswerForm(forms.Form):
    """The merchant's answer: replace the key, refund (all or part), or contest."""

    ACTION_CONTEST = "contest"

    action = forms.ChoiceField(
        label=_("Your answer"),
        widget=forms.RadioSelect,
        choices=[
            (DisputeDecision.Action.REPLACE, _("Replace the key with a new one from stock")),
            (DisputeDecision.Action.REFUND, _("Refund")),
            (ACTION_CONTEST, _("Contest: explain why the buyer is wrong")),
        ],
    )
    amount = forms.DecimalField(
        label=_("Refund amount"),
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        help_text=_("Leave empty to refund everything still refundable."),
    )
    key_index = forms.TypedChoiceField(
        label=_("Key to replace"), coerce=int, empty_value=None, required=False
    )
    message = forms.CharField(
        label=_("Reason or message for the buyer"),
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def __init__(self, *args: Any, key_count: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["key_index"]).choices = key_choices(key_count)


class StaffDecisionForm(forms.Form):
    action = forms.ChoiceField(
        label=_("Outcome"),
        widget=forms.RadioSelect,
        choices=[
            (DisputeDecision.Action.REFUND, _("Refund (full, or the amount below)")),
            (DisputeDecision.Action.REPLACE, _("Replace the key")),
            (DisputeDecision.Action.REJECT, _("Reject")),
        ],
    )
    amount = forms.DecimalField(
        label=_("Refund amount"),
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        help_text=_("Leave empty to refund everything still refundable."),
    )
    funded_by_platform = forms.BooleanField(
        label=_("Platform pays first (guarantee fund); claw the merchant's share back"),
        required=False,
    )
    key_index = forms.TypedChoiceField(
        label=_("Key to replace"), coerce=int, empty_value=None, required=False
    )
    reason = forms.CharField(
        label=_("Reason (shown to the buyer and the merchant)"),
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def __init__(self, *args: Any, key_count: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["key_index"]).choices = key_choices(key_count)


class RevealKeyForm(forms.Form):
    key_index = forms.IntegerField(min_value=1)


def add_service_errors(form: forms.Form, errors: dict[str, list[str]]) -> None:
    """Put a service's field errors on the form (unknown fields as form-wide errors)."""
    for field, messages in errors.items():
        for message in messages:
            form.add_error(field if field in form.fields else None, message)
