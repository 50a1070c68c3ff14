"""Tests: real PostgreSQL and Redis (never mocked), fixed throw-away secrets."""

import base64
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cardvault")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")

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
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
