"""Staff site: orders with their audit trail, payments, and the console of every gateway
notification. Deliveries show which key went where, never its content."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from orders import services
from orders.admin_forms import GatewayConfigForm, MarkPaidForm, PayoutForm, RefundForm
from orders.exceptions import PaymentRejected
from orders.models import (
    Delivery,
    GatewayAlert,
    GatewayConfig,
    Order,
    OrderStatusChange,
    Payment,
    PaymentEvent,
    PaymentNotification,
    Refund,
    UnmatchedNotification,
)
from risk.admin import RiskDecisionInline
from shop.exceptions import CardvaultError


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


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = gettext_lazy("needs attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", gettext_lazy("Yes")), ("no", gettext_lazy("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(needs_attention="")
        if self.value() == "no":
            return queryset.filter(needs_attention="")
        return queryset


class RefundInline(admin.TabularInline):
    model = Refund
    fields = (
        "request_id",
        "amount",
        "currency",
        "status",
        "source",
        "reason",
        "gateway_refund_id",
        "failure",
        "created_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _form_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, order: Order, form: Any, title: str
) -> TemplateResponse:
    request.current_app = model_admin.admin_site.name
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": order,
        "title": title,
        "form": form,
    }
    return TemplateResponse(request, "admin/orders/order_form_page.html", context)


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
        "needs_attention",
        "created_at",
    )
    list_filter = (
        NeedsAttentionFilter,
        "status",
        ("merchant", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("=number", "email")
    list_select_related = ("merchant", "product")
    exclude = ("token_nonce", "token_hash", "query_password_hash")
    inlines = [PaymentInline, DeliveryInline, RefundInline, StatusChangeInline, RiskDecisionInline]
    actions = ["clear_attention", "retry_delivery", "release_held", "refund_held"]
    change_form_template = "admin/orders/order_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:order_id>/mark-paid/",
                view(self.mark_paid_view),
                name="orders_order_mark_paid",
            ),
            path("<int:order_id>/refund/", view(self.refund_view), name="orders_order_refund"),
            *super().get_urls(),
        ]

    def _back(self, order: Order) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:orders_order_change", args=[order.pk])
        )

    def mark_paid_view(self, request: HttpRequest, order_id: int) -> HttpResponse:
        order = get_object_or_404(Order, pk=order_id)
        form = MarkPaidForm(request.POST or None, initial={"gateway": order.gateway})
        if request.method == "POST" and form.is_valid():
            try:
                event = services.mark_paid_manually(
                    order_id=order.pk,
                    gateway_name=form.cleaned_data["gateway"],
                    gateway_trade_id=form.cleaned_data["gateway_trade_id"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,  # type: ignore[arg-type]
                )
            except PaymentRejected as exc:
                form.add_error(None, f"{exc.user_message} ({exc.code})")
            except CardvaultError as exc:
                form.add_error(None, str(exc.user_message))
            else:
                messages.success(
                    request,
                    _("Payment recorded: %(outcome)s") % {"outcome": event.get_outcome_display()},
                )
                return self._back(order)
        return _form_page(request, self, order, form, _("Mark %(order)s paid") % {"order": order})

    def refund_view(self, request: HttpRequest, order_id: int) -> HttpResponse:
        order = get_object_or_404(Order, pk=order_id)
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                refund = services.request_refund(
                    request_id=f"staff:{order.pk}:{request.POST.get('idempotency', '')}"[:80],
                    order_id=order.pk,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    source="staff",
                    actor=request.user,  # type: ignore[arg-type]
                )
            except CardvaultError as exc:
                form.add_error(None, str(exc.user_message))
            else:
                messages.success(
                    request,
                    _("Refund %(amount)s %(currency)s: %(status)s")
                    % {
                        "amount": refund.amount,
                        "currency": refund.currency,
                        "status": refund.get_status_display(),
                    },
                )
                return self._back(order)
        response = _form_page(request, self, order, form, _("Refund %(order)s") % {"order": order})
        # One id per rendered form: a double-clicked submit refunds once.
        import secrets

        response.context_data["idempotency"] = secrets.token_hex(8)  # type: ignore[index]
        return response

    @admin.action(description=gettext_lazy("Clear the needs-attention flag"))
    def clear_attention(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        for order_id in queryset.values_list("id", flat=True):
            services.clear_flag(order_id=order_id)

    @admin.action(description=gettext_lazy("Retry delivery (paid orders out of stock)"))
    def retry_delivery(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        delivered = 0
        for order_id in queryset.filter(status=Order.Status.UNFULFILLED).values_list(
            "id", flat=True
        ):
            try:
                services.retry_fulfilment(order_id=order_id, actor=request.user)  # type: ignore[arg-type]
            except CardvaultError:
                continue
            delivered += 1
        messages.info(request, _("%(n)d order(s) delivered.") % {"n": delivered})

    @admin.action(description=gettext_lazy("Release held orders (deliver them)"))
    def release_held(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        released = 0
        for order_id in queryset.filter(status=Order.Status.HELD).values_list("id", flat=True):
            try:
                services.release_held_order(order_id=order_id, actor=request.user)  # type: ignore[arg-type]
            except CardvaultError as exc:
                messages.warning(request, f"{order_id}: {exc.user_message}")
                continue
            released += 1
        messages.info(request, _("%(n)d held order(s) released.") % {"n": released})

    @admin.action(description=gettext_lazy("Refund held orders in full"))
    def refund_held(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        refunded = 0
        for order_id in queryset.filter(status=Order.Status.HELD).values_list("id", flat=True):
            try:
                services.request_refund(
                    request_id=f"risk-hold:{order_id}",
                    order_id=order_id,
                    reason="refused after risk review",
                    source="risk",
                    actor=request.user,  # type: ignore[arg-type]
                )
            except CardvaultError as exc:
                messages.warning(request, f"{order_id}: {exc.user_message}")
                continue
            refunded += 1
        messages.info(request, _("%(n)d held order(s) refunded.") % {"n": refunded})


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
    """The reconciliation console: every notification received, verified or not."""

    list_display = (
        "received_at",
        "gateway",
        "method",
        "result",
        "detail",
        "payment_reference",
        "remote_ip",
    )
    list_filter = ("gateway", "result", "detail")
    search_fields = ("=payment_reference", "detail", "body")
    actions = ["process_again"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=gettext_lazy("Process again"))
    def process_again(self, request: HttpRequest, queryset: QuerySet[PaymentNotification]) -> None:
        for notification in queryset:
            try:
                reply = services.reprocess_notification(notification_id=notification.pk)
            except CardvaultError as exc:
                messages.error(request, f"{notification}: {exc.user_message}")
                continue
            messages.info(request, f"{notification}: HTTP {reply.status} {reply.body[:40]}")


@admin.register(UnmatchedNotification)
class UnmatchedNotificationAdmin(PaymentNotificationAdmin):
    """Inbox: genuine-looking notifications for payments we have no record of."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).filter(detail="unknown_payment")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = (
        "request_id",
        "order",
        "amount",
        "currency",
        "status",
        "source",
        "gateway_refund_id",
        "failure",
        "paid_out_reference",
        "created_at",
        "payout_link",
    )
    list_filter = ("status", "source")

    @admin.display(description=gettext_lazy("payout"))
    def payout_link(self, refund: Refund) -> str:
        """Staff pay by hand what the gateway cannot: manual refunds, and failed ones."""
        owed = refund.status == Refund.Status.FAILED or (
            refund.status == Refund.Status.MANUAL and not refund.paid_out_reference
        )
        if not owed:
            return ""
        url = reverse(f"{self.admin_site.name}:orders_refund_payout", args=[refund.pk])
        return format_html('<a href="{}">{}</a>', url, _("Record the payout"))

    search_fields = ("=request_id", "order__number", "=gateway_refund_id")
    list_select_related = ("order",)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:refund_id>/payout/", view(self.payout_view), name="orders_refund_payout"),
            *super().get_urls(),
        ]

    def payout_view(self, request: HttpRequest, refund_id: int) -> HttpResponse:
        refund = get_object_or_404(Refund, pk=refund_id)
        form = PayoutForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            # A failed refund paid by hand becomes a manual refund that is paid out already.
            record = (
                services.pay_failed_refund_by_hand
                if refund.status == Refund.Status.FAILED
                else services.record_manual_payout
            )
            try:
                record(
                    refund_id=refund.pk,
                    reference=form.cleaned_data["reference"],
                    actor=request.user,  # type: ignore[arg-type]
                )
            except CardvaultError as exc:
                form.add_error(None, str(exc.user_message))
            else:
                messages.success(request, _("Payout recorded."))
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:orders_refund_changelist")
                )
        return _form_page(
            request, self, refund.order, form, _("Record the payout of %(r)s") % {"r": refund}
        )


@admin.register(GatewayConfig)
class GatewayConfigAdmin(admin.ModelAdmin):
    form = GatewayConfigForm
    list_display = (
        "gateway",
        "display_name",
        "enabled",
        "fee_rate",
        "min_amount",
        "max_amount",
        "sort_order",
        "updated_at",
    )
    list_editable = ("enabled", "sort_order")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # The option and secret fields are added per gateway by the form itself; the model form
        # factory must only be told about the model's own fields.
        kwargs["fields"] = GatewayConfigForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        form_class = self.get_form(request, obj)
        return list(form_class(instance=obj).fields)


@admin.register(GatewayAlert)
class GatewayAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "gateway", "kind", "detail")
    list_filter = ("gateway", "kind")
