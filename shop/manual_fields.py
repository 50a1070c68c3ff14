"""Buyer input fields for manual-delivery products: spec validation and buyer-input validation.

A field's ``pattern`` is a merchant's regular expression run on a buyer's input, so a
catastrophic one (``(a+)+$``) must not hang a worker: patterns are bounded in length and must
compile when the merchant saves them, and buyer input is matched with the ``regex`` package under
a short timeout; a match that runs out of time counts as input not in the expected format.
"""

import logging
import re
from typing import Any

import regex
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_FIELDS = 10
MAX_VALUE_LENGTH = 200
MAX_PATTERN_LENGTH = 200
MATCH_TIMEOUT_SECONDS = 0.1


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
            if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
                raise ValidationError(
                    {
                        "manual_fields": _(
                            "“%(name)s”: a pattern is text of at most %(n)d characters."
                        )
                        % {"name": item["name"], "n": MAX_PATTERN_LENGTH}
                    }
                )
            try:
                regex.compile(pattern)
            except regex.error:
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
        if pattern and not matches(pattern, value, field=name):
            errors[name] = _("“%(label)s” is not in the expected format.") % {"label": label}
            continue
        cleaned[name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def matches(pattern: str, value: str, *, field: str = "") -> bool:
    """Whether ``value`` matches all of ``pattern``. False, never a hang, when the match takes
    longer than ``MATCH_TIMEOUT_SECONDS`` (a catastrophic pattern) or the stored pattern does not
    compile (saved before patterns were checked). Logs the field, never the buyer's input."""
    try:
        return regex.fullmatch(pattern, value, timeout=MATCH_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        logger.warning("manual field %r: pattern match timed out; input refused", field)
    except (regex.error, TypeError):
        logger.warning("manual field %r: stored pattern is invalid; input refused", field)
    return False
