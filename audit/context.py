"""The request being served, for audit rows written from signals that do not receive it."""

from contextvars import ContextVar

from django.http import HttpRequest

current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)
