"""The ``cv_fp`` cookie: a random, long-lived, first-party device id. It identifies a browser
for the per-device velocity rule; it is not a fingerprint (nothing about the browser is read),
and a buyer who clears it simply counts as a new browser."""

import re
import secrets

from django.http import HttpRequest, HttpResponse

COOKIE_NAME = "cv_fp"
COOKIE_MAX_AGE_SECONDS = 2 * 365 * 24 * 3600
_VALID = re.compile(r"[A-Za-z0-9_-]{20,64}")


def device_id(request: HttpRequest) -> str:
    """The request's device id, or "" when it has none (or a malformed one)."""
    value = request.COOKIES.get(COOKIE_NAME, "")
    return value if _VALID.fullmatch(value) else ""


def remember_device(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Give a browser without a device id one (on the storefront's product page)."""
    if not device_id(request):
        response.set_cookie(
            COOKIE_NAME,
            secrets.token_urlsafe(24),
            max_age=COOKIE_MAX_AGE_SECONDS,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response
