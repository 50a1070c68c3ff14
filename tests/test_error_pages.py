"""Error pages: the site's own 400/403/404/500 and the CSRF failure page, in the buyer's language,
rendered without a request where Django gives none, and saying nothing of the failure itself."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import translation
from django.views import defaults

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.mark.django_db
def test_missing_page_is_the_sites_404_with_a_way_to_the_order() -> None:
    response = Client(**EN).get("/no-such-page/<script>x</script>")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page
    assert reverse("orders:lookup") in page  # "Find my order"
    assert "<script>x" not in page  # the path is not echoed


@pytest.mark.django_db
def test_missing_page_in_chinese() -> None:
    response = Client(**ZH).get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert '<html lang="zh-hans">' in page
    assert "页面不存在" in page
    assert "查询订单" in page
    assert "Page not found" not in page


@pytest.mark.django_db
def test_unknown_store_is_the_sites_404() -> None:
    response = Client(**EN).get(reverse("shop:store", args=["no-such-store"]))
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.django_db
def test_expired_form_explains_that_nothing_was_ordered() -> None:
    client = Client(enforce_csrf_checks=True, **EN)
    response = client.post(reverse("orders:lookup"), {"number": "X", "email": "buyer@example.com"})
    assert response.status_code == 403
    page = response.content.decode()
    assert "The form has expired" in page
    assert "Nothing was ordered and nothing was charged." in page
    assert "CSRF" not in page  # Django's reason is for the log, not the buyer

    chinese = Client(enforce_csrf_checks=True, **ZH).post(reverse("orders:lookup"), {})
    assert chinese.status_code == 403
    assert "表单已过期" in chinese.content.decode()


@pytest.mark.django_db
def test_disallowed_host_is_the_sites_400() -> None:
    response = Client(**EN).get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
    assert "evil.example" not in response.content.decode()


def test_server_error_page_renders_without_a_request_context() -> None:
    # Django renders 500.html with an empty context; it must not need the request.
    request = RequestFactory().get("/")
    with translation.override("en"):
        response = defaults.server_error(request)
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "/lookup/" in page or "Find my order" in page
    with translation.override("zh-hans"):
        chinese = defaults.server_error(request).content.decode()
    assert "我们这边出了点问题" in chinese


@pytest.mark.django_db
def test_an_exception_in_a_view_shows_the_500_page_not_its_details(settings) -> None:
    settings.ROOT_URLCONF = "tests.error_urls"
    client = Client(raise_request_exception=False, **EN)
    response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "card key KEY-SECRET" not in page
    assert "Traceback" not in page


def test_permission_denied_page() -> None:
    request = RequestFactory().get("/")
    with translation.override("en"):
        response = defaults.permission_denied(request, PermissionError("internal reason"))
    assert response.status_code == 403
    page = response.content.decode()
    assert "Access denied" in page
    assert "internal reason" not in page
