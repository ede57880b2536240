from django.urls import path

from restore_tests import views

app_name = "restore_tests"
urlpatterns = [
    path("", views.index, name="index"),
    path("start/", views.start, name="start"),
    path("policy/<int:group_id>/", views.policy, name="policy"),
]
