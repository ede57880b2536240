from django.urls import path

from instant import views

app_name = "instant"
urlpatterns = [
    path("", views.index, name="index"),
    path("points/<uuid:pk>/start/", views.start, name="start"),
    path("<int:pk>/migrate/", views.migrate, name="migrate"),
    path("<int:pk>/stop/", views.stop, name="stop"),
]
