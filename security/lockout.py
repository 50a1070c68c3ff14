"""django-axes for the second factor: a wrong code (authenticator or recovery) or a wrong
password confirmation on the two-factor pages is a failed sign-in of that user from this
client, counted and locked exactly like a wrong password at the login forms."""

import copy
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse, QueryDict


def _credentials(user: Any) -> dict[str, str]:
    return {"username": user.get_username()}


def _without_form_data(request: HttpRequest) -> HttpRequest:
    """A copy of ``request`` with an empty POST: django-axes stores the POST data of a failed
    attempt (``AccessAttempt.post_data``) and masks only fields named like passwords, and a
    mistyped recovery code is too close to a real one to keep."""
    shadow = copy.copy(request)
    shadow.POST = QueryDict()
    return shadow


def is_locked_out(request: HttpRequest, user: Any) -> bool:
    return bool(AxesProxyHandler.is_locked(_without_form_data(request), _credentials(user)))


def register_failure(request: HttpRequest, user: Any) -> bool:
    """Record a failed attempt (django-axes, and the audit log's ``login_failed``); True if
    this user and client are now locked out."""
    shadow = _without_form_data(request)
    user_login_failed.send(sender=__name__, credentials=_credentials(user), request=shadow)
    return bool(getattr(shadow, "axes_locked_out", False))


def lockout_response(request: HttpRequest, user: Any) -> HttpResponse:
    """Sign the session out (the password step must be passed again, which the lock refuses
    until it lapses) and answer with the lockout page."""
    credentials = _credentials(user)
    logout(request)
    return get_lockout_response(request, None, credentials)
