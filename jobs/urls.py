from django.urls import path

from jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("system-check/", views.start_system_check, name="system_check"),
    path("<uuid:pk>/", views.job_detail, name="detail"),
    path("<uuid:pk>/row/", views.job_row, name="row"),
    path("<uuid:pk>/cancel/", views.cancel, name="cancel"),
]
