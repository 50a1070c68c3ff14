from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the log is evidence, nobody edits or deletes it from the admin."""

    list_display = (
        "created_at",
        "actor_name",
        "actor_kind",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "ip",
    )
    list_filter = ("actor_kind", "action")
    search_fields = ("actor_name", "object_repr", "object_id", "ip")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
