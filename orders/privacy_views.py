"""The buyer's privacy pages: the data download and the erasure request behind the order link, and
the privacy policy. Thin: fetch by token, call ``orders.privacy``, render or redirect."""

import json

from django.conf import settings
from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from orders import privacy, selectors, services
from shop.client_ip import client_ip
from shop.exceptions import CardvaultError


@never_cache
@require_GET
def order_data_download(request: HttpRequest, token: str) -> HttpResponse:
    order = selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    if order.status in privacy.KEYS_SHOWN_STATUSES:
        # The file holds the keys, so it counts as a view of them like the .txt download.
        services.record_keys_viewed(
            order=order, ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")
        )
        order.refresh_from_db()
    body = json.dumps(
        privacy.buyer_data_export(order=order), cls=DjangoJSONEncoder, ensure_ascii=False, indent=2
    )
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-{order.number}-data.json"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def order_anonymise(request: HttpRequest, token: str) -> HttpResponse:
    order = selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    if request.POST.get("confirm") != "yes":
        messages.error(
            request, _("Tick the box to confirm that your personal data should be erased.")
        )
        return redirect("orders:detail", token=token)
    try:
        privacy.request_anonymisation(order=order)
    except CardvaultError as exc:
        messages.error(request, exc.user_message)
    else:
        messages.success(
            request,
            _(
                "Your personal data on this order has been erased. The order stays available "
                "through this link."
            ),
        )
    return redirect("orders:detail", token=token)


def privacy_policy(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "orders/privacy.html",
        {
            "retention_days": privacy.retention_days(),
            "dispute_window_days": privacy.dispute_window_days(),
            "order_ttl_minutes": settings.ORDER_TTL_MINUTES,
        },
    )
