from django.urls import path

from risk import views

app_name = "risk"

urlpatterns = [
    path("captcha.svg", views.captcha_image, name="captcha"),
]
