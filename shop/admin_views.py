"""Admin pages shared by the staff and merchant sites: importing and exporting keys."""

import csv
from collections.abc import Sequence

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from shop import selectors, services
from shop.admin_forms import ImportKeysForm
from shop.exceptions import CardvaultError
from shop.models import CardKey, ImportBatch, Product


def import_keys_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, product: Product
) -> HttpResponse:
    form = ImportKeysForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data.get("file")
        try:
            if upload is not None:
                lines = services.read_key_lines(upload.read(), file_name=upload.name)
                source, file_name = ImportBatch.Source.UPLOAD, upload.name
            else:
                lines = services.read_key_lines(form.cleaned_data["keys"])
                source, file_name = ImportBatch.Source.PASTE, ""
            result = services.import_keys(
                product=product,
                lines=lines,
                source=source,
                file_name=file_name,
                created_by=request.user,  # type: ignore[arg-type]
            )
        except CardvaultError as exc:
            form.add_error(None, f"{exc.user_message} ({exc})")
        else:
            message = _(
                "Imported %(imported)d, skipped %(duplicates)d duplicates, rejected %(rejected)d."
            ) % {
                "imported": result.imported,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
            }
            if result.rejected_lines:
                shown = ", ".join(str(n) for n in result.rejected_lines[:50])
                more = "…" if len(result.rejected_lines) > 50 else ""
                message += " " + _("Over-long lines: %(lines)s") % {"lines": shown + more}
            level = messages.WARNING if result.rejected or result.duplicates else messages.SUCCESS
            model_admin.message_user(request, message, level)
            info = model_admin.opts.app_label, model_admin.opts.model_name
            return redirect(
                reverse(
                    f"{model_admin.admin_site.name}:{info[0]}_{info[1]}_change", args=[product.pk]
                )
            )
    stock = selectors.stock_summary(product=product)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": product,
        "title": _("Import keys into %(product)s") % {"product": product},
        "form": form,
        "stock": stock,
        # Translated status labels; ``|lower`` in the template keeps English as the raw values.
        "stock_rows": [(CardKey.Status(status).label, n) for status, n in stock.items()],
    }
    # So "admin:…" URLs in the template resolve to the site serving this view (merchant or staff).
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/shop/import_keys.html", context)


def export_keys_response(rows: Sequence[tuple[int, str]], *, file_name: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response["Cache-Control"] = "no-store"
    writer = csv.writer(response)
    writer.writerow(["id", "key"])
    writer.writerows(rows)
    return response
