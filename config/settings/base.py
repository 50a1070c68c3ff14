"""Settings shared by every environment; each value comes from the environment (django-environ).

Development defaults are safe (no secrets in the repo): without a ``.env`` the card-key keyring,
the sandbox secret and ``SECRET_KEY`` are missing, and ``make demo`` writes a ``.env`` with freshly
generated ones (``python -m config.demo_env``). ``config.settings.production`` refuses to start
without its secrets.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# Where `make demo` keeps its generated secrets; point elsewhere (or at nothing) to ignore it.
ENV_FILE = Path(env.str("CARDVAULT_ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.exists():
    env.read_env(str(ENV_FILE))

SECRET_KEY = env.str("SECRET_KEY", default="")
# Former SECRET_KEYs, comma-separated, while they are rotated out: sessions, signed values and
# order links made with them keep working (orders.tokens.page_token).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# How many reverse proxies of ours append to X-Forwarded-For (0: use REMOTE_ADDR as is).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "merchants",
    "shop",
    "orders",
    "disputes",
    "ledger",
    "reviews",
    "promotions",
    "affiliates",
    "risk",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "security",
    "audit",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "security.middleware.TwoFactorGateMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "affiliates.middleware.ReferralMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout raised in authenticate() into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# No DATABASE_URL: the embedded SQLite default for `make demo`. IMMEDIATE transactions make
# SQLite serialise writers up front instead of failing a lock upgrade half-way.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep each worker thread's connection between requests: a new one costs PostgreSQL a backend
# process with cold catalogue caches, ~20 ms a request under load (``make bench``,
# docs/performance.md). A DATABASE_URL's own ?conn_max_age= wins; health checks replace a
# connection the server dropped before a request uses it.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Connect and read/write timeouts on every Redis socket (cache, sessions, rate limits, Celery
# broker): a stalled Redis fails a request after this long instead of hanging a worker.
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=5.0)
REDIS_SOCKET_OPTIONS = {
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "cardvault",
            "OPTIONS": {**REDIS_SOCKET_OPTIONS},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Seconds the rendered catalogue parts of the store and product pages stay cached (shop/cache.py,
# docs/performance.md); edits and stock changes invalidate them at once. 0 switches it off.
STOREFRONT_CACHE_SECONDS = env.int("STOREFRONT_CACHE_SECONDS", default=2)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# django-axes first: it refuses locked-out username+IP pairs before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Internationalisation: English source strings, Simplified Chinese shipped; LocaleMiddleware picks
# from Accept-Language (zh-CN, zh-Hans, zh → zh-hans), the page's switcher overrides it.
LANGUAGE_CODE = "en"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app/static folders too, so `make demo` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = BASE_DIR / "media"

EMAIL_CONFIG = env.email("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Cardvault <noreply@localhost>")

# Celery: at-least-once delivery (acks_late + reject_on_worker_lost, one message at a time) so a
# worker killed mid-task leaves the message for another; every task is idempotent. Without
# REDIS_URL tasks run eagerly in-process (the embedded demo).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message a worker took but never acknowledged (the worker died) goes back to the queue after
# this many seconds. Must exceed the longest task; our tasks take seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600),
    **REDIS_SOCKET_OPTIONS,
}
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE = {
    "expire-pending-orders": {
        "task": "orders.tasks.expire_pending_orders_task",
        "schedule": 60.0,
    },
    "reconcile-payments": {"task": "orders.tasks.reconcile_payments_task", "schedule": 60.0},
    "repair-paid-orders": {"task": "orders.tasks.repair_paid_orders_task", "schedule": 120.0},
    "settle-due-orders": {"task": "ledger.tasks.settle_due_orders_task", "schedule": 600.0},
    "check-gateway-health": {
        "task": "orders.tasks.check_gateway_health_task",
        "schedule": 300.0,
    },
    "anonymise-buyer-data": {
        "task": "orders.tasks.anonymise_buyer_data_task",
        "schedule": 3600.0,
    },
    # disputes: escalate disputes the merchant left unanswered (and finish stalled decisions)
    "escalate-overdue-disputes": {
        "task": "disputes.tasks.escalate_overdue_disputes_task",
        "schedule": 300.0,
    },
    # merchants: the daily inspection (dispute/refund/invalid-key rates, anomalies); hourly, and
    # idempotent per day, so a beat that was down at one hour catches up at the next.
    "inspect-merchants": {
        "task": "merchants.tasks.inspect_merchants_task",
        "schedule": 3600.0,
    },
    # analytics: product page views counted in Redis → ProductViewDay (idempotent totals)
    "flush-product-views": {"task": "merchants.tasks.flush_product_views_task", "schedule": 60.0},
    # webhooks: send deliveries whose retry is due (each delivery is claimed, so overlap is safe)
    "retry-due-webhooks": {"task": "webhooks.tasks.retry_due_webhooks_task", "schedule": 30.0},
    "purge-webhook-logs": {"task": "webhooks.tasks.purge_webhook_logs_task", "schedule": 3600.0},
}

# --- Cardvault ---------------------------------------------------------------------------
# Card-key vault: "id:base64key,id2:base64key" (32-byte AES-256 keys); the first encrypts, all
# decrypt. The fingerprint key (base64, ≥32 bytes) keys the HMAC that de-duplicates stock.
CARD_KEYRING = env.str("CARD_KEYRING", default="")
CARD_FINGERPRINT_KEY = env.str("CARD_FINGERPRINT_KEY", default="")
# Money: the platform's default fee (a merchant can have its own), how long a sale stays pending
# before the merchant can withdraw it, and the smallest withdrawal.
PLATFORM_FEE_RATE = env.str("PLATFORM_FEE_RATE", default="0.05")
SETTLEMENT_HOLD_DAYS = env.int("SETTLEMENT_HOLD_DAYS", default=3)
WITHDRAWAL_MIN_AMOUNT = env.str("WITHDRAWAL_MIN_AMOUNT", default="100.00")
CARD_KEY_MAX_LENGTH = env.int("CARD_KEY_MAX_LENGTH", default=1000)

# Disputes: how long after delivery a buyer may report a problem, how long the merchant has to
# answer before staff take over, and the largest screenshot a buyer may attach.
DISPUTE_WINDOW_DAYS = env.int("DISPUTE_WINDOW_DAYS", default=7)
DISPUTE_ANSWER_HOURS = env.int("DISPUTE_ANSWER_HOURS", default=48)
DISPUTE_SCREENSHOT_MAX_BYTES = env.int("DISPUTE_SCREENSHOT_MAX_BYTES", default=2 * 1024 * 1024)

ORDER_TTL_MINUTES = env.int("ORDER_TTL_MINUTES", default=15)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", default=100)
# Buyers' email and IPs are erased this many days after an order settled (orders.privacy).
BUYER_DATA_RETENTION_DAYS = env.int("BUYER_DATA_RETENTION_DAYS", default=180)

# The sandbox gateway lets anyone "pay" with a button: never enable it on a real shop.
SANDBOX_GATEWAY_ENABLED = env.bool("SANDBOX_GATEWAY_ENABLED", default=True)
SANDBOX_GATEWAY_SECRET = env.str("SANDBOX_GATEWAY_SECRET", default="")
PAYMENT_CALLBACK_MAX_AGE_SECONDS = env.int("PAYMENT_CALLBACK_MAX_AGE_SECONDS", default=300)
OUTBOUND_HTTP_TIMEOUT_SECONDS = env.float("OUTBOUND_HTTP_TIMEOUT_SECONDS", default=10.0)

# Outgoing webhooks and Telegram notices (webhooks/, docs/notifications.md). Private, loopback
# and link-local targets are refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS (tests, local demos).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=30)
WEBHOOK_RETRY_MAX_SECONDS = env.int("WEBHOOK_RETRY_MAX_SECONDS", default=6 * 3600)
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
WEBHOOK_LOG_RETENTION_DAYS = env.int("WEBHOOK_LOG_RETENTION_DAYS", default=90)
# One attempt's whole limit (connect + send + read); unset: three times the outbound timeout.
WEBHOOK_ATTEMPT_TIMEOUT_SECONDS = env.float("WEBHOOK_ATTEMPT_TIMEOUT_SECONDS", default=None)
_TELEGRAM_DEFAULT = "https://api.telegram.org"
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default=_TELEGRAM_DEFAULT).rstrip("/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # At DEBUG, Django logs every missing template variable with the whole template context
        # in the exception, and an order page's context holds decrypted keys. Never below INFO.
        "django.template": {"level": "INFO"},
        # httpx logs every request URL with its query string at INFO; some gateways sign in the
        # query string. Our own client logs method, host and status instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Security (see security/ and audit/) -----------------------------------------------------
# Login lockout (django-axes), keyed by username + client IP, the IP read like every other
# per-IP rule (shop.client_ip, TRUSTED_PROXY_COUNT) so a spoofed X-Forwarded-For changes nothing.
# A lockout lapses after the cool-off (without one, axes locks until staff reset it).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "security.axes_ip.axes_client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "security/locked_out.html"
AXES_VERBOSE = False
# Two-factor (django-otp TOTP): staff must enrol and verify; merchants may.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Cardvault")
# Rate limits (django-ratelimit, counted in the cache): "<count>/<period>" per client IP.
RATELIMIT_USE_CACHE = "default"
# A cache that answers without raising but cannot count must not block buyers either.
RATELIMIT_FAIL_OPEN = True
RATE_LIMIT_CHECKOUT = env.str("RATE_LIMIT_CHECKOUT", default="20/m")
RATE_LIMIT_LOOKUP = env.str("RATE_LIMIT_LOOKUP", default="20/m")
RATE_LIMIT_DISPUTE = env.str("RATE_LIMIT_DISPUTE", default="10/m")
RATE_LIMIT_LOGIN = env.str("RATE_LIMIT_LOGIN", default="30/m")
# Content-Security-Policy (django-csp 4). No inline script or style anywhere: the storefront and
# Django's admin ship only files. form-action is left open on purpose: checkout answers a POST
# with a redirect to the payment gateway, and browsers apply form-action to that redirect.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Uploaded files (shop.uploads): largest accepted upload, in bytes.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=5 * 1024 * 1024)
# Key files imported in the admin (.txt/.csv): 20 MiB holds 100,000 keys of up to ~200 characters.
KEY_IMPORT_MAX_BYTES = env.int("KEY_IMPORT_MAX_BYTES", default=20 * 1024 * 1024)
# No more of a file is kept than the largest of the limits above allows (shop.uploads), and no
# form takes more than a few files.
FILE_UPLOAD_HANDLERS = [
    "shop.uploads.UploadCapHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_NUMBER_FILES = 10

# --- Merchant admission and daily inspection (merchants/) ------------------------------------
# Applications: largest identity/business document (PNG, JPEG or PDF) and the per-IP rate of
# applications sent.
MERCHANT_DOCUMENT_MAX_BYTES = env.int("MERCHANT_DOCUMENT_MAX_BYTES", default=5 * 1024 * 1024)
RATE_LIMIT_MERCHANT_APPLY = env.str("RATE_LIMIT_MERCHANT_APPLY", default="5/h")
# The daily inspection judges rates over the last INSPECTION_WINDOW_DAYS, and only for merchants
# with at least INSPECTION_MIN_ORDERS delivered orders in it (one dispute of two orders is no
# signal). Over a warning threshold staff are e-mailed; over a hard one the store is suspended
# and the merchant told why. Rates are fractions (0.05 = 5 %); a hard threshold of 0 is off.
INSPECTION_WINDOW_DAYS = env.int("INSPECTION_WINDOW_DAYS", default=30)
INSPECTION_MIN_ORDERS = env.int("INSPECTION_MIN_ORDERS", default=20)
INSPECTION_DISPUTE_RATE_WARNING = env.str("INSPECTION_DISPUTE_RATE_WARNING", default="0.05")
INSPECTION_DISPUTE_RATE_HARD = env.str("INSPECTION_DISPUTE_RATE_HARD", default="0.15")
INSPECTION_REFUND_RATE_WARNING = env.str("INSPECTION_REFUND_RATE_WARNING", default="0.10")
INSPECTION_REFUND_RATE_HARD = env.str("INSPECTION_REFUND_RATE_HARD", default="0.30")
INSPECTION_INVALID_KEY_RATE_WARNING = env.str("INSPECTION_INVALID_KEY_RATE_WARNING", default="0.03")
INSPECTION_INVALID_KEY_RATE_HARD = env.str("INSPECTION_INVALID_KEY_RATE_HARD", default="0.10")
# Sales spike: orders paid in the last 24 h over the mean of the 14 days before (a ratio),
# judged once the last 24 h hold at least INSPECTION_SPIKE_MIN_ORDERS orders.
INSPECTION_SALES_SPIKE_WARNING = env.str("INSPECTION_SALES_SPIKE_WARNING", default="5")
INSPECTION_SALES_SPIKE_HARD = env.str("INSPECTION_SALES_SPIKE_HARD", default="0")
INSPECTION_SPIKE_MIN_ORDERS = env.int("INSPECTION_SPIKE_MIN_ORDERS", default=20)
# Price change of a product since the previous day's inspection, as a fraction of the old price.
INSPECTION_PRICE_CHANGE_WARNING = env.str("INSPECTION_PRICE_CHANGE_WARNING", default="0.5")
INSPECTION_PRICE_CHANGE_HARD = env.str("INSPECTION_PRICE_CHANGE_HARD", default="0")
