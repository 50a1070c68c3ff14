"""Staff site registrations for the catalogue. Card keys show status and provenance only."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from merchants.admin import KeepCountersMixin
from shop import selectors, services
from shop.admin_views import import_keys_view
from shop.exceptions import CardvaultError
from shop.models import CardKey, Category, ImportBatch, Product, ProhibitedTerm


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "merchant", "sort_order")
    list_filter = (("merchant", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name",)


@admin.register(Product)
class ProductAdmin(KeepCountersMixin, admin.ModelAdmin):
    counter_fields = ("reusable_sold",)  # raised by fulfilment
    list_display = (
        "display_title",
        "merchant",
        "price",
        "currency",
        "delivery_mode",
        "is_active",
        "review_status",
        "review_term",
        "stock",
    )
    list_filter = (
        "review_status",
        "is_active",
        "delivery_mode",
        ("merchant", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("title", "slug", "merchant__name")
    list_select_related = ("merchant",)
    raw_id_fields = ("merchant", "category", "variant_of")
    readonly_fields = ("review_status", "review_term", "review_note", "reviewed_at")
    change_form_template = "admin/shop/product_change_form.html"
    actions = ["release_products", "reject_products"]

    @admin.action(description=_("Release selected held products (publish them)"))
    def release_products(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        released = 0
        for product in queryset.exclude(review_status=Product.ReviewStatus.PUBLISHED):
            try:
                services.release_product(product_id=product.pk)
            except CardvaultError as exc:
                self.message_user(request, f"{product}: {exc.user_message}", messages.WARNING)
            else:
                released += 1
        self.message_user(request, gettext("%(n)d products released.") % {"n": released})

    @admin.action(description=_("Reject selected held products…"))
    def reject_products(
        self, request: HttpRequest, queryset: QuerySet[Product]
    ) -> HttpResponse | None:
        """Asks for the reason on an intermediate page, then rejects."""
        reason = request.POST.get("reason", "").strip()
        if "apply" in request.POST and reason:
            rejected = 0
            for product in queryset.filter(review_status=Product.ReviewStatus.HELD):
                try:
                    services.reject_product(product_id=product.pk, reason=reason)
                except CardvaultError as exc:
                    self.message_user(request, f"{product}: {exc.user_message}", messages.WARNING)
                else:
                    rejected += 1
            self.message_user(request, gettext("%(n)d products rejected.") % {"n": rejected})
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Reject held products"),
            "products": queryset,
            "missing_reason": "apply" in request.POST,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/shop/reject_products.html", context)

    def get_queryset(self, request: HttpRequest) -> Any:
        return selectors.with_stock(super().get_queryset(request))

    @admin.display(description=_("free stock"))
    def stock(self, obj: Product) -> str:
        left = selectors.stock_left(obj)
        return "∞" if left is None else str(left)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="shop_product_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return import_keys_view(self, request, get_object_or_404(Product, pk=object_id))


@admin.register(CardKey)
class CardKeyAdmin(admin.ModelAdmin):
    list_display = ("id", "merchant", "product", "status", "batch", "order", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "order__number")
    fields = (
        "merchant",
        "product",
        "batch",
        "status",
        "order",
        "reserved_until",
        "sold_at",
        "key_id",
    )
    readonly_fields = fields
    list_select_related = ("merchant", "product", "batch", "order")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "merchant",
        "product",
        "source",
        "file_name",
        "imported_count",
        "duplicate_count",
        "rejected_count",
        "created_at",
    )
    list_select_related = ("merchant", "product")
    readonly_fields = (
        "merchant",
        "product",
        "created_by",
        "source",
        "file_name",
        "line_count",
        "imported_count",
        "duplicate_count",
        "rejected_count",
        "rejected_lines",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ProhibitedTerm)
class ProhibitedTermAdmin(admin.ModelAdmin):
    """Words staff do not allow in product texts; a product using one is held for review when
    the merchant saves it."""

    list_display = ("term", "is_active", "note", "created_at")
    list_filter = ("is_active",)
    search_fields = ("term", "note")
