from django.urls import path

from shop import views

app_name = "shop"

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("s/<slug:slug>/", views.store, name="store"),
    path("s/<slug:slug>/p/<slug:product_slug>/", views.product, name="product"),
]
