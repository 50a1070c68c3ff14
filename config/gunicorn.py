"""gunicorn hooks, loaded with ``--config python:config.gunicorn`` (the image's command, the
``callbacks`` service in docker-compose.yml and ``make bench``). Worker sizes stay on the
command line.

A worker imports the URLconf (every view module) before its first request instead of during it,
then moves everything loaded so far into the garbage collector's permanent generation
(``gc.freeze``). Without that, a full collection every few hundred requests scanned the ~150,000
objects of the loaded project and paused whichever request was running for ~100 ms on a 2-core
machine (~9 ms after freezing; docs/performance.md).
"""

from __future__ import annotations

import gc
from typing import Any


def warm_and_freeze() -> int:
    """Import every view module, then freeze what is loaded; returns how many objects were
    frozen."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (the attribute access imports the views)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def post_worker_init(worker: Any) -> None:
    """gunicorn: called in each worker once it has loaded the WSGI application."""
    frozen = warm_and_freeze()
    worker.log.debug("worker %s: %s objects frozen", worker.pid, frozen)
