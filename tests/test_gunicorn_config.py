"""config/gunicorn.py: each worker loads every view and freezes what is loaded before its first
request (docs/deployment.md, docs/performance.md)."""

import gc
import sys
from types import SimpleNamespace
from unittest import mock

from config import gunicorn as gunicorn_config


def test_worker_init_loads_the_urlconf_and_freezes_the_loaded_objects() -> None:
    logged: list[tuple] = []
    worker = SimpleNamespace(pid=4242, log=SimpleNamespace(debug=lambda *a: logged.append(a)))
    try:
        gunicorn_config.post_worker_init(worker)
        assert "orders.views" in sys.modules  # imported by the URLconf
        assert gc.get_freeze_count() > 10_000
        assert logged and logged[0][1] == 4242
    finally:
        gc.unfreeze()


def test_freeze_happens_after_the_views_are_loaded() -> None:
    order: list[str] = []
    with (
        mock.patch.object(gunicorn_config.gc, "freeze", lambda: order.append("freeze")),
        mock.patch("django.urls.get_resolver") as resolver,
    ):
        type(resolver.return_value).url_patterns = mock.PropertyMock(
            side_effect=lambda: order.append("views") or []
        )
        gunicorn_config.warm_and_freeze()
    assert order == ["views", "freeze"]
