"""Staff site: who has two-factor on, how many recovery codes they have left, and the reset for
a lost phone. Codes and their hashes are never shown. Not on the merchant site."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.plugins.otp_totp.models import TOTPDevice

from security import services
from security.models import TwoFactorAccount


@admin.register(TwoFactorAccount)
class TwoFactorAccountAdmin(admin.ModelAdmin):
    list_display = (
        "username",
        "email",
        "is_staff",
        "authenticator",
        "recovery_codes_left",
    )
    list_filter = ("is_staff",)
    search_fields = ("username", "email")
    fields = ("username", "email", "is_staff", "is_superuser", "is_active")
    readonly_fields = fields
    actions = ("reset_two_factor",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        confirmed = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                has_authenticator=Exists(confirmed),
                codes_left=Count("recoverycodedevice__codes"),
            )
        )

    @admin.display(description=_("authenticator"), boolean=True, ordering="has_authenticator")
    def authenticator(self, obj: Any) -> bool:
        return bool(obj.has_authenticator)

    @admin.display(description=_("recovery codes left"), ordering="codes_left")
    def recovery_codes_left(self, obj: Any) -> int:
        return int(obj.codes_left)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list's reset action needs "change"; the detail page is read-only.
        return obj is None and super().has_change_permission(request)

    @admin.action(
        description=_("Reset two-factor authentication (authenticator and recovery codes)"),
        permissions=("change",),
    )
    def reset_two_factor(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        user = request.user
        # Only a superuser may reset a superuser.
        allowed = [
            account
            for account in queryset.order_by("username")
            if user.is_superuser or not account.is_superuser
        ]
        refused = queryset.count() - len(allowed)
        if refused:
            self.message_user(
                request,
                _("Only a superuser can reset a superuser's two-factor authentication."),
                messages.ERROR,
            )
        if not allowed:
            return None
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": _("Reset two-factor authentication?"),
                "accounts": allowed,
                "opts": self.model._meta,
                "action_name": "reset_two_factor",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "security/reset_two_factor_confirm.html", context)
        for account in allowed:
            services.reset_two_factor(user=account, actor=user)
        self.message_user(
            request,
            ngettext(
                "Two-factor authentication reset for %(count)d account.",
                "Two-factor authentication reset for %(count)d accounts.",
                len(allowed),
            )
            % {"count": len(allowed)},
            messages.SUCCESS,
        )
        return None
