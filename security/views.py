"""Two-factor pages: enrol a TOTP authenticator (QR code + secret, then a code) and enter a
code after the password. Both admin sites send users here (``security.middleware``)."""

from base64 import b32encode
from typing import Any
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from security import selectors, services
from security.exceptions import InvalidOTPToken
from security.forms import OTPTokenForm
from security.ratelimit import limit_exceeded, rate_limited_response

MERCHANT_PREFIX = "/merchant/"


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return "/admin/" if request.user.is_staff else MERCHANT_PREFIX


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _site_context(request: HttpRequest, next_url: str) -> dict[str, Any]:
    from merchants.admin import merchant_site

    site = merchant_site if next_url.startswith(MERCHANT_PREFIX) else admin.site
    return {**site.each_context(request), "next": next_url}


@never_cache
@login_required(login_url="/merchant/login/")
def otp_setup(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    user = request.user
    if selectors.has_confirmed_device(user=user):
        # A second authenticator needs the first: without this, a stolen password would be
        # enough to enrol the thief's phone.
        if selectors.is_verified(user=user):
            return redirect(next_url)
        return redirect(_with_next("security:otp_verify", next_url))
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST":
        if limit_exceeded(request, group="otp", rate_setting="RATE_LIMIT_LOGIN"):
            return rate_limited_response(request)
        if form.is_valid():
            try:
                device = services.confirm_totp_enrolment(
                    user=user, token=form.cleaned_data["token"]
                )
            except InvalidOTPToken as exc:
                form.add_error("token", exc.user_message)
            else:
                django_otp.login(request, device)
                return redirect(next_url)
    device = services.start_totp_enrolment(user=user)
    uri = device.config_url
    context = {
        **_site_context(request, next_url),
        "title": _("Set up two-factor authentication"),
        "form": form,
        "qr_svg": segno.make(uri, error="m").svg_inline(scale=4, border=2),
        "secret": b32encode(device.bin_key).decode(),
        "otpauth_uri": uri,
        "required": user.is_staff,
    }
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(request, "security/otp_setup.html", context, status=status)


@never_cache
@login_required(login_url="/merchant/login/")
def otp_verify(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    user = request.user
    if selectors.is_verified(user=user):
        return redirect(next_url)
    if not selectors.has_confirmed_device(user=user):
        return redirect(_with_next("security:otp_setup", next_url))
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST":
        if limit_exceeded(request, group="otp", rate_setting="RATE_LIMIT_LOGIN"):
            return rate_limited_response(request)
        if form.is_valid():
            # match_token goes through django-otp's per-device throttle (growing delays after
            # failures), so codes cannot be guessed at speed.
            device = django_otp.match_token(user, form.cleaned_data["token"])
            if device is None:
                form.add_error("token", InvalidOTPToken.user_message)
            else:
                django_otp.login(request, device)
                return redirect(next_url)
    context = {
        **_site_context(request, next_url),
        "title": _("Two-factor authentication"),
        "form": form,
    }
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(request, "security/otp_verify.html", context, status=status)
