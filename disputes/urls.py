from django.urls import path

from disputes import views

app_name = "disputes"

urlpatterns = [
    path("o/<str:token>/problem/", views.start, name="start"),
    path("o/<str:token>/problem/<int:dispute_id>/", views.detail, name="detail"),
    path("o/<str:token>/problem/<int:dispute_id>/message/", views.post_message, name="message"),
    path(
        "o/<str:token>/problem/<int:dispute_id>/screenshot/",
        views.screenshot,
        name="screenshot",
    ),
]
