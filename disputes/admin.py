"""Disputes in the two admin sites.

Merchant site (/merchant/): the store's own disputes only (``MerchantScopedAdmin`` scopes every
queryset to the user's merchant), the conversation, the answer (replace, refund, contest) within
the answer window, messages, the screenshot. No key is ever shown there.

Staff site (/admin/): the queue (unresolved first, oldest first), the case file (order, keys by
position and provenance, when the buyer first viewed them, the batch defect rate, the merchant's
history and rates, messages and the audit trail), the decision (refund, platform pays first,
replace, reject, each with a reason), messages, and the audited key reveal.

Every write goes through ``disputes.services`` from a custom view (never the admin's own save,
which would wrap the services' durable transactions).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from disputes import selectors, services
from disputes.exceptions import InvalidDisputeInput, user_text
from disputes.forms import (
    MerchantAnswerForm,
    MessageForm,
    RevealKeyForm,
    StaffDecisionForm,
)
from disputes.models import Dispute, DisputeDecision, Role
from disputes.views import screenshot_response
from merchants.admin import MerchantScopedAdmin, merchant_site
from shop.exceptions import CardvaultError

_READ_FIELDS = (
    "order",
    "status",
    "reason",
    "message",
    "key_index",
    "answer_due_at",
    "escalated_at",
    "resolution",
    "resolution_reason",
    "resolved_at",
    "created_at",
)


def _errors_text(exc: CardvaultError) -> str:
    if isinstance(exc, InvalidDisputeInput) and exc.errors:
        return " ".join(str(m) for messages_ in exc.errors.values() for m in messages_)
    return user_text(exc)


class _DisputeViews:
    """What both sites' dispute pages share: fetch in scope, the idempotency token, the way back."""

    admin_site: admin.AdminSite

    if TYPE_CHECKING:

        def get_queryset(self, request: HttpRequest) -> QuerySet[Any]: ...

    def _dispute(self, request: HttpRequest, object_id: str) -> Dispute:
        """The dispute if this user may see it; 404 for anything else (another merchant's)."""
        dispute = (
            self.get_queryset(request).select_related("order").filter(pk=object_id).first()
            if object_id.isdigit()
            else None
        )
        if dispute is None:
            raise Http404
        return dispute

    def _back(self, dispute: Dispute) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:disputes_dispute_change", args=[dispute.pk])
        )


