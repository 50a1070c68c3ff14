from django.urls import path

from merchants import views

app_name = "merchants"

urlpatterns = [
    path("apply/", views.apply, name="apply"),
    path("apply/done/", views.apply_done, name="apply_done"),
]
