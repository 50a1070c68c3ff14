"""Two-factor gate for both admin sites, and the rate limit on their login POSTs.

Staff (/admin/) must have a confirmed TOTP device and have entered a code this session; a staff
user without one reaches only the enrolment page. Merchants (/merchant/) may enrol; once they
have, a code is required too. Login, logout and the JavaScript catalogue stay reachable.
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from security import selectors
from security.ratelimit import limit_exceeded, rate_limited_response

STAFF_SITE = "admin"
MERCHANT_SITE = "merchant_admin"
OPEN_VIEWS = frozenset({"login", "logout", "jsi18n"})


class TwoFactorGateMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.namespace not in (STAFF_SITE, MERCHANT_SITE):
            return None
        if match.url_name == "login":
            if request.method == "POST" and limit_exceeded(
                request, group="login", rate_setting="RATE_LIMIT_LOGIN"
            ):
                return rate_limited_response(request)
            return None
        if match.url_name in OPEN_VIEWS:
            return None
        user = request.user
        if not user.is_authenticated or selectors.is_verified(user=user):
            return None
        enrolled = selectors.has_confirmed_device(user=user)
        if match.namespace == STAFF_SITE:
            if not user.is_staff:
                return None  # the staff site turns them away itself
            target = "security:otp_verify" if enrolled else "security:otp_setup"
        elif enrolled:
            target = "security:otp_verify"
        else:
            return None
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
