"""Hooks that feed the audit log: Django admin's own LogEntry rows (written by both admin sites
for every add, change and delete) and the authentication signals. Logging only; no business
logic rides on them."""

from typing import Any

from axes.signals import user_locked_out
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_save

from audit.services import record_entry

_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def _on_log_entry(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created or kwargs.get("raw"):
        return
    content_type = (
        ContentType.objects.get_for_id(instance.content_type_id)
        if instance.content_type_id
        else None
    )
    record_entry(
        action=_ACTIONS.get(instance.action_flag, str(instance.action_flag)),
        user=instance.user,
        object_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        object_id=str(instance.object_id or ""),
        object_repr=instance.object_repr,
        changes=instance.get_change_message(),
    )


def _on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record_entry(action="login", user=user, request=request)


def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record_entry(action="logout", user=user, request=request)


def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any
) -> None:
    # credentials are already cleansed by Django (password masked); only the name is kept.
    record_entry(
        action="login_failed", actor_name=str(credentials.get("username", "")), request=request
    )


def _on_locked_out(sender: Any, request: Any, username: str | None = None, **kw: Any) -> None:
    user = get_user_model().objects.filter(username=username).first() if username else None
    record_entry(action="lockout", user=user, actor_name=username or "", request=request)


def connect() -> None:
    post_save.connect(_on_log_entry, sender=LogEntry, dispatch_uid="audit-log-entry")
    user_logged_in.connect(_on_login, dispatch_uid="audit-login")
    user_logged_out.connect(_on_logout, dispatch_uid="audit-logout")
    user_login_failed.connect(_on_login_failed, dispatch_uid="audit-login-failed")
    user_locked_out.connect(_on_locked_out, dispatch_uid="audit-locked-out")