# --- merchant site -------------------------------------------------------------------------------
class MerchantDisputeAdmin(_DisputeViews, MerchantScopedAdmin):
    merchant_lookup = "order__merchant"
    can_add = False
    can_change = False
    list_display = ("__str__", "order", "reason", "status", "answer_due_at", "resolution")
    list_filter = ("status", "reason")
    search_fields = ("=order__number",)
    list_select_related = ("order",)
    ordering = ("-created_at", "-id")
    fields = _READ_FIELDS
    readonly_fields = _READ_FIELDS
    change_form_template = "disputes/admin/merchant_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/answer/",
                view(self.answer_view),
                name="disputes_dispute_answer",
            ),
            path(
                "<path:object_id>/message/",
                view(self.message_view),
                name="disputes_dispute_message",
            ),
            path(
                "<path:object_id>/screenshot/",
                view(self.screenshot_view),
                name="disputes_dispute_screenshot",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        dispute = self._dispute(request, object_id)
        keys = selectors.delivered_key_rows(order=dispute.order)
        may_answer = selectors.merchant_may_answer(dispute=dispute)
        extra = {
            **(extra_context or {}),
            "dispute": dispute,
            "conversation": selectors.conversation(dispute=dispute),
            "events": selectors.timeline(dispute=dispute, staff=False),
            "keys": keys,
            "answer_form": MerchantAnswerForm(
                key_count=len(keys), initial={"key_index": dispute.key_index}
            )
            if may_answer
            else None,
            "message_form": None if dispute.is_resolved else MessageForm(),
            "idempotency": secrets.token_hex(8),
        }
        return super().change_view(request, object_id, form_url, extra)

    def answer_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._dispute(request, object_id)
        if request.method != "POST":
            return self._back(dispute)
        form = MerchantAnswerForm(
            request.POST, key_count=len(selectors.delivered_key_rows(order=dispute.order))
        )
        if not form.is_valid():
            messages.error(
                request,
                _("Please correct the answer: %(errors)s")
                % {"errors": " ".join(str(e) for errors in form.errors.values() for e in errors)},
            )
            return self._back(dispute)
        data = form.cleaned_data
        try:
            if data["action"] == MerchantAnswerForm.ACTION_CONTEST:
                services.contest_dispute(
                    dispute_id=dispute.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    message=data["message"],
                )
                done = _("You contested the dispute; staff will decide.")
            else:
                services.resolve_dispute(
                    dispute_id=dispute.pk,
                    action=data["action"],
                    reason=data["message"],
                    actor=request.user,  # type: ignore[arg-type]
                    role=Role.MERCHANT,
                    request_id=f"merchant:{request.user.pk}:{request.POST.get('idempotency', '')}",
                    amount=data["amount"]
                    if data["action"] == DisputeDecision.Action.REFUND
                    else None,
                    key_index=data["key_index"],
                )
                done = _("Dispute resolved; the buyer has been told.")
        except CardvaultError as exc:
            messages.error(request, _errors_text(exc))
        else:
            messages.success(request, done)
        return self._back(dispute)

    def message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._dispute(request, object_id)
        if request.method != "POST":
            return self._back(dispute)
        return _post_message(request, dispute, role=Role.MERCHANT, back=self._back(dispute))

    def screenshot_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        return screenshot_response(self._dispute(request, object_id))


merchant_site.register(Dispute, MerchantDisputeAdmin)


def _post_message(
    request: HttpRequest, dispute: Dispute, *, role: str, back: HttpResponseRedirect
) -> HttpResponseRedirect:
    form = MessageForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Write a message."))
        return back
    try:
        services.post_message(
            dispute_id=dispute.pk,
            role=role,
            text=form.cleaned_data["text"],
            author=request.user,  # type: ignore[arg-type]
        )
    except CardvaultError as exc:
        messages.error(request, _errors_text(exc))
    else:
        messages.success(request, _("Message sent."))
    return back


# --- staff site ----------------------------------------------------------------------------------
class QueueFilter(admin.SimpleListFilter):
    """The queue by default: unresolved disputes only."""

    title = gettext_lazy("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("all", gettext_lazy("All disputes"))]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("Unresolved"),
        }
        yield {
            "selected": self.value() == "all",
            "query_string": changelist.get_query_string({self.parameter_name: "all"}),
            "display": _("All disputes"),
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "all":
            return queryset
        return queryset.filter(status__in=selectors.OPEN_STATES)


@admin.register(Dispute)
class DisputeAdmin(_DisputeViews, admin.ModelAdmin):
    list_display = (
        "__str__",
        "order",
        "merchant",
        "reason",
        "status",
        "age",
        "answer_due_at",
        "resolution",
    )
    list_filter = (QueueFilter, "status", "reason", "resolution")
    search_fields = ("=order__number",)
    list_select_related = ("order", "order__merchant")
    ordering = ("created_at", "id")  # the queue: oldest first
    fields = _READ_FIELDS
    readonly_fields = _READ_FIELDS
    change_form_template = "disputes/admin/staff_change_form.html"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("merchant"))
    def merchant(self, obj: Dispute) -> str:
        return str(obj.order.merchant)

    @admin.display(description=gettext_lazy("age"), ordering="created_at")
    def age(self, obj: Dispute) -> str:
        return timesince(obj.created_at, timezone.now())

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/decide/", view(self.decide_view), name="disputes_dispute_decide"
            ),
            path(
                "<path:object_id>/message/",
                view(self.message_view),
                name="disputes_dispute_message",
            ),
            path(
                "<path:object_id>/reveal/", view(self.reveal_view), name="disputes_dispute_reveal"
            ),
            path(
                "<path:object_id>/screenshot/",
                view(self.screenshot_view),
                name="disputes_dispute_screenshot",
            ),
            *super().get_urls(),
        ]

    def _staff_dispute(self, request: HttpRequest, object_id: str) -> Dispute:
        dispute = self._dispute(request, object_id)
        if not self.has_view_permission(request, dispute):
            raise PermissionDenied
        return dispute

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        dispute = self._staff_dispute(request, object_id)
        case = selectors.staff_case(dispute=dispute)
        extra = {
            **(extra_context or {}),
            "dispute": dispute,
            "case": case,
            "decision_form": None
            if dispute.is_resolved or case.decision is not None
            else StaffDecisionForm(
                key_count=len(case.keys), initial={"key_index": dispute.key_index}
            ),
            "message_form": None if dispute.is_resolved else MessageForm(),
            "idempotency": secrets.token_hex(8),
        }
        return super().change_view(request, object_id, form_url, extra)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._staff_dispute(request, object_id)
        if request.method != "POST":
            return self._back(dispute)
        form = StaffDecisionForm(
            request.POST, key_count=len(selectors.delivered_key_rows(order=dispute.order))
        )
        if not form.is_valid():
            messages.error(
                request,
                _("Please correct the decision: %(errors)s")
                % {"errors": " ".join(str(e) for errors in form.errors.values() for e in errors)},
            )
            return self._back(dispute)
        data = form.cleaned_data
        try:
            resolved = services.resolve_dispute(
                dispute_id=dispute.pk,
                action=data["action"],
                reason=data["reason"],
                actor=request.user,  # type: ignore[arg-type]
                role=Role.STAFF,
                request_id=f"staff:{request.user.pk}:{request.POST.get('idempotency', '')}",
                amount=data["amount"] if data["action"] == DisputeDecision.Action.REFUND else None,
                funded_by_platform=data["funded_by_platform"],
                key_index=data["key_index"],
            )
        except CardvaultError as exc:
            messages.error(request, _errors_text(exc))
        else:
            messages.success(
                request,
                _("Dispute resolved: %(resolution)s.")
                % {"resolution": resolved.get_resolution_display()},
            )
        return self._back(dispute)

    def message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._staff_dispute(request, object_id)
        if request.method != "POST":
            return self._back(dispute)
        return _post_message(request, dispute, role=Role.STAFF, back=self._back(dispute))

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The explicit, audited click: a POST records who revealed which key, then the page
        shows its plaintext once (never cached)."""
        dispute = self._staff_dispute(request, object_id)
        form = RevealKeyForm(request.POST or None)
        if request.method != "POST" or not form.is_valid():
            return self._back(dispute)
        try:
            text = services.reveal_key(
                dispute_id=dispute.pk,
                key_index=form.cleaned_data["key_index"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except CardvaultError as exc:
            messages.error(request, _errors_text(exc))
            return self._back(dispute)
        request.current_app = self.admin_site.name
        response = TemplateResponse(
            request,
            "disputes/admin/revealed_key.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": dispute,
                "title": _("Key #%(n)d of %(dispute)s")
                % {"n": form.cleaned_data["key_index"], "dispute": dispute},
                "key_text": text,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    def screenshot_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        return screenshot_response(self._staff_dispute(request, object_id))
