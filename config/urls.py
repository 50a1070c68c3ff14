from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from merchants.admin import merchant_site

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("merchant/", merchant_site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("security.urls")),
    path("risk/", include("risk.urls")),
    path("", include("orders.urls")),
    path("", include("reviews.urls")),  # reviews: the buyer rates a delivered order
    path("", include("disputes.urls")),  # disputes: the buyer's problem reports (by order token)
    path("", include("merchants.urls")),  # merchants: the public store application
    path("", include("affiliates.urls")),  # affiliates: sign-up, dashboard, resale listings
    path("", include("shop.urls")),
]
