"""Merchant centre (/merchant/) pages that are not one model's: the analytics dashboard and the
customer list (CRM), each with CSV exports. Mounted by ``MerchantAdminSite.get_urls`` and wrapped
in ``admin_view``, so only a merchant's signed-in users reach them; every read is scoped to
``current_merchant(request)``, never to an id from the request."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from merchants import analytics, customers, services
from merchants.models import CustomerNote, Merchant

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet reads a cell starting with one of these as a formula (CSV injection): a product
# title, tag, note or e-mail such as ``=HYPERLINK(…)`` would run when the merchant opens the file.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_cell(value: Any) -> str:
    """``value`` as a CSV cell that no spreadsheet runs: text starting with ``= + - @``, a tab or
    a carriage return gets a leading ``'`` (OWASP's advice); plain numbers such as ``-5.00`` stay
    as they are."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return f"'{text}"
    return text


def csv_response(rows: Iterable[Iterable[Any]], *, filename: str) -> StreamingHttpResponse:
    """Rows streamed as a CSV attachment, every cell through ``csv_cell``."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow([csv_cell(value) for value in row]) for row in rows),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CustomerNoteForm(forms.Form):
    tags = forms.CharField(
        label=gettext_lazy("Tags"),
        required=False,
        max_length=400,
        help_text=gettext_lazy("Separated by commas, e.g. vip, reseller."),
    )
    note = forms.CharField(
        label=gettext_lazy("Private note"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("Only your store's users see it; the buyer never does."),
    )


def _merchant(request: HttpRequest) -> Merchant:
    from merchants.admin import current_merchant

    merchant = current_merchant(request)
    if merchant is None:  # admin_view refused such requests already
        raise Http404
    return merchant


def _days(request: HttpRequest) -> int:
    try:
        return int(request.GET.get("days", analytics.DEFAULT_WINDOW))
    except ValueError:
        return analytics.DEFAULT_WINDOW


def analytics_view(site: AdminSite, request: HttpRequest) -> HttpResponseBase:
    merchant = _merchant(request)
    now = timezone.now()
    days = _days(request)
    export = request.GET.get("export", "")
    if export == "orders":
        span = analytics.window(days=days, now=now)
        rows = analytics.export_orders(merchant=merchant, span=span)
        return csv_response(_with_header(rows), filename=f"{merchant.slug}-orders-{span.days}d.csv")
    board = analytics.dashboard(merchant=merchant, days=days, now=now)
    if export:
        chart_rows = analytics.chart_csv_rows(board=board, chart=export)
        if chart_rows is None:
            raise Http404
        filename = f"{merchant.slug}-{export}-{board.window.days}d.csv"
        return csv_response(chart_rows, filename=filename)
    chart_data = {
        **board.chart_data(),
        "text": {
            "orders": _("Orders"),
            "revenue": _("Revenue"),
            "units": _("Units sold"),
            "funnel": [_("Product views"), _("Orders placed"), _("Orders paid")],
            "days_left": _("Days until sold out"),
        },
    }
    context = {
        **site.each_context(request),
        "title": _("Analytics"),
        "board": board,
        "windows": analytics.WINDOWS,
        "chart_data": chart_data,
        "pace_days": analytics.PACE_DAYS,
        "csv_links": [
            (name, f"?{urlencode([('days', board.window.days), ('export', name)])}")
            for name in ("orders", "daily", "top", "funnel", "rates", "stock")
        ],
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/merchants/analytics.html", context)


def _with_header(rows: Iterable[list[str]]) -> Iterable[list[str]]:
    yield analytics.ORDER_CSV_HEADER
    yield from rows


def customers_view(site: AdminSite, request: HttpRequest) -> HttpResponseBase:
    merchant = _merchant(request)
    if request.GET.get("export") == "csv":
        return csv_response(_customer_csv(merchant), filename=f"{merchant.slug}-customers.csv")
    sort = request.GET.get("sort", "last")
    tag = request.GET.get("tag", "")
    email = request.GET.get("email", "")
    page, rows = customers.customer_page(
        merchant=merchant, page=request.GET.get("page", 1), sort=sort, tag=tag, email=email
    )
    context = {
        **site.each_context(request),
        "title": _("Customers"),
        "page": page,
        "customers": rows,
        "summary": customers.customer_summary(merchant=merchant),
        "sort": sort,
        "tag": tag,
        "email": email,
        "sorts": [
            ("last", _("Last purchase")),
            ("first", _("First purchase")),
            ("orders", _("Orders")),
        ],
        "query": urlencode([("sort", sort), ("tag", tag), ("email", email)]),
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/merchants/customers.html", context)


def _customer_csv(merchant: Merchant) -> Iterable[list[Any]]:
    codes = customers.CURRENCY_CODES
    yield [
        "customer",
        "orders",
        *[f"spend_{code}" for code in codes],
        "first_purchase",
        "last_purchase",
        "tags",
        "note",
    ]
    for row in customers.export_customers(merchant=merchant):
        yield [
            row.email_masked,
            row.orders,
            *[f"{row.spend[code]:.2f}" if code in row.spend else "" for code in codes],
            timezone.localtime(row.first_purchase).isoformat(),
            timezone.localtime(row.last_purchase).isoformat(),
            ",".join(row.tags),
            row.note,
        ]


def customer_note_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    """Tags and note of one customer, named by ``?customer=<key>``: a key that is not one of this
    merchant's customers is a 404."""
    merchant = _merchant(request)
    key = request.GET.get("customer", "")
    customer = customers.customer_by_key(merchant=merchant, key=key)
    if customer is None:
        raise Http404
    initial = {"tags": ", ".join(customer.tags), "note": customer.note}
    form = CustomerNoteForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.save_customer_note(
            merchant=merchant,
            customer_key=customer.key,
            tags=form.cleaned_data["tags"],
            note=form.cleaned_data["note"],
            actor=request.user,
        )
        messages.success(request, _("Customer note saved."))
        return HttpResponseRedirect(reverse(f"{site.name}:merchants_customers"))
    context = {
        **site.each_context(request),
        "title": _("Customer %(customer)s") % {"customer": customer.email_masked},
        "customer": customer,
        "form": form,
        "opts": CustomerNote._meta,
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/merchants/customer_note.html", context)


def site_urls(site: AdminSite) -> list[URLPattern]:
    def bind(view: Any) -> Any:
        def bound(request: HttpRequest) -> HttpResponseBase:
            return view(site, request)

        return site.admin_view(bound)

    return [
        path("analytics/", bind(analytics_view), name="merchants_analytics"),
        path("customers/", bind(customers_view), name="merchants_customers"),
        path("customers/note/", bind(customer_note_view), name="merchants_customer_note"),
    ]
