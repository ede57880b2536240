from django.urls import path

from recovery import views

app_name = "recovery"
urlpatterns = [
    path("", views.index, name="index"),
    path("vms/<int:vm_id>/", views.vm_points, name="vm"),
    path("search/", views.search_all, name="search_all"),
    path("grants/", views.grants, name="grants"),
    path("grants/<int:grant_id>/revoke/", views.revoke_grant, name="revoke_grant"),
    path("points/<uuid:pk>/", views.point_detail, name="point"),
    path("points/<uuid:pk>/search/", views.search, name="search"),
    path("points/<uuid:pk>/select/", views.select, name="select"),
    path("points/<uuid:pk>/zip/", views.download_zip, name="zip"),
    path("points/<uuid:pk>/restore-vm/", views.restore_vm, name="restore_vm"),
    path("points/<uuid:pk>/rehydrate/", views.rehydrate, name="rehydrate"),
    path("points/<uuid:pk>/<int:disk>/<int:volume>/", views.folder, name="folder"),
    path("points/<uuid:pk>/<int:disk>/<int:volume>/file/", views.download, name="download"),
    path("points/<uuid:pk>/<int:disk>/<int:volume>/versions/", views.versions, name="versions"),
]
