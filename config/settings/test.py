"""Tests: real PostgreSQL and Redis (never mocked), fixed throw-away secrets."""

import base64
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cardvault")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
# A developer's demo .env (say, a short ORDER_TTL_MINUTES) must not change what the tests see.
os.environ.setdefault("CARDVAULT_ENV_FILE", "/nonexistent/.env")

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = "test-only-secret-key-not-for-production-" + "x" * 20
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
CARD_KEYRING = env.str(
    "TEST_CARD_KEYRING",
    default="k1:" + base64.b64encode(b"\x01" * 32).decode(),
)
CARD_FINGERPRINT_KEY = base64.b64encode(b"\x02" * 32).decode()
SANDBOX_GATEWAY_ENABLED = True
SANDBOX_GATEWAY_SECRET = "sandbox-test-secret"  # noqa: S105
# Functional tests run Celery tasks in-process; the payload-scanning test switches this off and
# sends real messages through Redis.
CELERY_TASK_ALWAYS_EAGER = env.bool("TEST_CELERY_EAGER", default=True)
# Each run's cache keys carry its own prefix, so a run clears only its own keys and two runs on
# one machine (and one Redis database) never wipe each other's cache mid-test.
CACHES["default"]["KEY_PREFIX"] = f"cardvault-test-{os.getpid()}"  # noqa: F405
# Tests read the pages' context (sections, listing, form) and exact stock counts: the storefront
# cache is off except in tests/shop/test_storefront_cache.py, which switches it on.
STOREFRONT_CACHE_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
if env.str("TEST_EMAIL_URL", default=""):
    # The worker-crash test runs real Celery workers that mail to a file or a local SMTP stub.
    vars().update(env.email("TEST_EMAIL_URL"))
# Webhook and Telegram tests deliver to a stub server on 127.0.0.1.
WEBHOOK_ALLOW_PRIVATE_TARGETS = True
