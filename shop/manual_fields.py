"""Buyer input fields for manual-delivery products: spec validation and buyer-input validation."""

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_FIELDS = 10
MAX_VALUE_LENGTH = 200


def validate_manual_field_spec(spec: Any) -> None:
    if not isinstance(spec, list) or len(spec) > MAX_FIELDS:
        raise ValidationError(
            {"manual_fields": _("Give a list of at most %(n)d fields.") % {"n": MAX_FIELDS}}
        )
    seen: set[str] = set()
    for item in spec:
        if not isinstance(item, dict) or not FIELD_NAME.match(str(item.get("name", ""))):
            raise ValidationError(
                {"manual_fields": _("Each field needs a lower-case name like “account_id”.")}
            )
        if item["name"] in seen:
            raise ValidationError({"manual_fields": _("Field names must be unique.")})
        seen.add(item["name"])
        pattern = item.get("pattern")
        if pattern:
            try:
                re.compile(pattern)
            except re.error:
                raise ValidationError(
                    {"manual_fields": _("“%(name)s” has an invalid pattern.") % item}
                ) from None


def clean_manual_inputs(spec: list[dict[str, Any]], data: dict[str, str]) -> dict[str, str]:
    """Validate the buyer's answers against the spec; raise ``ValidationError`` keyed by field."""
    cleaned: dict[str, str] = {}
    errors: dict[str, str] = {}
    for item in spec:
        name = item["name"]
        label = item.get("label") or name
        value = (data.get(name) or "").strip()
        if not value:
            if item.get("required", True):
                errors[name] = _("“%(label)s” is required.") % {"label": label}
            continue
        if len(value) > MAX_VALUE_LENGTH:
            errors[name] = _("“%(label)s” is too long.") % {"label": label}
            continue
        pattern = item.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            errors[name] = _("“%(label)s” is not in the expected format.") % {"label": label}
            continue
        cleaned[name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned
