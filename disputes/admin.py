from django.contrib import admin

from disputes.models import Dispute


@admin.register(Dispute)
class DisputeAdmin(admin.ModelAdmin):
    list_display = ("id", "order", "status", "reason", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("order",)
