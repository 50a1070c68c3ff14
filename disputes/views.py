"""The buyer's dispute pages, opened by the order page's token (no account). They show the
dispute and its conversation, never a key: the order page is where keys are shown."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from disputes import evidence, selectors, services
from disputes.exceptions import DisputeError, InvalidDisputeInput, user_text
from disputes.forms import MessageForm, OpenDisputeForm, add_service_errors
from disputes.models import Dispute, Role
from orders import selectors as order_selectors
from orders.models import Order
from security.ratelimit import rate_limit


def _order_or_404(token: str) -> Order:
    order = order_selectors.get_order_by_token(token=token)
    if order is None:
        raise Http404
    return order


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit(group="dispute", rate_setting="RATE_LIMIT_DISPUTE")
def start(request: HttpRequest, token: str) -> HttpResponse:
    """Report a problem with an order, or see the reports made before."""
    order = _order_or_404(token)
    disputes = selectors.disputes_for_order(order=order)
    current = next((d for d in disputes if d.status in selectors.OPEN_STATES), None)
    refusal = ""
    if current is None:
        try:
            services.check_can_open(order=order)
        except DisputeError as exc:
            refusal = user_text(exc)
    form = None
    if not refusal and current is None:
        form = OpenDisputeForm(
            request.POST or None,
            request.FILES or None,
            key_count=selectors.delivery_count(order=order),
        )
        if request.method == "POST" and form.is_valid():
            try:
                dispute = services.open_dispute(
                    order_id=order.pk,
                    reason=form.cleaned_data["reason"],
                    message=form.cleaned_data["message"],
                    key_index=form.cleaned_data["key_index"],
                    screenshot=form.cleaned_data["screenshot"],
                )
            except InvalidDisputeInput as exc:
                add_service_errors(form, exc.errors)
            except DisputeError as exc:
                refusal = user_text(exc)
                form = None
            else:
                messages.success(
                    request, _("Your report was sent to the store. We email you when it answers.")
                )
                return redirect("disputes:detail", token=token, dispute_id=dispute.pk)
    status = 400 if request.method == "POST" else 200
    response = render(
        request,
        "disputes/start.html",
        {
            "order": order,
            "token": token,
            "form": form,
            "refusal": refusal,
            "current": current,
            "disputes": disputes,
            "window_closes_at": selectors.window_closes_at(order),
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


def _dispute_or_404(order: Order, dispute_id: int) -> Dispute:
    dispute = selectors.get_dispute_for_order(order=order, dispute_id=dispute_id)
    if dispute is None:
        raise Http404
    return dispute


@never_cache
def detail(request: HttpRequest, token: str, dispute_id: int) -> HttpResponse:
    order = _order_or_404(token)
    dispute = _dispute_or_404(order, dispute_id)
    return _render_detail(request, token, dispute, MessageForm())


def _render_detail(
    request: HttpRequest, token: str, dispute: Dispute, form: MessageForm, status: int = 200
) -> HttpResponse:
    response = render(
        request,
        "disputes/detail.html",
        {
            "order": dispute.order,
            "token": token,
            "dispute": dispute,
            "conversation": list(dispute.messages.all()),
            "events": dispute.buyer_events,  # type: ignore[attr-defined]
            "replacement_index": selectors.replacement_index(dispute=dispute)
            if dispute.resolution == Dispute.Resolution.REPLACED
            else None,
            "form": None if dispute.is_resolved else form,
            "refund": selectors.decision_refund(dispute=dispute) if dispute.is_resolved else None,
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@rate_limit(group="dispute", rate_setting="RATE_LIMIT_DISPUTE")
def post_message(request: HttpRequest, token: str, dispute_id: int) -> HttpResponse:
    order = _order_or_404(token)
    dispute = _dispute_or_404(order, dispute_id)
    form = MessageForm(request.POST)
    if form.is_valid():
        try:
            services.post_message(
                dispute_id=dispute.pk, role=Role.BUYER, text=form.cleaned_data["text"]
            )
        except InvalidDisputeInput as exc:
            add_service_errors(form, exc.errors)
        except DisputeError as exc:
            messages.error(request, user_text(exc))
            return redirect("disputes:detail", token=token, dispute_id=dispute.pk)
        else:
            messages.success(request, _("Message sent."))
            return redirect("disputes:detail", token=token, dispute_id=dispute.pk)
    return _render_detail(request, token, dispute, form, status=400)


@never_cache
def screenshot(request: HttpRequest, token: str, dispute_id: int) -> FileResponse:
    order = _order_or_404(token)
    dispute = _dispute_or_404(order, dispute_id)
    return screenshot_response(dispute)


def screenshot_response(dispute: Dispute) -> FileResponse:
    """Stream a dispute's screenshot to a party the caller has already let in. Served with the
    type its content was verified as, never sniffed, sandboxed, never cached by anyone."""
    if not dispute.screenshot or not dispute.screenshot_content_type:
        raise Http404
    try:
        handle = evidence.open_screenshot(dispute.screenshot.name)
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(handle, content_type=dispute.screenshot_content_type)
    extension = dispute.screenshot.name.rsplit(".", 1)[-1]
    response["Content-Disposition"] = f'inline; filename="dispute-{dispute.pk}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
