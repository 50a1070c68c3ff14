"""Merchant-written rich text (product description, how-to-use, store announcement), cleaned with
nh3 (ammonia) at render time, so whatever path stored the text, no script reaches a page."""

import re

import nh3
from django.utils.html import linebreaks
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "em", "h3", "h4", "i", "li", "ol", "p", "pre",
    "strong", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
_TAG = re.compile(r"<[a-zA-Z/!]")


def sanitize_html(text: str | None) -> SafeString:
    """Plain text (no tags) keeps today's look: escaped, paragraphs and line breaks. Text with
    tags keeps only a small formatting set; links get rel=noopener noreferrer nofollow."""
    if not text:
        return SafeString("")
    if not _TAG.search(text):
        # linebreaks escapes the text itself (autoescape=True).
        return mark_safe(linebreaks(text, autoescape=True))  # nosec B308, B703  # noqa: S308
    cleaned = nh3.clean(
        text,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    # nh3's output holds only the allow-listed tags and attributes.
    return mark_safe(cleaned)  # nosec B308, B703  # noqa: S308
