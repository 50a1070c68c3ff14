"""Affiliate pages (sign up, dashboard, withdraw) and a reseller's listing page. Thin: fetch,
validate, call one service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from affiliates import selectors, services
from affiliates.exceptions import AffiliateError
from affiliates.forms import ResaleBuyForm, SignUpForm, WithdrawalForm
from orders.gateways.registry import available_gateways
from risk import captcha, device
from security.ratelimit import rate_limit
from shop import selectors as shop_selectors
from shop.client_ip import client_ip, is_mobile
from shop.views import captcha_answered, place_checkout


class AffiliateLoginView(LoginView):
    template_name = "affiliates/login.html"
    next_page = "affiliates:dashboard"


@rate_limit(group="login", rate_setting="RATE_LIMIT_LOGIN")
def signup(request: HttpRequest) -> HttpResponse:
    if selectors.affiliate_for_user(request.user) is not None:
        return redirect("affiliates:dashboard")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            affiliate = services.sign_up_affiliate(
                email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
        except AffiliateError as exc:
            form.add_error(None, str(exc.user_message))
        else:
            login(request, affiliate.user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("affiliates:dashboard")
    return render(request, "affiliates/signup.html", {"form": form})


@login_required(login_url="affiliates:login")
def dashboard(request: HttpRequest) -> HttpResponse:
    affiliate = selectors.affiliate_for_user(request.user)
    if affiliate is None:
        return render(request, "affiliates/join.html", {})
    return render(
        request,
        "affiliates/dashboard.html",
        {
            "affiliate": affiliate,
            "summary": selectors.affiliate_summary(affiliate=affiliate),
            "referrals": selectors.affiliate_referrals(affiliate=affiliate)[:50],
            "withdrawals": affiliate.withdrawals.all()[:20],
            "programmes": selectors.enabled_programmes()[:100],
            "form": WithdrawalForm(),
        },
    )


@require_POST
@login_required(login_url="affiliates:login")
def join(request: HttpRequest) -> HttpResponse:
    """A signed-in user (a buyer, a merchant's staff) becomes an affiliate too."""
    services.join_as_affiliate(user=request.user)  # type: ignore[arg-type]
    return redirect("affiliates:dashboard")


@require_POST
@login_required(login_url="affiliates:login")
def withdraw(request: HttpRequest) -> HttpResponse:
    affiliate = selectors.affiliate_for_user(request.user)
    if affiliate is None:
        raise Http404
    form = WithdrawalForm(request.POST)
    if form.is_valid():
        try:
            services.request_affiliate_withdrawal(
                affiliate=affiliate,
                amount=form.cleaned_data["amount"],
                currency=form.cleaned_data["currency"],
                payout_details=form.cleaned_data["payout_details"],
            )
        except AffiliateError as exc:
            messages.error(request, str(exc.user_message))
        else:
            messages.success(request, _("Withdrawal requested."))
    else:
        messages.error(request, _("Check the withdrawal form."))
    return redirect("affiliates:dashboard")


@rate_limit(group="checkout", rate_setting="RATE_LIMIT_CHECKOUT")
def resale_product(request: HttpRequest, slug: str, listing_id: int) -> HttpResponse:
    merchant = shop_selectors.get_active_merchant(slug=slug)
    if merchant is None:
        raise Http404
    listing = selectors.get_sellable_listing(merchant=merchant, listing_id=listing_id)
    if listing is None:
        raise Http404
    product = listing.offer.product
    gateways = [
        (gateway.name, gateway.label)
        for gateway in available_gateways(amount=listing.price, currency=product.currency)
    ]
    form = ResaleBuyForm(request.POST or None, gateways=gateways)
    captcha_passed = False
    if request.method == "POST" and form.is_valid():
        captcha_passed = captcha_answered(request, form)
    if request.method == "POST" and form.is_valid():
        placed = place_checkout(
            request,
            form,
            lambda: services.checkout_resale(
                listing=listing,
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                query_password=form.cleaned_data["query_password"],
                gateway_name=form.cleaned_data["gateway"],
                base_url=request.build_absolute_uri("/"),
                buyer_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
                language=get_language() or "en",
                mobile=is_mobile(request),
                device_id=device.device_id(request),
                captcha_passed=captcha_passed,
            ),
        )
        if placed is not None:
            return placed
    response = render(
        request,
        "affiliates/resale_product.html",
        {
            "merchant": merchant,
            "listing": listing,
            "product": product,
            "stock": shop_selectors.stock_left(product),
            "form": form,
            "captcha": captcha.current_challenge_id(request.session),
        },
        status=400 if request.method == "POST" else 200,
    )
    return device.remember_device(request, response)
