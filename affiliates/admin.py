"""Affiliates and reselling in the two admin sites.

Merchant site (/merchant/): the store's affiliate programme (rate, on/off), the referrals it
pays, its resale offers (which products resellers may sell, at what floor price), its listings
of other suppliers' offers, and the supplier report (resellers × products). Every queryset is
pinned to the signed-in merchant. Staff site (/admin/): everything, read-only, plus the
affiliate withdrawal queue (pay with a payout reference, or reject).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import ForeignKey
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from affiliates import selectors, services
from affiliates.exceptions import AffiliateWithdrawalNotAllowed
from affiliates.models import (
    Affiliate,
    AffiliateProgramme,
    AffiliateWithdrawal,
    Referral,
    ResaleListing,
    ResaleOffer,
    ResaleSale,
)
from ledger.admin import payout_decision_view
from merchants.admin import MerchantScopedAdmin, merchant_site
from orders.admin import ReadOnlyAdmin


# --- merchant centre ------------------------------------------------------------------------------
@admin.register(AffiliateProgramme, site=merchant_site)
class MerchantProgrammeAdmin(MerchantScopedAdmin):
    list_display = ("merchant", "enabled", "commission_rate", "updated_at")
    fields = ("enabled", "commission_rate")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # One programme per store.
        return (
            super().has_add_permission(request, *args) and not self.get_queryset(request).exists()
        )


@admin.register(Referral, site=merchant_site)
class MerchantReferralAdmin(MerchantScopedAdmin):
    can_add = False
    can_change = False
    list_display = (
        "created_at",
        "order",
        "affiliate",
        "commission_rate",
        "status",
        "commission",
        "reversed_amount",
    )
    list_filter = ("status",)
    list_select_related = ("order", "affiliate")


@admin.register(ResaleOffer, site=merchant_site)
class MerchantResaleOfferAdmin(MerchantScopedAdmin):
    list_display = ("product", "floor_price", "is_open", "created_at")
    list_filter = ("is_open",)
    fields = ("product", "floor_price", "is_open")
    can_delete = True
    change_list_template = "admin/affiliates/resaleoffer/change_list.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Listings and frozen sales refer to the offer: it stays the offer of one product.
        if obj is not None:
            return (*super().get_readonly_fields(request, obj), "product")
        return super().get_readonly_fields(request, obj)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "report/",
                self.admin_site.admin_view(self.report_view),
                name="affiliates_resaleoffer_report",
            ),
            *super().get_urls(),
        ]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Which resellers sell which of this supplier's products, and what they sold."""
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Resellers of your products"),
            "rows": selectors.supplier_report(supplier=self.merchant(request)),
        }
        return TemplateResponse(request, "admin/affiliates/resaleoffer/report.html", context)


class ListingForm(forms.ModelForm):
    class Meta:
        model = ResaleListing
        fields = ("offer", "price", "is_active")


@admin.register(ResaleListing, site=merchant_site)
class MerchantResaleListingAdmin(MerchantScopedAdmin):
    list_display = ("offer", "supplier", "price", "floor_price", "is_active", "sellable")
    list_filter = ("is_active",)
    list_select_related = ("offer__product", "offer__merchant")
    form = ListingForm
    can_delete = True

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.related_model is ResaleOffer:
            kwargs["queryset"] = selectors.open_offers_for(reseller=self.merchant(request))
            return admin.ModelAdmin.formfield_for_foreignkey(self, db_field, request, **kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=gettext_lazy("supplier"))
    def supplier(self, obj: ResaleListing) -> str:
        return str(obj.offer.merchant)

    @admin.display(description=gettext_lazy("floor price"))
    def floor_price(self, obj: ResaleListing) -> str:
        return f"{obj.offer.floor_price} {obj.offer.product.currency}"

    @admin.display(description=gettext_lazy("buyable now"), boolean=True)
    def sellable(self, obj: ResaleListing) -> bool:
        return ResaleListing.objects.filter(
            selectors.sellable_listings_filter(), pk=obj.pk
        ).exists()


@admin.register(ResaleSale, site=merchant_site)
class MerchantResaleSaleAdmin(MerchantScopedAdmin):
    """The reseller's sales (orders belong to the supplier, who fulfils them)."""

    merchant_lookup = "reseller"
    can_add = False
    can_change = False
    list_display = ("created_at", "order", "supplier", "unit_price", "supplier_unit_price")
    list_select_related = ("order", "supplier")


# --- staff site -----------------------------------------------------------------------------------
@admin.register(AffiliateProgramme)
class ProgrammeAdmin(admin.ModelAdmin):
    list_display = ("merchant", "enabled", "commission_rate", "updated_at")
    list_select_related = ("merchant",)


@admin.register(Affiliate)
class AffiliateAdmin(admin.ModelAdmin):
    list_display = ("code", "user", "is_active", "clicks", "created_at")
    list_filter = ("is_active",)
    search_fields = ("=code", "user__email")
    fields = ("user", "code", "is_active", "clicks")
    readonly_fields = ("user", "code", "clicks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "order",
        "merchant",
        "affiliate",
        "status",
        "commission",
        "reversed_amount",
    )
    list_filter = ("status",)
    list_select_related = ("order", "merchant", "affiliate")


@admin.register(ResaleOffer)
class ResaleOfferAdmin(ReadOnlyAdmin):
    list_display = ("product", "merchant", "floor_price", "is_open")
    list_select_related = ("product", "merchant")


@admin.register(ResaleListing)
class ResaleListingAdmin(ReadOnlyAdmin):
    list_display = ("offer", "merchant", "price", "is_active")
    list_select_related = ("offer__product", "merchant")


@admin.register(ResaleSale)
class ResaleSaleAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order", "reseller", "supplier", "unit_price")
    list_select_related = ("order", "reseller", "supplier")


class DecisionForm(forms.Form):
    payout_reference = forms.CharField(
        label=gettext_lazy("Payout reference"), max_length=128, required=False
    )
    note = forms.CharField(label=gettext_lazy("Note"), max_length=300, required=False)


@admin.register(AffiliateWithdrawal)
class AffiliateWithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "affiliate",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decide_link",
    )
    list_filter = ("status", "currency")
    list_select_related = ("affiliate",)
    # In the order the form always showed them (the shared fields come first in ``_meta``).
    fields = (
        "affiliate",
        "amount",
        "currency",
        "status",
        "payout_details",
        "payout_reference",
        "decision_note",
        "decided_by",
        "decided_at",
    )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:withdrawal_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="affiliates_affiliatewithdrawal_decide",
            ),
            *super().get_urls(),
        ]

    @admin.display(description=gettext_lazy("decide"))
    def decide_link(self, obj: AffiliateWithdrawal) -> str:
        if obj.status != AffiliateWithdrawal.Status.REQUESTED:
            return ""
        url = reverse(
            f"{self.admin_site.name}:affiliates_affiliatewithdrawal_decide", args=[obj.pk]
        )
        return format_html('<a href="{}">{}</a>', url, _("Decide"))

    def decide_view(self, request: HttpRequest, withdrawal_id: int) -> HttpResponse:
        withdrawal = get_object_or_404(AffiliateWithdrawal, pk=withdrawal_id)
        return payout_decision_view(
            self,
            request,
            withdrawal,
            form=DecisionForm(request.POST or None),
            decide=partial(services.decide_affiliate_withdrawal, withdrawal_id=withdrawal.pk),
            refusal=AffiliateWithdrawalNotAllowed,
            balances=lambda: selectors.affiliate_summary(affiliate=withdrawal.affiliate).balances,
            template="admin/affiliates/affiliatewithdrawal/decide.html",
        )
