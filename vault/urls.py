from django.urls import path

from vault import views

app_name = "vault"
urlpatterns = [
    path("", views.index, name="index"),
    path("prune-preview/", views.prune_preview, name="prune_preview"),
    path("settings/", views.save_settings, name="settings"),
    path("key/create/", views.create_key, name="create_key"),
    path("key/import/", views.import_key, name="import_key"),
    path("start/<slug:task>/", views.start, name="start"),
    path("points/<uuid:pk>/replicate/", views.replicate_point, name="replicate_point"),
    path("points/<uuid:pk>/lock/", views.lock_point, name="lock_point"),
    path("points/<uuid:pk>/delete/", views.delete_point, name="delete_point"),
    path("recovery-services/", views.recovery_services, name="recovery_services"),
]
