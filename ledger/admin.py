"""Money in the two admin sites.

Merchant site (/merchant/): the merchant's balances, its statement (filterable, CSV) and its
withdrawals (request one; never change or delete). Staff site (/admin/): journals with their
entries, accounts with balances, and the withdrawal queue (pay with a payout reference, or
reject with a note). Every write goes through ``ledger.services``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime, time
from decimal import Decimal
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ledger import selectors, services
from ledger.exceptions import WithdrawalNotAllowed
from ledger.models import Account, Entry, Journal, PayoutRequest, Withdrawal
from merchants.admin import MerchantScopedAdmin, merchant_site
from merchants.admin_analytics import csv_cell
from orders.admin import ReadOnlyAdmin
from shop.exceptions import CardvaultError

STATEMENT_PAGE_SIZE = 200


class WithdrawalRequestForm(forms.ModelForm):
    class Meta:
        model = Withdrawal
        fields = ("amount", "currency", "payout_details")


class StatementFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        required=False,
        choices=[("", gettext_lazy("All")), *Journal.Kind.choices],
    )
    since = forms.DateField(label=gettext_lazy("From"), required=False)
    until = forms.DateField(label=gettext_lazy("Until (inclusive)"), required=False)

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        tz = timezone.get_current_timezone()
        since = self.cleaned_data.get("since")
        until = self.cleaned_data.get("until")
        return (
            datetime.combine(since, time.min, tzinfo=tz) if since else None,
            datetime.combine(until, time.max, tzinfo=tz) if until else None,
        )


class MerchantWithdrawalAdmin(MerchantScopedAdmin):
    """The merchant's money: balances and withdrawals on one page, the statement beside it."""

    can_change = False
    form = WithdrawalRequestForm
    list_display = (
        "created_at",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decision_note",
    )
    list_filter = ("status", "currency")
    change_list_template = "admin/ledger/withdrawal/merchant_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("statement/", view(self.statement_view), name="ledger_withdrawal_statement"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra = {
            **(extra_context or {}),
            "balances": selectors.merchant_balances(merchant=self.merchant(request)),
        }
        return super().changelist_view(request, extra_context=extra)

    def save_model(self, request: HttpRequest, obj: Withdrawal, form: Any, change: bool) -> None:
        # Never a bare save: a withdrawal exists only with its balance hold, which
        # ``_changeform_view`` creates through the service.
        raise PermissionError("withdrawals are created by ledger.services.request_withdrawal")

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        # The request goes through the service in its own transaction, not the admin's save
        # (which wraps the view in a transaction and would save a withdrawal with no hold).
        if request.method == "POST":
            form = WithdrawalRequestForm(request.POST)
            if form.is_valid():
                try:
                    services.request_withdrawal(
                        merchant=self.merchant(request),
                        amount=form.cleaned_data["amount"],
                        currency=form.cleaned_data["currency"],
                        payout_details=form.cleaned_data["payout_details"],
                        actor=request.user,  # type: ignore[arg-type]
                    )
                except WithdrawalNotAllowed as exc:
                    messages.error(request, str(exc.user_message))
                    return HttpResponseRedirect(request.get_full_path())
                messages.success(request, _("Withdrawal requested."))
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:ledger_withdrawal_changelist")
                )
        return super().add_view(request, form_url, extra_context)

    def statement_view(self, request: HttpRequest) -> HttpResponseBase:
        merchant = self.merchant(request)
        form = StatementFilterForm(request.GET or None)
        kind, since, until = "", None, None
        if form.is_valid():
            kind = form.cleaned_data["kind"]
            since, until = form.bounds()
        entries = selectors.statement(merchant=merchant, kind=kind, since=since, until=until)
        if request.GET.get("format") == "csv":
            return _statement_csv(entries, filename=f"statement-{merchant.slug}.csv")
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Statement"),
            "form": form,
            # As the merchant sees it: money owed to it is positive.
            "rows": [
                (entry, -entry.amount, _balance_label(entry.account))
                for entry in entries[:STATEMENT_PAGE_SIZE]
            ],
            "truncated": entries.count() > STATEMENT_PAGE_SIZE,
            "balances": selectors.merchant_balances(merchant=merchant),
            "csv_query": _with_csv(request),
        }
        return TemplateResponse(request, "admin/ledger/statement.html", context)


def _balance_label(account: Account) -> str:
    labels = {
        "pending": _("Pending"),
        "available": _("Available"),
        "withdrawing": _("Being withdrawn"),
    }
    kind = account.code.rsplit(":", 1)[-1]
    return str(labels.get(kind, kind))


