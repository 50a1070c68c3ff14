"""A URLconf for tests/test_error_pages.py: one view that fails, and the site's own URLs (the
error pages link to them)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import urlpatterns as site_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("card key KEY-SECRET must never reach the page")


urlpatterns = [path("boom/", boom), *site_urlpatterns]
