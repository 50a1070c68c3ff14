"""Keeps the request in a context variable for audit rows, and records what Django's admin
does not log itself: bulk actions and the custom admin views (it writes LogEntry rows only for
add, change and delete)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import current_request
from audit.services import record_entry

ADMIN_SITES = frozenset({"admin", "merchant_admin"})
# The admin sites and the two-factor enrolment pages.
AUDITED_NAMESPACES = ADMIN_SITES | {"security"}
CHANGELIST_SUFFIX = "_changelist"
# Add, change and delete write LogEntry rows, which signals.py turns into audit rows.
LOGGED_BY_ADMIN = ("_add", "_change", "_delete")
# Recorded by the authentication signals.
SIGNALLED = frozenset({"login", "logout"})


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            response = self.get_response(request)
            self._record_action(request, response)
            return response
        finally:
            current_request.reset(token)

    @staticmethod
    def _record_action(request: HttpRequest, response: HttpResponse) -> None:
        match = request.resolver_match
        if (
            request.method != "POST"
            or match is None
            or match.namespace not in AUDITED_NAMESPACES
            or not request.user.is_authenticated
            # Django's admin answers a POST that acted with a redirect; a form re-rendered with
            # errors, or an action's confirmation page, is a 200 that changed nothing.
            or not 300 <= response.status_code < 400
        ):
            return
        url_name = match.url_name or ""
        if url_name.endswith(CHANGELIST_SUFFIX):
            _record_changelist_action(request, url_name)
        elif not url_name.endswith(LOGGED_BY_ADMIN) and url_name not in SIGNALLED:
            # A custom view (mark paid, refund, import keys, decide a dispute or a withdrawal,
            # approve an application, enrol a second factor…): its name and the ids in its URL.
            record_entry(
                action=f"view:{url_name}"[:100],
                user=request.user,
                request=request,
                object_type=match.namespace,
                object_id=",".join(str(value) for value in match.kwargs.values())[:255],
                object_repr=request.path[:200],
            )


def _record_changelist_action(request: HttpRequest, url_name: str) -> None:
    action = request.POST.get("action", "")
    selected = request.POST.getlist("_selected_action")
    # delete_selected is logged per object by the admin itself (LogEntry); an empty selection
    # ran nothing.
    if not action or action == "delete_selected" or not selected:
        return
    app_model = url_name.removesuffix(CHANGELIST_SUFFIX)
    record_entry(
        action=f"action:{action}"[:100],
        user=request.user,
        request=request,
        object_type=app_model.replace("_", ".", 1),
        object_id=",".join(selected)[:255],
        object_repr=f"{len(selected)} selected",
    )
