from django.urls import path

from alerts import views

app_name = "alerts"
urlpatterns = [
    path("", views.alert_list, name="list"),
    path("<int:pk>/", views.alert_detail, name="detail"),
    path("<int:pk>/row/", views.alert_row, name="row"),
    path("<int:pk>/acknowledge/", views.acknowledge, name="acknowledge"),
]
