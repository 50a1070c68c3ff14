from django.urls import path

from security import views

app_name = "security"

urlpatterns = [
    path("account/2fa/", views.account, name="account"),
    path("account/2fa/setup/", views.otp_setup, name="otp_setup"),
    path("account/2fa/verify/", views.otp_verify, name="otp_verify"),
]
