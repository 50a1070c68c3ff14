"""``/healthz``: a real readiness check of PostgreSQL and Redis, and the Redis socket timeouts."""

import json

import pytest
from django.core.cache import caches

from config.celery import app as celery_app

UNUSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection


@pytest.mark.django_db
def test_ok_when_database_and_redis_answer(client, django_assert_num_queries):
    with django_assert_num_queries(1):  # SELECT 1: no session, user or other query
        response = client.get("/healthz")

    assert response.status_code == 200
    assert json.loads(response.content) == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
    }
    assert "no-store" in response["Cache-Control"]
    assert "sessionid" not in response.cookies


@pytest.mark.django_db
def test_503_names_redis_when_it_refuses_connections(client, settings, caplog):
    settings.REDIS_URL = UNUSED_PORT

    response = client.get("/healthz")

    assert response.status_code == 503
    body = json.loads(response.content)
    assert body == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
        "failing": ["redis"],
    }
    # The reason is logged for the operator, never sent.
    text = response.content.decode()
    assert "127.0.0.1" not in text and "refused" not in text.lower()
    assert "redis unavailable: ConnectionError" in caplog.text


@pytest.mark.django_db
def test_head_works_and_writes_are_refused(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_without_redis_configured_only_the_database_counts(client, settings):
    settings.REDIS_URL = ""  # the embedded demo: local-memory cache, eager tasks

    response = client.get("/healthz")

    assert response.status_code == 200
    assert json.loads(response.content)["checks"] == {
        "database": "ok",
        "redis": "not configured",
    }


def test_django_cache_sockets_carry_the_timeouts(settings):
    expected = settings.REDIS_SOCKET_TIMEOUT_SECONDS
    assert expected == 5.0  # the default
    options = settings.CACHES["default"]["OPTIONS"]
    assert options["socket_connect_timeout"] == expected
    assert options["socket_timeout"] == expected
    # ... and reach the connections the cache backend really opens.
    pool = caches["default"]._cache._get_connection_pool(write=True)
    assert pool.connection_kwargs["socket_connect_timeout"] == expected
    assert pool.connection_kwargs["socket_timeout"] == expected


def test_celery_broker_carries_the_timeouts(settings):
    expected = settings.REDIS_SOCKET_TIMEOUT_SECONDS
    options = celery_app.conf.broker_transport_options
    assert options["socket_connect_timeout"] == expected
    assert options["socket_timeout"] == expected
    assert "visibility_timeout" in options  # kept beside them
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        assert channel.socket_timeout == expected
        assert channel.socket_connect_timeout == expected
