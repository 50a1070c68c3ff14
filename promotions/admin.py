"""Coupons and wholesale tiers in the merchant centre (pinned to the user's own store, like every
``MerchantScopedAdmin``) and, read-mostly, on the staff site."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import ForeignKey, ManyToManyField
from django.http import HttpRequest
from django.utils.translation import gettext as _

from merchants.admin import KeepCountersMixin, MerchantScopedAdmin, merchant_site
from promotions.models import Coupon, CouponRedemption, PriceTier
from shop.models import Product


class CouponForm(forms.ModelForm):
    class Meta:
        model = Coupon
        fields = (
            "merchant",
            "code",
            "kind",
            "value",
            "currency",
            "scope",
            "products",
            "min_order_amount",
            "usage_limit",
            "per_buyer_limit",
            "valid_from",
            "valid_until",
            "is_active",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("scope") == Coupon.Scope.PRODUCTS and not cleaned.get("products"):
            self.add_error("products", _("Choose at least one product for this coupon."))
        merchant = cleaned.get("merchant") or getattr(self.instance, "merchant", None)
        if merchant is not None and any(
            product.merchant_id != merchant.pk for product in cleaned.get("products") or []
        ):
            # The staff site picks products by id: a coupon only ever covers its own store's.
            self.add_error("products", _("Choose products of the coupon's own store."))
        return cleaned


COUPON_FIELDS = (
    "code",
    ("kind", "value", "currency"),
    "scope",
    "products",
    "min_order_amount",
    ("usage_limit", "per_buyer_limit"),
    ("valid_from", "valid_until"),
    "is_active",
)
COUPON_LIST = (
    "code",
    "kind",
    "value",
    "currency",
    "scope",
    "times_used",
    "usage_limit",
    "valid_from",
    "valid_until",
    "is_active",
)


@admin.register(Coupon, site=merchant_site)
class MerchantCouponAdmin(KeepCountersMixin, MerchantScopedAdmin):
    counter_fields = ("times_used",)  # moved by redemptions and releases
    form = CouponForm
    list_display = COUPON_LIST
    list_filter = ("is_active", "kind", "scope")
    search_fields = ("code",)
    fields = (*COUPON_FIELDS, "times_used")
    readonly_fields = ("times_used",)
    filter_horizontal = ("products",)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.related_model is Product:
            kwargs["queryset"] = Product.objects.filter(merchant=self.merchant(request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(PriceTier, site=merchant_site)
class MerchantPriceTierAdmin(MerchantScopedAdmin):
    merchant_lookup = "product__merchant"
    can_delete = True
    list_display = ("product", "min_quantity", "unit_price")
    list_filter = (("product", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("product",)
    fields = ("product", "min_quantity", "unit_price")

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.related_model is Product and field is not None:
            # Tiers price what is sold: listings and their options alike.
            field.queryset = Product.objects.filter(merchant=self.merchant(request))
        return field


# --- staff site -----------------------------------------------------------------------------------
class RedemptionInline(admin.TabularInline):
    model = CouponRedemption
    fields = ("order", "discount", "created_at", "released_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Coupon)
class CouponAdmin(KeepCountersMixin, admin.ModelAdmin):
    counter_fields = ("times_used",)  # moved by redemptions and releases
    form = CouponForm
    list_display = ("merchant", *COUPON_LIST)
    list_filter = ("is_active", "kind", "scope")
    search_fields = ("code", "merchant__name", "merchant__slug")
    list_select_related = ("merchant",)
    fields = ("merchant", *COUPON_FIELDS, "times_used")
    readonly_fields = ("times_used",)
    raw_id_fields = ("merchant", "products")
    inlines = [RedemptionInline]


@admin.register(PriceTier)
class PriceTierAdmin(admin.ModelAdmin):
    list_display = ("product", "min_quantity", "unit_price")
    list_select_related = ("product",)
    search_fields = ("product__title", "product__slug")
    raw_id_fields = ("product",)


@admin.register(CouponRedemption)
class CouponRedemptionAdmin(admin.ModelAdmin):
    list_display = ("coupon", "order", "discount", "created_at", "released_at")
    list_select_related = ("coupon", "order")
    search_fields = ("coupon__code", "order__number")
    readonly_fields = ("coupon", "order", "discount", "created_at", "released_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
