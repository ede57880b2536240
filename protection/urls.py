from django.urls import path

from protection import views

app_name = "protection"
urlpatterns = [
    path("", views.index, name="index"),
    path("groups/new/", views.group_create, name="group_create"),
    path("groups/preview/", views.group_preview, name="group_preview"),
    path("groups/vm-picker/", views.vm_picker, name="vm_picker"),
    path("groups/<int:pk>/", views.group_detail, name="group"),
    path("groups/<int:pk>/edit/", views.group_edit, name="group_edit"),
    path("groups/<int:pk>/pause/", views.group_pause, name="group_pause"),
    path("groups/<int:pk>/delete/", views.group_delete, name="group_delete"),
    path("groups/<int:pk>/backup-now/", views.group_backup_now, name="group_backup_now"),
    path("vms/<int:pk>/backup-now/", views.vm_backup_now, name="vm_backup_now"),
]
