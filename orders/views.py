import segno
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from orders import privacy, selectors, services, throttle
from orders.exceptions import GatewayUnavailable
from orders.forms import OrderLookupForm, PayForm
from orders.gateways.base import CallbackRequest
from orders.gateways.registry import available_gateways
from orders.gateways.sandbox import SandboxGateway
from orders.models import Order
from security.ratelimit import rate_limit
from shop.client_ip import client_ip, is_mobile
from shop.exceptions import CardvaultError

_REFUNDABLE = frozenset(
    {
        Order.Status.PAID,
        Order.Status.UNFULFILLED,
        Order.Status.DELIVERED,
        Order.Status.REFUNDED,
        Order.Status.PARTIALLY_REFUNDED,
    }
)
SESSION_GRANTS = "order_lookup_grants"
MAX_GRANTS = 20
REFRESH_SECONDS: dict[str, int] = {Order.Status.PENDING: 3, Order.Status.PAID: 10}


def _gateway_choices(order: Order) -> list[tuple[str, str]]:
    return [
        (gateway.name, gateway.label)
        for gateway in available_gateways(amount=order.amount, currency=order.currency)
    ]


def _render_order(request: HttpRequest, order: Order, *, token: str | None) -> HttpResponse:
    keys = []
    if order.status in (Order.Status.DELIVERED, Order.Status.PARTIALLY_REFUNDED):
        keys = selectors.delivered_keys(order=order)
        services.record_keys_viewed(
            order=order,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
    pay_form = None
    if order.status == Order.Status.PENDING and token is not None:
        pay_form = PayForm(gateways=_gateway_choices(order))
    payment = selectors.latest_payment(order=order)
    refunds = selectors.refunds_for_order(order=order) if order.status in _REFUNDABLE else []
    response = render(
        request,
        "orders/detail.html",
        {
            "order": order,
            "keys": keys,
            "token": token,
            "pay_form": pay_form,
            "refresh_seconds": REFRESH_SECONDS.get(order.status),
            "payment": payment,
            "payment_label": selectors.gateway_label(payment.gateway)
            if payment is not None
            else "",
            "refunds": refunds,
            "dispute_window_days": privacy.dispute_window_days(),
            "can_request_anonymisation": order.anonymised_at is None
            and order.status in privacy.CLOSED_STATUSES,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@never_cache
def order_detail(request: HttpRequest, token: str) -> HttpResponse:
    order = selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    return _render_order(request, order, token=token)


@never_cache
def order_keys_download(request: HttpRequest, token: str) -> HttpResponse:
    order = selectors.get_order_by_token(token=token)
    if order is None or order.status not in (
        Order.Status.DELIVERED,
        Order.Status.PARTIALLY_REFUNDED,
    ):
        raise Http404
    keys = selectors.delivered_keys(order=order)
    services.record_keys_viewed(
        order=order, ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")
    )
    body = "\n".join(key.text for key in keys) + "\n"
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-{order.number}.txt"'
    response["Cache-Control"] = "no-store"
    return response


@never_cache
def hosted_pay(request: HttpRequest, token: str, reference: str) -> HttpResponse:
    """Our own pay page for gateways the buyer pays by scanning or sending to an address
    (WeChat Native, USDT): QR code and exact amount, refreshing until the order is paid."""
    order = selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    payment = order.payments.filter(reference=reference).first()
    if payment is None:
        raise Http404
    if order.status != Order.Status.PENDING or payment.status != payment.Status.CREATED:
        return redirect("orders:detail", token=token)
    data = payment.gateway_data
    qr_svg = ""
    if data.get("qr"):
        qr_svg = segno.make(data["qr"], error="m").svg_inline(scale=5, border=2)
    templates = [f"orders/pay/{payment.gateway}.html", "orders/pay/generic.html"]
    response = render(
        request,
        templates,
        {"order": order, "payment": payment, "data": data, "qr_svg": qr_svg, "token": token},
    )
    response["Refresh"] = "3"
    return response


@require_POST
def order_pay(request: HttpRequest, token: str) -> HttpResponse:
    order = selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    form = PayForm(request.POST, gateways=_gateway_choices(order))
    if form.is_valid():
        try:
            action = services.start_payment(
                order=order,
                gateway_name=form.cleaned_data["gateway"],
                base_url=request.build_absolute_uri("/"),
                mobile=is_mobile(request),
            )
        except CardvaultError as exc:
            from django.contrib import messages

            messages.error(request, exc.user_message)
        else:
            return redirect(action.redirect_url)
    return redirect("orders:detail", token=token)


@never_cache
@rate_limit(group="lookup", rate_setting="RATE_LIMIT_LOOKUP")
def order_lookup(request: HttpRequest) -> HttpResponse:
    form = OrderLookupForm(request.POST or None)
    ip = client_ip(request)
    if request.method == "POST" and form.is_valid():
        if throttle.lookup_blocked(ip):
            form.add_error(None, _("Too many failed lookups. Please wait 15 minutes."))
        else:
            order = selectors.find_order_for_lookup(
                number=form.cleaned_data["number"],
                email=form.cleaned_data["email"],
                query_password=form.cleaned_data["query_password"],
            )
            if order is None:
                throttle.record_lookup_failure(ip)
                form.add_error(
                    None,
                    _("No order matches that number, email and query password."),
                )
            else:
                grants = [g for g in request.session.get(SESSION_GRANTS, []) if g != order.pk]
                request.session[SESSION_GRANTS] = [order.pk, *grants][:MAX_GRANTS]
                return redirect("orders:lookup_detail", number=order.number)
    status = 400 if request.method == "POST" else 200
    return render(request, "orders/lookup.html", {"form": form}, status=status)


@never_cache
def order_lookup_detail(request: HttpRequest, number: str) -> HttpResponse:
    """An order found by number + email (+ password): viewable only from the session that did
    the lookup; the order number alone opens nothing."""
    grants = request.session.get(SESSION_GRANTS, [])
    order = Order.objects.select_related("product", "merchant").filter(number=number).first()
    if order is None or order.pk not in grants:
        return redirect("orders:lookup")
    return _render_order(request, order, token=None)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def payment_callback(request: HttpRequest, gateway: str) -> HttpResponse:
    """Server-to-server notifications from gateways. Deliberately behind no rate limit or
    anything else that fails closed when Redis is down."""
    body = request.body
    form = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = request.POST.dict()
    callback = CallbackRequest(
        method=request.method or "POST",
        body=body,
        headers=dict(request.headers),
        query=request.GET.dict(),
        form=form,
        remote_ip=client_ip(request),
    )
    try:
        reply = services.handle_callback(gateway_name=gateway, request=callback)
    except GatewayUnavailable:
        return HttpResponse("unknown gateway", status=404, content_type="text/plain")
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


@never_cache
def sandbox_pay(request: HttpRequest, reference: str) -> HttpResponse:
    """The sandbox gateway's own pay page: what a buyer sees at a real gateway."""
    gateway = SandboxGateway()
    if not gateway.is_enabled():
        raise Http404
    payment = selectors.get_payment(reference=reference, gateway=gateway.name)
    if payment is None:
        raise Http404
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    answered = None
    if request.method == "POST":
        paid = request.POST.get("outcome") == "paid"
        answered = gateway.simulate_buyer(
            payment=payment,
            paid=paid,
            callback_url=request.build_absolute_uri(
                reverse("orders:callback", args=[gateway.name])
            ),
        )
        if next_url and answered < 500:
            return redirect(next_url)
    return render(
        request,
        "orders/sandbox_pay.html",
        {"payment": payment, "order": payment.order, "answered": answered, "next_url": next_url},
    )
