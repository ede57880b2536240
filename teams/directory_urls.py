"""/settings/directory/…: the Directory settings page and its group mappings (administrators)."""

from django.urls import path

from teams.views import directory

app_name = "directory"
urlpatterns = [
    path("", directory.directory_settings, name="settings"),
    path("disable/", directory.directory_disable, name="disable"),
    path("mappings/", directory.mapping_add, name="mapping_add"),
    path("mappings/<int:pk>/remove/", directory.mapping_remove, name="mapping_remove"),
]
