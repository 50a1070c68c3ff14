"""Two-factor pages: enrol a TOTP authenticator (QR code + secret, then a code), enter a code
(or a recovery code) after the password, and the account page where a user makes new recovery
codes. Both admin sites send users here (``security.middleware``)."""

from base64 import b32encode
from typing import Any
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from security import selectors, services
from security.exceptions import InvalidOTPToken
from security.forms import OTPTokenForm, OTPVerifyForm, RegenerateRecoveryCodesForm
from security.lockout import is_locked_out, lockout_response, register_failure
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


def _show_recovery_codes(request: HttpRequest, next_url: str, codes: list[str]) -> HttpResponse:
    """The one page that ever shows the plain codes (``never_cache`` on every caller)."""
    context = {
        **_site_context(request, next_url),
        "title": _("Your recovery codes"),
        "codes": codes,
        "codes_text": "\n".join(codes) + "\n",
    }
    return TemplateResponse(request, "security/recovery_codes.html", context)


def _warn_if_low(request: HttpRequest, remaining: int) -> None:
    if remaining <= selectors.LOW_RECOVERY_CODES:
        messages.warning(
            request,
            ngettext(
                "You have %(count)d recovery code left. Generate new ones on your two-factor page.",
                "You have %(count)d recovery codes left. Generate new ones on your "
                "two-factor page.",
                remaining,
            )
            % {"count": remaining},
        )


@never_cache
@sensitive_post_parameters("token")
@login_required(login_url="/merchant/login/")
def otp_setup(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    user = request.user
    if selectors.has_confirmed_device(user=user):
        # A second authenticator needs the first: without this, a stolen password would be
        # enough to enrol the thief's phone.
        if selectors.is_verified(user=user):
            return redirect(_with_next("security:account", next_url))
        return redirect(_with_next("security:otp_verify", next_url))
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST":
        if limit_exceeded(request, group="otp", rate_setting="RATE_LIMIT_LOGIN"):
            return rate_limited_response(request)
        if form.is_valid():
            try:
                enrolment = services.confirm_totp_enrolment(
                    user=user, token=form.cleaned_data["token"]
                )
            except InvalidOTPToken as exc:
                form.add_error("token", exc.user_message)
            else:
                django_otp.login(request, enrolment.device)
                return _show_recovery_codes(request, next_url, enrolment.recovery_codes)
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
@sensitive_post_parameters("token")
@login_required(login_url="/merchant/login/")
def otp_verify(request: HttpRequest) -> HttpResponse:
    next_url = _next_url(request)
    user = request.user
    if selectors.is_verified(user=user):
        return redirect(next_url)
    totp_device = selectors.confirmed_totp_device(user=user)
    if totp_device is None:
        return redirect(_with_next("security:otp_setup", next_url))
    form = OTPVerifyForm(request.POST or None)
    if request.method == "POST":
        if limit_exceeded(request, group="otp", rate_setting="RATE_LIMIT_LOGIN"):
            return rate_limited_response(request)
        # django-axes: a locked user name + IP pair gets no code checked at all.
        if is_locked_out(request, user):
            return lockout_response(request, user)
        if form.is_valid():
            token = form.cleaned_data["token"]
            if form.is_recovery_code:
                try:
                    used = services.use_recovery_code(user=user, code=token)
                except InvalidOTPToken:
                    pass
                else:
                    django_otp.login(request, used.device)
                    _warn_if_low(request, used.remaining)
                    return redirect(next_url)
            # django-otp's verify_token locks the device and applies its per-device throttle
            # (growing delays after failures), so codes cannot be guessed at speed.
            elif django_otp.verify_token(user, totp_device.persistent_id, token) is not None:
                django_otp.login(request, totp_device)
                return redirect(next_url)
            form.add_error("token", InvalidOTPToken.user_message)
            if register_failure(request, user):
                return lockout_response(request, user)
    context = {
        **_site_context(request, next_url),
        "title": _("Two-factor authentication"),
        "form": form,
    }
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(request, "security/otp_verify.html", context, status=status)


@never_cache
@sensitive_post_parameters("password")
@login_required(login_url="/merchant/login/")
def account(request: HttpRequest) -> HttpResponse:
    """Two-factor status and new recovery codes (after the password, in a verified session)."""
    next_url = _next_url(request)
    user = request.user
    if not selectors.has_confirmed_device(user=user):
        return redirect(_with_next("security:otp_setup", next_url))
    if not selectors.is_verified(user=user):
        return redirect(_with_next("security:otp_verify", next_url))
    form = RegenerateRecoveryCodesForm(request.POST or None)
    if request.method == "POST":
        if limit_exceeded(request, group="otp", rate_setting="RATE_LIMIT_LOGIN"):
            return rate_limited_response(request)
        if is_locked_out(request, user):
            return lockout_response(request, user)
        if form.is_valid():
            if user.check_password(form.cleaned_data["password"]):
                codes = services.issue_recovery_codes(user=user)
                return _show_recovery_codes(request, next_url, codes)
            form.add_error("password", _("That password is not correct."))
            if register_failure(request, user):
                return lockout_response(request, user)
    remaining = selectors.recovery_codes_left(user=user)
    context = {
        **_site_context(request, next_url),
        "title": _("Two-factor authentication"),
        "form": form,
        "recovery_codes_left": remaining,
        "recovery_codes_low": remaining <= selectors.LOW_RECOVERY_CODES,
    }
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(request, "security/account.html", context, status=status)
