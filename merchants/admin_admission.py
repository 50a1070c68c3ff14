"""Staff site (/admin/) pages of merchant admission and inspection: applications with their
decision page and document downloads, and the read-only daily inspection reports. Imported by
``merchants.admin``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from merchants import notifications, services
from merchants.forms import DecisionForm
from merchants.models import (
    ApplicationDocument,
    InspectionReport,
    MerchantApplication,
    MerchantInspection,
)
from shop import uploads
from shop.exceptions import CardvaultError

KINDS = {kind.name: kind for kind in services.DOCUMENT_KINDS}


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MerchantApplication)
class MerchantApplicationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("store_name", "slug", "applicant", "status", "created_at", "decide_link")
    list_filter = ("status",)
    search_fields = ("store_name", "slug", "user__username", "user__email")
    list_select_related = ("user",)
    fields = (
        "store_name",
        "slug",
        "applicant",
        "contact",
        "goods",
        "language",
        "document_links",
        "status",
        "reason",
        "merchant",
        "decided_by",
        "decided_at",
        "applicant_notified_at",
        "created_at",
        "decide_link",
    )
    readonly_fields = fields

    @admin.display(description=gettext_lazy("applicant"))
    def applicant(self, obj: MerchantApplication) -> str:
        return f"{obj.user.username} <{obj.user.email}>"

    @admin.display(description=gettext_lazy("documents"))
    def document_links(self, obj: MerchantApplication) -> str:
        documents = list(obj.documents.all())
        if not documents:
            return "—"
        return format_html_join(
            mark_safe("<br>"),  # nosec B308, B703
            '<a href="{}">{}</a> ({} · {} KB)',
            (
                (
                    reverse("admin:merchants_application_document", args=[obj.pk, document.pk]),
                    document.original_name or _("document"),
                    document.kind.upper(),
                    max(1, document.size // 1024),
                )
                for document in documents
            ),
        )

    @admin.display(description=gettext_lazy("decision"))
    def decide_link(self, obj: MerchantApplication) -> str:
        if obj.status != MerchantApplication.Status.SUBMITTED:
            return obj.get_status_display()
        url = reverse("admin:merchants_application_decide", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Approve or reject"))

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="merchants_application_decide",
            ),
            path(
                "<int:object_id>/documents/<int:document_id>/",
                self.admin_site.admin_view(self.document_view),
                name="merchants_application_document",
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not request.user.has_perm("merchants.change_merchantapplication"):
            raise PermissionDenied
        application = get_object_or_404(
            MerchantApplication.objects.select_related("user"), pk=object_id
        )
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                if form.cleaned_data["decision"] == "approve":
                    services.approve_application(application_id=application.pk, actor=request.user)
                    note = _("Approved: the store is open and the applicant has been e-mailed.")
                else:
                    services.reject_application(
                        application_id=application.pk,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                    )
                    note = _("Rejected: the applicant has been e-mailed the reason.")
            except CardvaultError as exc:
                form.add_error(None, str(exc.user_message))
            else:
                self.message_user(request, note, messages.SUCCESS)
                return redirect(reverse("admin:merchants_merchantapplication_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": application,
            "application": application,
            "title": _("Decide on %(store)s") % {"store": application.store_name},
            "form": form,
        }
        return TemplateResponse(request, "admin/merchants/decide.html", context)

    def document_view(self, request: HttpRequest, object_id: int, document_id: int) -> HttpResponse:
        """Staff only (the admin site's login and ``is_staff`` check, plus the view permission);
        always a download with the type proven at upload, never rendered by the browser."""
        if not request.user.is_staff or not self.has_view_permission(request):
            raise PermissionDenied
        document = get_object_or_404(ApplicationDocument, pk=document_id, application_id=object_id)
        kind = KINDS.get(document.kind)
        if kind is None:
            raise Http404
        try:
            with default_storage.open(document.file.name, "rb") as stream:
                content = stream.read()
        except FileNotFoundError:
            raise Http404 from None
        response = uploads.upload_response(
            content, kind=kind, file_name=f"application-{object_id}-document-{document.pk}"
        )
        response["Content-Disposition"] = response["Content-Disposition"].replace(
            "inline;", "attachment;", 1
        )
        return response


class MerchantInspectionInline(admin.TabularInline):
    model = MerchantInspection
    fields = ("merchant", "level", "finding_list", "metrics", "suspended", "merchant_notified_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-level", "merchant__name")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("findings"))
    def finding_list(self, obj: MerchantInspection) -> str:
        if not obj.findings:
            return "—"
        return format_html_join(
            mark_safe("<br>"),  # nosec B308, B703
            "{}",
            ((notifications.describe(finding),) for finding in obj.findings),
        )


@admin.register(InspectionReport)
class InspectionReportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "day",
        "merchants",
        "warnings",
        "suspensions",
        "finished_at",
        "staff_alerted_at",
    )
    fields = ("day", "started_at", "finished_at", "staff_alerted_at")
    readonly_fields = fields
    inlines = [MerchantInspectionInline]
    date_hierarchy = "day"

    @admin.display(description=gettext_lazy("merchants inspected"))
    def merchants(self, obj: InspectionReport) -> int:
        return obj.inspections.count()

    @admin.display(description=gettext_lazy("needing attention"))
    def warnings(self, obj: InspectionReport) -> int:
        return obj.inspections.exclude(level=MerchantInspection.Level.OK).count()

    @admin.display(description=gettext_lazy("suspended"))
    def suspensions(self, obj: InspectionReport) -> int:
        return obj.inspections.filter(suspended=True).count()


@admin.register(MerchantInspection)
class MerchantInspectionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("report", "merchant", "level", "suspended", "created_at")
    list_filter = ("level", "suspended")
    search_fields = ("merchant__name", "merchant__slug")
    list_select_related = ("report", "merchant")
    fields = ("report", "merchant", "level", "findings", "metrics", "suspended", "created_at")
    readonly_fields = fields
