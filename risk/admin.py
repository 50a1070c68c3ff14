"""Staff site: the rules, the blacklist and the log of decisions. Decisions are read-only; the
inline below shows them on the staff order page (``orders.admin``)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from risk.models import ListEntry, RiskDecision, RiskRule


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "stage",
        "merchant",
        "threshold",
        "window_minutes",
        "currency",
        "outcome",
        "enabled",
        "updated_at",
    )
    list_editable = ("threshold", "window_minutes", "outcome", "enabled")
    list_filter = ("enabled", "stage", "kind", "outcome")
    list_select_related = ("merchant",)
    autocomplete_fields = ("merchant",)
    fields = (
        "kind",
        "stage",
        "merchant",
        "threshold",
        "window_minutes",
        "currency",
        "outcome",
        "enabled",
        "note",
    )


@admin.register(ListEntry)
class ListEntryAdmin(admin.ModelAdmin):
    list_display = ("kind", "value", "reason", "enabled", "expires_at", "created_by", "created_at")
    list_editable = ("enabled",)
    list_filter = ("kind", "enabled")
    search_fields = ("value", "reason")
    fields = ("kind", "value", "reason", "enabled", "expires_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


_DECISION_FIELDS = (
    "created_at",
    "stage",
    "outcome",
    "rule",
    "list_entry",
    "reason",
    "ip",
    "email_masked",
    "device_id",
    "amount",
    "currency",
)


@admin.register(RiskDecision)
class RiskDecisionAdmin(admin.ModelAdmin):
    list_display = ("created_at", "stage", "outcome", "order", "merchant", "reason", "ip")
    list_filter = ("outcome", "stage", ("merchant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=ip", "=device_id", "order__number", "email_masked")
    list_select_related = ("order", "merchant")
    fields = ("order", "merchant", *_DECISION_FIELDS, "user_agent")
    readonly_fields = fields
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RiskDecisionInline(admin.TabularInline):
    """On the staff order page: every screening of the order."""

    model = RiskDecision
    fields = _DECISION_FIELDS
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[RiskDecision]:
        return super().get_queryset(request).select_related("rule__merchant", "list_entry")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
