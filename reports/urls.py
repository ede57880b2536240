from django.urls import path

from reports import views

app_name = "reports"
urlpatterns = [
    path("", views.index, name="index"),
    path("protection/", views.protection, name="protection"),
    path("protection.csv", views.protection_csv, name="protection_csv"),
]
