from django import template
from django.utils.safestring import SafeString

from security.html import sanitize_html

register = template.Library()


@register.filter(name="sanitize")
def sanitize(value: str | None) -> SafeString:
    """``{{ product.description|sanitize }}``: merchant rich text, cleaned by nh3."""
    return sanitize_html(value)
