"""Remember ``?ref=CODE`` on any page: a signed cookie for 30 days and one click counted (not
for the affiliate itself, signed in, opening its own link)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from affiliates import services
from affiliates.selectors import REFERRAL_COOKIE, REFERRAL_MAX_AGE, REFERRAL_SALT, referral_code

logger = logging.getLogger(__name__)


class ReferralMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        code = request.GET.get("ref", "")
        response = self.get_response(request)
        if not code or not services.is_well_formed_code(code) or request.path.startswith("/admin/"):
            return response
        code = code.upper()
        if referral_code(request) == code:
            return response  # the same visitor again: already counted and remembered
        try:
            user = getattr(request, "user", None)
            visitor_id = user.pk if user is not None and user.is_authenticated else None
            counted = services.record_click(code=code, visitor_id=visitor_id)
        except DatabaseError:
            # Fail safe: a referral is never worth a broken page.
            logger.warning("could not record an affiliate click", exc_info=True)
            return response
        if counted:
            response.set_signed_cookie(
                REFERRAL_COOKIE,
                code,
                salt=REFERRAL_SALT,
                max_age=REFERRAL_MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
        return response
