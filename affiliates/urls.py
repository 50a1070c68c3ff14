from django.urls import path

from affiliates import views

app_name = "affiliates"

urlpatterns = [
    path("affiliates/", views.dashboard, name="dashboard"),
    path("affiliates/signup/", views.signup, name="signup"),
    path("affiliates/login/", views.AffiliateLoginView.as_view(), name="login"),
    path("affiliates/join/", views.join, name="join"),
    path("affiliates/withdraw/", views.withdraw, name="withdraw"),
    path("s/<slug:slug>/r/<int:listing_id>/", views.resale_product, name="resale_product"),
]
