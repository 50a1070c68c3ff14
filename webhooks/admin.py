"""Webhooks and notification settings in both admin sites. In the merchant centre every
queryset is pinned to the user's merchant (``MerchantScopedAdmin``): a merchant sees and resends
only its own deliveries. Signing secrets and bot tokens never appear in lists."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from merchants.admin import MerchantScopedAdmin, merchant_site
from shop.exceptions import CardvaultError
from webhooks import selectors, services
from webhooks.forms import NotificationSettingsForm, WebhookEndpointForm
from webhooks.models import (
    MerchantNotice,
    NotificationSettings,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


def _pretty_payload(delivery: WebhookDelivery) -> str:
    return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2, ensure_ascii=False))


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "created_at", "response_code", "response_excerpt", "error", "duration_ms")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _resend(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    count = 0
    for delivery in queryset:
        try:
            services.resend_delivery(delivery=delivery, actor=request.user)  # type: ignore[arg-type]
        except CardvaultError as exc:
            modeladmin.message_user(request, str(exc.user_message), messages.ERROR)
        else:
            count += 1
    modeladmin.message_user(
        request, _("%(count)d deliveries queued to be sent again.") % {"count": count}
    )


# --- merchant centre ------------------------------------------------------------------------
@admin.register(WebhookEndpoint, site=merchant_site)
class MerchantWebhookEndpointAdmin(MerchantScopedAdmin):
    form = WebhookEndpointForm
    can_delete = True
    list_display = ("url", "is_active", "created_at")
    actions = ["rotate_secret"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["url", "events", "is_active"]
        return [*fields, "signing_secret"] if obj is not None else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("signing_secret",) if obj is not None else ()

    @admin.display(description=gettext_lazy("signing secret"))
    def signing_secret(self, obj: WebhookEndpoint) -> str:
        # Shown only on the endpoint's own page, to its merchant, to set up the receiver.
        return obj.get_secret()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.update_endpoint(
                endpoint=obj, url=data["url"], events=data["events"], is_active=data["is_active"]
            )
        else:
            created = services.create_endpoint(
                merchant=self.merchant(request),
                url=data["url"],
                events=data["events"],
                is_active=data["is_active"],
            )
            obj.pk = created.pk

    @admin.action(description=gettext_lazy("Give selected endpoints a new signing secret"))
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            services.rotate_endpoint_secret(endpoint=endpoint)
        self.message_user(request, _("New signing secrets set; update your receivers."))


@admin.register(WebhookDelivery, site=merchant_site)
class MerchantWebhookDeliveryAdmin(MerchantScopedAdmin):
    can_add = False
    can_change = False
    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "response_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event")
    fields = (
        "event",
        "event_key",
        "endpoint",
        "status",
        "attempts",
        "response_code",
        "response_excerpt",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "created_at",
        "payload_json",
    )
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["resend"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).select_related("endpoint")

    @admin.display(description=gettext_lazy("payload"))
    def payload_json(self, obj: WebhookDelivery) -> str:
        return _pretty_payload(obj)

    @admin.action(description=gettext_lazy("Resend selected deliveries"), permissions=["view"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        _resend(self, request, queryset)


@admin.register(NotificationSettings, site=merchant_site)
class MerchantNotificationSettingsAdmin(MerchantScopedAdmin):
    form = NotificationSettingsForm
    list_display = ("__str__", "language", "email_enabled", "telegram_configured")
    fields = (
        "language",
        "email_enabled",
        "notify_every_order",
        "telegram_chat_id",
        "telegram_bot_token",
        "clear_telegram_token",
    )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        merchant = self.merchant(request) if super().has_add_permission(request) else None
        return (
            merchant is not None
            and not NotificationSettings.objects.filter(merchant=merchant).exists()
        )

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        merchant_id = self.merchant(request).pk
        initial.setdefault("language", selectors.default_language(merchant_id=merchant_id))
        return initial

    @admin.display(description=gettext_lazy("Telegram"), boolean=True)
    def telegram_configured(self, obj: NotificationSettings) -> bool:
        return obj.has_telegram

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = services.save_notification_settings(
            merchant=self.merchant(request),
            language=data["language"],
            email_enabled=data["email_enabled"],
            notify_every_order=data["notify_every_order"],
            telegram_chat_id=data["telegram_chat_id"],
            telegram_token=form.telegram_token_change(),
        )
        obj.pk = saved.pk


# --- staff ----------------------------------------------------------------------------------
@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "merchant", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("url", "merchant__name")
    fields = ("merchant", "url", "events", "is_active", "created_at")
    readonly_fields = ("merchant", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # endpoints are made by merchants, with a secret only they see


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "merchant",
        "event",
        "endpoint",
        "status",
        "attempts",
        "response_code",
        "next_attempt_at",
    )
    list_filter = ("status", "event")
    search_fields = ("event_key", "merchant__name")
    readonly_fields = (*MerchantWebhookDeliveryAdmin.fields, "merchant")
    fields = readonly_fields
    inlines = [AttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("payload"))
    def payload_json(self, obj: WebhookDelivery) -> str:
        return _pretty_payload(obj)

    @admin.action(description=gettext_lazy("Resend selected deliveries"), permissions=["view"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        _resend(self, request, queryset)


@admin.register(MerchantNotice)
class MerchantNoticeAdmin(admin.ModelAdmin):
    list_display = ("kind", "object_key", "channel", "merchant", "sent_at", "created_at")
    list_filter = ("kind", "channel")
    readonly_fields = ("merchant", "kind", "object_key", "channel", "claimed_at", "sent_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ("merchant", "language", "email_enabled", "notify_every_order")
    fields = ("merchant", "language", "email_enabled", "notify_every_order", "telegram_chat_id")
    readonly_fields = ("merchant",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
