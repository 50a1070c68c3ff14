"""Keeps the request in a context variable for audit rows, and records bulk admin actions
(Django's admin writes LogEntry rows for add/change/delete, but not for custom actions)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import current_request
from audit.services import record_entry

ADMIN_SITES = frozenset({"admin", "merchant_admin"})
CHANGELIST_SUFFIX = "_changelist"


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
            or match.namespace not in ADMIN_SITES
            or not (match.url_name or "").endswith(CHANGELIST_SUFFIX)
            or not request.user.is_authenticated
        ):
            return
        action = request.POST.get("action", "")
        selected = request.POST.getlist("_selected_action")
        # delete_selected is logged per object by the admin itself (LogEntry); a 4xx/5xx or an
        # empty selection ran nothing.
        if not action or action == "delete_selected" or not selected or response.status_code >= 400:
            return
        app_model = (match.url_name or "").removesuffix(CHANGELIST_SUFFIX)
        record_entry(
            action=f"action:{action}"[:100],
            user=request.user,
            request=request,
            object_type=app_model.replace("_", ".", 1),
            object_id=",".join(selected)[:255],
            object_repr=f"{len(selected)} selected",
        )
