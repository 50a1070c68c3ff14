"""Production: refuses to start without its secrets; secure transport on."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env.str("SECRET_KEY")
CARD_KEYRING = env.str("CARD_KEYRING")
CARD_FINGERPRINT_KEY = env.str("CARD_FINGERPRINT_KEY")
if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("Set DATABASE_URL: production runs on PostgreSQL.")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters.")
if not CARD_KEYRING or not CARD_FINGERPRINT_KEY:
    raise ImproperlyConfigured("Set CARD_KEYRING and CARD_FINGERPRINT_KEY.")

DEBUG = False
SANDBOX_GATEWAY_ENABLED = env.bool("SANDBOX_GATEWAY_ENABLED", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Our pages read no cookie from JavaScript; forms carry the CSRF token in a hidden field.
CSRF_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
