"""The app's URLs plus the floor view; only ``bench.settings`` routes here."""

from django.urls import path

from bench.views import bare_store
from config.urls import urlpatterns as app_urlpatterns

urlpatterns = [path("bench/bare/<slug:slug>/", bare_store), *app_urlpatterns]
