"""Staff site registrations for the catalogue. Card keys show status and provenance only."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _

from shop import selectors
from shop.admin_views import import_keys_view
from shop.models import CardKey, Category, ImportBatch, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "merchant", "sort_order")
    list_filter = (("merchant", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name",)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = (
        "display_title",
        "merchant",
        "price",
        "currency",
        "delivery_mode",
        "is_active",
        "stock",
    )
    list_filter = ("is_active", "delivery_mode", ("merchant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("title", "slug", "merchant__name")
    list_select_related = ("merchant",)
    raw_id_fields = ("merchant", "category", "variant_of")
    change_form_template = "admin/shop/product_change_form.html"

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