def _with_csv(request: HttpRequest) -> str:
    query = request.GET.copy()
    query["format"] = "csv"
    return query.urlencode()


class _Echo:
    def write(self, value: str) -> str:
        return value


def _statement_csv(entries: QuerySet[Entry], *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    header = ["date", "kind", "reference", "order", "account", "currency", "amount", "memo"]

    def rows() -> Any:
        yield writer.writerow(header)
        for entry in entries.iterator(chunk_size=2000):
            # Shown as the merchant sees it: money owed to it is positive.
            # Every cell through csv_cell: a memo must never run as a spreadsheet formula.
            yield writer.writerow(
                [
                    csv_cell(cell)
                    for cell in (
                        entry.journal.created_at.isoformat(),
                        entry.journal.kind,
                        entry.journal.reference,
                        entry.journal.order.number if entry.journal.order else "",
                        entry.account.code.rsplit(":", 1)[-1],
                        entry.account.currency,
                        f"{-entry.amount:.2f}",
                        entry.journal.memo,
                    )
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


merchant_site.register(Withdrawal, MerchantWithdrawalAdmin)


# --- staff ---------------------------------------------------------------------------------------
class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("account", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "reference", "currency", "merchant", "order", "memo")
    list_filter = ("kind", "currency")
    search_fields = ("=reference", "order__number")
    list_select_related = ("merchant", "order")
    inlines = [EntryInline]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "currency", "normal", "merchant", "affiliate", "current_balance")
    list_filter = ("currency", "normal")
    search_fields = ("code",)

    @admin.display(description=gettext_lazy("balance"))
    def current_balance(self, obj: Account) -> Decimal:
        return selectors.balance(obj)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra = {
            **(extra_context or {}),
            "unbalanced": selectors.unbalanced_journal_ids(),
            "trial_balance": selectors.trial_balance(),
            "misowned": selectors.misowned_account_ids(),
        }
        return super().changelist_view(request, extra_context=extra)


def payout_decision_view(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    withdrawal: PayoutRequest,
    *,
    form: forms.Form,
    decide: Callable[..., object],
    refusal: type[CardvaultError],
    balances: Callable[[], object],
    template: str,
) -> HttpResponse:
    """Staff's page to pay (with a payout reference) or reject (with a note) a payout request,
    a merchant's or an affiliate's. ``form`` has ``payout_reference`` and ``note``; ``decide``
    is the service, called with ``paid``, ``payout_reference``, ``note`` and ``actor``; a
    ``refusal`` it raises is shown on the form; ``balances`` are the owner's, shown beside it.
    Decided, it goes back to the model's changelist."""
    if request.method == "POST" and form.is_valid():
        try:
            decide(
                paid="pay" in request.POST,
                payout_reference=form.cleaned_data["payout_reference"],
                note=form.cleaned_data["note"],
                actor=request.user,
            )
        except refusal as exc:
            form.add_error(None, str(exc.user_message))
        else:
            messages.success(request, _("Withdrawal decided."))
            opts = model_admin.opts
            return HttpResponseRedirect(
                reverse(
                    f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
                )
            )
    request.current_app = model_admin.admin_site.name
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": withdrawal,
        "title": _("Decide withdrawal"),
        "form": form,
        "balances": balances(),
    }
    return TemplateResponse(request, template, context)


class DecisionForm(forms.Form):
    payout_reference = forms.CharField(
        label=gettext_lazy("Payout reference"), max_length=128, required=False
    )
    note = forms.CharField(
        label=gettext_lazy("Note to the merchant"), max_length=300, required=False
    )


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "merchant",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decided_by",
    )
    list_filter = ("status", "currency")
    list_select_related = ("merchant", "decided_by")
    search_fields = ("merchant__name", "=payout_reference")
    # In the order the form always showed them (the shared fields come first in ``_meta``).
    fields = (
        "merchant",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decision_note",
        "requested_by",
        "decided_by",
        "decided_at",
    )
    change_form_template = "admin/ledger/withdrawal/staff_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:withdrawal_id>/decide/",
                view(self.decide_view),
                name="ledger_withdrawal_decide",
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request: HttpRequest, withdrawal_id: int) -> HttpResponse:
        withdrawal = get_object_or_404(Withdrawal, pk=withdrawal_id)
        return payout_decision_view(
            self,
            request,
            withdrawal,
            form=DecisionForm(request.POST or None),
            decide=partial(services.decide_withdrawal, withdrawal_id=withdrawal.pk),
            refusal=WithdrawalNotAllowed,
            balances=lambda: selectors.merchant_balances(merchant=withdrawal.merchant),
            template="admin/ledger/withdrawal/decide.html",
        )
