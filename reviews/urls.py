from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("o/<str:token>/review/", views.submit_review, name="submit"),
]
