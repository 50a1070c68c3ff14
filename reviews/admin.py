"""Reviews in both admin sites. Merchant centre: the store's reviews, read-only but for the one
reply. Staff site: every review, with actions to hide abusive ones and show them again."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from merchants.admin import MerchantScopedAdmin, merchant_site
from reviews import services
from reviews.models import Review
from shop.exceptions import CardvaultError

_SHOWN = ("order", "product", "rating", "comment", "created_at", "is_hidden")


@admin.register(Review, site=merchant_site)
class MerchantReviewAdmin(MerchantScopedAdmin):
    can_add = False
    list_display = ("order", "product", "rating", "short_comment", "replied", "is_hidden")
    list_filter = ("rating", "is_hidden")
    list_select_related = ("order", "product")
    fields = (*_SHOWN, "reply", "replied_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None and not obj.reply:
            return (*_SHOWN, "replied_at")  # the reply is the one field left to fill in
        return self.fields

    @admin.display(description=gettext_lazy("comment"))
    def short_comment(self, obj: Review) -> str:
        return obj.comment[:80]

    @admin.display(description=gettext_lazy("replied"), boolean=True)
    def replied(self, obj: Review) -> bool:
        return bool(obj.reply)

    def save_model(self, request: HttpRequest, obj: Review, form: Any, change: bool) -> None:
        # Never a bare save: the reply goes through the service's once-only update.
        if "reply" not in form.changed_data:
            return
        try:
            services.reply_to_review(
                review=obj,
                reply=form.cleaned_data["reply"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except CardvaultError as exc:
            self.message_user(request, exc.user_message, messages.ERROR)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None


@admin.register(Review)
class StaffReviewAdmin(admin.ModelAdmin):
    list_display = ("order", "merchant", "product", "rating", "short_comment", "is_hidden")
    list_filter = ("is_hidden", "rating")
    search_fields = ("=order__number", "merchant__name", "comment")
    list_select_related = ("order", "merchant", "product")
    fields = (
        "order",
        "merchant",
        "product",
        "rating",
        "comment",
        "reply",
        "replied_at",
        "is_hidden",
        "hidden_at",
        "hidden_by",
        "created_at",
    )
    readonly_fields = fields
    actions = ["hide_selected", "show_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("comment"))
    def short_comment(self, obj: Review) -> str:
        return obj.comment[:80]

    @admin.action(description=gettext_lazy("Hide selected reviews"))
    def hide_selected(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        count = services.set_reviews_hidden(
            review_ids=list(queryset.values_list("pk", flat=True)),
            hidden=True,
            actor=request.user,  # type: ignore[arg-type]
        )
        self.message_user(request, _("%(n)d reviews hidden.") % {"n": count}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Show selected reviews again"))
    def show_selected(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        count = services.set_reviews_hidden(
            review_ids=list(queryset.values_list("pk", flat=True)),
            hidden=False,
            actor=request.user,  # type: ignore[arg-type]
        )
        self.message_user(request, _("%(n)d reviews shown.") % {"n": count}, messages.SUCCESS)
