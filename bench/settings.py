"""Settings for ``make bench``: the test settings, pointed at a database and Redis keys of the
benchmark run's own (``bench.run`` creates and drops them), plus the bare floor view's urlconf.

Celery queues to Redis (a queue of this run's own, deleted at the end) instead of running tasks
eagerly: in production the receipt email is a worker's job, not the callback request's.
"""

import os
from typing import Any

from config.settings.test import *  # noqa: F403
from config.settings.test import BASE_DIR, CACHES, DATABASES, REDIS_URL, TEMPLATES

RUN_ID = os.environ["CARDVAULT_BENCH_RUN"]

DATABASES["default"]["NAME"] = f"cardvault_bench_{RUN_ID}"
ROOT_URLCONF = "bench.urls"
_DIRS: list[Any] = TEMPLATES[0]["DIRS"]  # type: ignore[assignment]
TEMPLATES[0]["DIRS"] = [*_DIRS, BASE_DIR / "bench" / "templates"]
CACHES["default"]["KEY_PREFIX"] = f"cardvault-bench-{RUN_ID}"
# Behind one reverse proxy, as in production: the load generator gives every buyer its own
# address in X-Forwarded-For, so per-IP limits and risk rules see 200 buyers, not one.
TRUSTED_PROXY_COUNT = 1
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_DEFAULT_QUEUE = f"cardvault-bench-{RUN_ID}"
# The production default (the test settings switch the storefront cache off).
STOREFRONT_CACHE_SECONDS = 2
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "ERROR"}},
    # Expected refusals (sold out, rejected callbacks) would flood the output at INFO.
    "root": {"handlers": ["console"], "level": "ERROR"},
}
