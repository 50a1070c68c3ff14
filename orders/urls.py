from django.urls import path

from orders import privacy_views, views

app_name = "orders"

urlpatterns = [
    path("o/<str:token>/", views.order_detail, name="detail"),
    path("o/<str:token>/keys.txt", views.order_keys_download, name="keys_download"),
    path("o/<str:token>/pay/", views.order_pay, name="pay"),
    path("o/<str:token>/pay/<str:reference>/", views.hosted_pay, name="hosted_pay"),
    path("lookup/", views.order_lookup, name="lookup"),
    path("lookup/<str:number>/", views.order_lookup_detail, name="lookup_detail"),
    path("pay/callback/<slug:gateway>/", views.payment_callback, name="callback"),
    path("pay/sandbox/<str:reference>/", views.sandbox_pay, name="sandbox_pay"),
    path("o/<str:token>/my-data.json", privacy_views.order_data_download, name="data_download"),
    path("o/<str:token>/erase/", privacy_views.order_anonymise, name="anonymise"),
    path("privacy/", privacy_views.privacy_policy, name="privacy"),
]
