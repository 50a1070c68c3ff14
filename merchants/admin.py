"""Two admin sites: the staff site at /admin/ (everything) and the merchant site at /merchant/,
where a merchant's users see and change only their own store. Every merchant ModelAdmin derives
from ``MerchantScopedAdmin``, whose querysets, foreign-key choices and saves are pinned to the
user's merchant, so no URL reaches another merchant's rows."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import ForeignKey, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from merchants import admin_admission  # noqa: F401  (registers admission and inspection pages)
from merchants import selectors as merchant_selectors
from merchants.models import Merchant, MerchantMembership
from merchants.selectors import merchant_for_user
from orders import privacy as order_privacy
from orders import services as order_services
from orders.forms import ManualDeliveryForm
from orders.models import Order, OrderStatusChange
from risk import selectors as risk_selectors
from shop import selectors as shop_selectors
from shop import services as shop_services
from shop.admin_views import export_keys_response, import_keys_view
from shop.exceptions import CardvaultError
from shop.models import CardKey, Category, ImportBatch, Product
from webhooks import notifications as merchant_notices


class MerchantLoginForm(AdminAuthenticationForm):
    """Merchant users are not platform staff; membership of a merchant is what admits them."""

    def confirm_login_allowed(self, user: Any) -> None:
        if not user.is_active or merchant_for_user(user) is None:
            raise forms.ValidationError(
                _("This account does not belong to a merchant."), code="invalid_login"
            )


class MerchantAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Cardvault merchant centre")
    site_title = gettext_lazy("Merchant centre")
    index_title = gettext_lazy("Your store")
    login_form = MerchantLoginForm
    index_template = "admin/merchants/merchant_index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        merchant = current_merchant(request)
        return merchant is not None

    def get_urls(self) -> list[URLPattern | URLResolver]:
        # Pages that are no single model's: the analytics dashboard and the customer list.
        from merchants.admin_analytics import site_urls

        return [*site_urls(self), *super().get_urls()]


merchant_site = MerchantAdminSite(name="merchant_admin")


def current_merchant(request: HttpRequest) -> Merchant | None:
    if not hasattr(request, "_cardvault_merchant"):
        request._cardvault_merchant = merchant_for_user(request.user)  # type: ignore[attr-defined]
    return request._cardvault_merchant  # type: ignore[attr-defined]


class KeepCountersMixin:
    """For a ModelAdmin of a model with counters that other transactions move by conditional
    updates (``F(...) + n``: a coupon's uses, a reusable product's units sold): saving a change
    writes every other column, never the counter as it was read when the form loaded, which
    would undo what was counted in between."""

    counter_fields: tuple[str, ...] = ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change or not self.counter_fields:
            super().save_model(request, obj, form, change)  # type: ignore[misc]
            return
        obj.save(
            update_fields=[
                field.name
                for field in obj._meta.concrete_fields
                if not field.primary_key and field.name not in self.counter_fields
            ]
        )


class MerchantScopedAdmin(admin.ModelAdmin):
    merchant_lookup = "merchant"
    can_add = True
    can_change = True
    can_delete = False

    def merchant(self, request: HttpRequest) -> Merchant:
        merchant = current_merchant(request)
        if merchant is None:  # the site's has_permission already refused such requests
            raise PermissionError("no merchant")
        return merchant

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super().get_queryset(request).filter(**{self.merchant_lookup: self.merchant(request)})
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return current_merchant(request) is not None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return current_merchant(request) is not None

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.can_add and current_merchant(request) is not None

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.can_change and current_merchant(request) is not None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.can_delete and current_merchant(request) is not None

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        merchant = self.merchant(request)
        related = db_field.related_model
        if related is Category:
            kwargs["queryset"] = Category.objects.filter(merchant=merchant)
        elif related is Product:
            kwargs["queryset"] = Product.objects.filter(merchant=merchant, variant_of__isnull=True)
        elif related is ImportBatch:
            kwargs["queryset"] = ImportBatch.objects.filter(merchant=merchant)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and hasattr(obj, "merchant_id"):
            obj.merchant = self.merchant(request)
        super().save_model(request, obj, form, change)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        merchant = self.merchant(request)

        # The merchant is known before validation, so model.clean() can check same-store rules.
        class ScopedForm(form):  # type: ignore[misc, valid-type]
            def _post_clean(self) -> None:
                if hasattr(self.instance, "merchant_id") and self.instance.merchant_id is None:
                    self.instance.merchant = merchant
                super()._post_clean()

            def _get_validation_exclusions(self) -> set[str]:
                # "merchant" is not a form field, but it is set: keep per-store unique constraints
                # (product slug, category name) in validation, so a clash is a form error, not a
                # database IntegrityError.
                exclude = super()._get_validation_exclusions()
                exclude.discard("merchant")
                return exclude

        return ScopedForm


@admin.register(Merchant, site=merchant_site)
class StoreSettingsAdmin(MerchantScopedAdmin):
    merchant_lookup = "pk"
    can_add = False
    fields = ("name", "announcement", "contact")
    readonly_fields = ()
    list_display = ("name", "slug", "status")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Merchant]:
        return Merchant.objects.filter(pk=self.merchant(request).pk)


@admin.register(Category, site=merchant_site)
class MerchantCategoryAdmin(MerchantScopedAdmin):
    list_display = ("name", "sort_order")
    fields = ("name", "sort_order")
    can_delete = True


@admin.register(Product, site=merchant_site)
class MerchantProductAdmin(KeepCountersMixin, MerchantScopedAdmin):
    counter_fields = ("reusable_sold",)  # raised by fulfilment
    list_display = (
        "display_title",
        "price",
        "currency",
        "delivery_mode",
        "is_active",
        "review_status",
        "review_reason",
        "stock",
    )
    list_filter = ("review_status", "is_active", "delivery_mode")
    search_fields = ("title", "slug")
    prepopulated_fields = {"slug": ("title",)}
    fields = (
        "title",
        "slug",
        "variant_of",
        "variant_label",
        "category",
        "description",
        "how_to_use",
        ("price", "currency"),
        "is_active",
        ("min_quantity", "max_quantity"),
        "delivery_mode",
        "reusable_cap",
        "low_stock_threshold",
        "manual_fields",
        "sort_order",
    )
    # Staff's screening outcome, shown to the merchant and never editable by them.
    review_fields = ("review_status", "review_reason", "reviewed_at")
    readonly_fields = review_fields
    change_form_template = "admin/shop/product_change_form.html"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        if obj is None:  # nothing screened yet on the add page
            return fields
        return (*fields, self.review_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return shop_selectors.with_stock(super().get_queryset(request))

    @admin.display(description=gettext_lazy("review reason"))
    def review_reason(self, obj: Product) -> str:
        return merchant_selectors.product_review_reason(obj) or "-"

    def get_list_display(self, request: HttpRequest) -> Any:
        # The list's review reasons share one read of the prohibited terms per page, not one
        # per held product; a closure, as the admin instance is shared between requests.
        terms = shop_selectors.active_prohibited_terms()

        @admin.display(description=gettext_lazy("review reason"))
        def review_reason(obj: Product) -> str:
            return merchant_selectors.product_review_reason(obj, terms=terms) or "-"

        return tuple(
            review_reason if name == "review_reason" else name
            for name in super().get_list_display(request)
        )

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        # Prohibited-term screening: a hit holds the product for staff review, unlisted.
        was_held = change and obj.review_status == Product.ReviewStatus.HELD
        shop_services.screen_product(product=obj)
        super().save_model(request, obj, form, change)
        if obj.review_status == Product.ReviewStatus.HELD and not was_held:
            merchant_notices.queue_product_review_notice(product=obj)
        if obj.review_status != Product.ReviewStatus.PUBLISHED:
            self.message_user(
                request,
                _("This product is held for review by the platform's staff; buyers cannot see it."),
                messages.WARNING,
            )

    @admin.display(description=gettext_lazy("free stock"))
    def stock(self, obj: Product) -> str:
        left = shop_selectors.stock_left(obj)
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
        product = self.get_queryset(request).filter(pk=object_id).first()
        if product is None:
            return redirect(reverse(f"{self.admin_site.name}:shop_product_changelist"))
        return import_keys_view(self, request, product)


@admin.register(CardKey, site=merchant_site)
class MerchantCardKeyAdmin(MerchantScopedAdmin):
    """Stock rows: status and provenance only. No plaintext, ciphertext or fingerprint."""

    can_add = False
    can_change = False
    list_display = ("id", "product", "status", "batch", "created_at", "sold_at")
    list_filter = (
        "status",
        ("product", admin.RelatedOnlyFieldListFilter),
        ("batch", admin.RelatedOnlyFieldListFilter),
    )
    fields = ("product", "status", "batch", "created_at", "sold_at")
    readonly_fields = fields
    actions = ["void_selected"]
    list_select_related = ("product", "batch")

    @admin.action(description=gettext_lazy("Void selected unsold keys"))
    def void_selected(self, request: HttpRequest, queryset: QuerySet[CardKey]) -> None:
        count = shop_services.void_keys(
            merchant_id=self.merchant(request).pk, key_ids=queryset.values_list("id", flat=True)
        )
        self.message_user(request, _("%(n)d keys voided.") % {"n": count}, messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Actions need change permission on the changelist; rows themselves stay read-only.
        return obj is None and current_merchant(request) is not None


@admin.register(ImportBatch, site=merchant_site)
class MerchantImportBatchAdmin(MerchantScopedAdmin):
    can_add = False
    can_change = False
    list_display = (
        "id",
        "product",
        "source",
        "file_name",
        "imported_count",
        "duplicate_count",
        "rejected_count",
        "created_by",
        "created_at",
    )
    fields = (*list_display[1:], "rejected_lines")
    readonly_fields = fields
    actions = ["export_unsold", "void_unsold"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and current_merchant(request) is not None

    @admin.action(description=gettext_lazy("Export unsold keys of selected batches (CSV)"))
    def export_unsold(self, request: HttpRequest, queryset: QuerySet[ImportBatch]) -> HttpResponse:
        merchant = self.merchant(request)
        rows: list[tuple[int, str]] = []
        for batch in queryset:
            rows.extend(shop_selectors.export_unsold_keys(merchant=merchant, batch=batch))
        return export_keys_response(rows, file_name=f"{merchant.slug}-unsold-keys.csv")

    @admin.action(description=gettext_lazy("Void unsold keys of selected batches"))
    def void_unsold(self, request: HttpRequest, queryset: QuerySet[ImportBatch]) -> None:
        merchant = self.merchant(request)
        ids = CardKey.objects.filter(batch__in=queryset, merchant=merchant).values_list(
            "id", flat=True
        )
        count = shop_services.void_keys(merchant_id=merchant.pk, key_ids=ids)
        self.message_user(request, _("%(n)d keys voided.") % {"n": count}, messages.SUCCESS)


class StatusChangeInline(admin.TabularInline):
    model = OrderStatusChange
    fields = ("created_at", "from_status", "to_status", "source", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order, site=merchant_site)
class MerchantOrderAdmin(MerchantScopedAdmin):
    can_add = False
    can_change = False
    list_display = (
        "number",
        "buyer_email",
        "product",
        "quantity",
        "amount",
        "currency",
        "status",
        "created_at",
    )
    list_filter = ("status",)
    # Exact email only: a substring search would spell out the masked addresses letter by letter.
    search_fields = ("number", "=email")
    fields = (
        "number",
        "product",
        "quantity",
        "unit_price",
        "discount",
        "coupon",
        "amount",
        "currency",
        "status",
        "buyer_email",
        "manual_inputs",
        "gateway",
        "created_at",
        "paid_at",
        "delivered_at",
        "keys_first_viewed_at",
        "deliver_link",
        "risk_note",
    )
    readonly_fields = fields
    inlines = [StatusChangeInline]
    list_select_related = ("product",)
    actions = ["retry_delivery"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and current_merchant(request) is not None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return order_privacy.with_open_dispute_flag(super().get_queryset(request))

    @admin.display(description=gettext_lazy("buyer email"))
    def buyer_email(self, obj: Order) -> str:
        """Masked, unless the merchant needs it for an open dispute on this order."""
        if obj.anonymised_at is not None:
            return "—"
        if getattr(obj, "has_open_dispute", False):
            return obj.email
        return order_privacy.mask_email(obj.email)

    @admin.display(description=gettext_lazy("manual delivery"))
    def deliver_link(self, obj: Order) -> str:
        if (
            obj.status == Order.Status.PAID
            and obj.product.delivery_mode == Product.DeliveryMode.MANUAL
        ):
            url = reverse(f"{self.admin_site.name}:orders_order_deliver", args=[obj.pk])
            return format_html('<a class="button" href="{}">{}</a>', url, _("Deliver now"))
        return "—"

    @admin.display(description=gettext_lazy("risk checks"))
    def risk_note(self, obj: Order) -> str:
        return risk_selectors.merchant_note(order=obj)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/deliver/",
                self.admin_site.admin_view(self.deliver_view),
                name="orders_order_deliver",
            ),
            *super().get_urls(),
        ]

    def deliver_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        order = self.get_queryset(request).filter(pk=object_id).first()
        if order is None:
            return redirect(reverse(f"{self.admin_site.name}:orders_order_changelist"))
        form = ManualDeliveryForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order_services.deliver_manually(
                    order=order,
                    content=form.cleaned_data["content"],
                    actor=request.user,  # type: ignore[arg-type]
                )
            except CardvaultError as exc:
                form.add_error(None, exc.user_message)
            else:
                self.message_user(request, _("Delivered; the buyer has been notified."))
                return redirect(
                    reverse(f"{self.admin_site.name}:orders_order_change", args=[order.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": order,
            "title": _("Deliver order %(number)s") % {"number": order.number},
            "form": form,
            "order": order,
        }
        return TemplateResponse(request, "admin/orders/deliver.html", context)

    @admin.action(description=gettext_lazy("Retry delivery of selected out-of-stock orders"))
    def retry_delivery(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        delivered = 0
        for order in queryset.filter(status=Order.Status.UNFULFILLED):
            try:
                order_services.retry_fulfilment(order_id=order.pk, actor=request.user)  # type: ignore[arg-type]
            except CardvaultError as exc:
                self.message_user(request, f"{order.number}: {exc.user_message}", messages.WARNING)
            else:
                delivered += 1
        self.message_user(request, _("%(n)d orders delivered.") % {"n": delivered})


# --- staff site registrations of merchant models ------------------------------------------------
class MembershipInline(admin.TabularInline):
    model = MerchantMembership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "status", "owner", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]
    autocomplete_fields = ("owner",)


User = get_user_model()
if not admin.site.is_registered(User):
    admin.site.register(User, UserAdmin)
