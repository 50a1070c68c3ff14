from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from merchants.admin import merchant_site


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("merchant/", merchant_site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("orders.urls")),
    path("", include("shop.urls")),
]
