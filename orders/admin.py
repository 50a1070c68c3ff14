"""Staff site: orders with their audit trail, payments, and the console of every gateway
notification. Deliveries show which key went where, never its content."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from orders.models import (
    Delivery,
    Order,
    OrderStatusChange,
    Payment,
    PaymentEvent,
    PaymentNotification,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StatusChangeInline(admin.TabularInline):
    model = OrderStatusChange
    fields = ("created_at", "from_status", "to_status", "source", "actor", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("card_key", "shared", "delivered_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaymentInline(admin.TabularInline):
    model = Payment
    fields = (
        "reference",
        "gateway",
        "amount",
        "currency",
        "status",
        "gateway_trade_id",
        "created_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "merchant",
        "product",
        "quantity",
        "amount",
        "currency",
        "status",
        "created_at",
    )
    list_filter = ("status", ("merchant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=number", "email")
    list_select_related = ("merchant", "product")
    exclude = ("token_nonce", "token_hash", "query_password_hash")
    inlines = [PaymentInline, DeliveryInline, StatusChangeInline]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("reference", "order", "gateway", "amount", "currency", "status", "created_at")
    list_filter = ("gateway", "status")
    search_fields = ("=reference", "=gateway_trade_id", "order__number")
    list_select_related = ("order",)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = (
        "gateway",
        "event_id",
        "kind",
        "payment",
        "amount",
        "currency",
        "outcome",
        "created_at",
    )
    list_filter = ("gateway", "kind", "outcome")
    search_fields = ("=event_id", "payment__reference")
    list_select_related = ("payment",)


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "gateway", "method", "result", "detail", "remote_ip")
    list_filter = ("gateway", "result")
    search_fields = ("detail", "body")
