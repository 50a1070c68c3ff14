from django.urls import path

from orders import views

app_name = "orders"

urlpatterns = [
    path("o/<str:token>/", views.order_detail, name="detail"),
    path("o/<str:token>/keys.txt", views.order_keys_download, name="keys_download"),
    path("o/<str:token>/pay/", views.order_pay, name="pay"),
    path("lookup/", views.order_lookup, name="lookup"),
    path("lookup/<str:number>/", views.order_lookup_detail, name="lookup_detail"),
    path("pay/callback/<slug:gateway>/", views.payment_callback, name="callback"),
    path("pay/sandbox/<str:reference>/", views.sandbox_pay, name="sandbox_pay"),
]
