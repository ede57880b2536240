"""/api/v1/… (the JSON API), /api/schema/ (its OpenAPI 3 description) and /api/docs/ (Swagger UI,
served from drf-spectacular-sidecar's files: no CDN). All of them need a token or a logged-in session."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from api import instant, placement, rehydrate, restore_tests, search, views, zip_download

app_name = "api"

router = SimpleRouter()
router.register("vcenters", views.VCenterViewSet, basename="vcenter")
router.register("vms", views.VirtualMachineViewSet, basename="vm")
router.register("groups", views.ProtectionGroupViewSet, basename="group")
router.register("jobs", views.JobRunViewSet, basename="job")
router.register("points", views.RecoveryPointViewSet, basename="point")
router.register("instant-recoveries", instant.InstantRecoveryViewSet, basename="instant-recovery")
router.register("restore-tests", restore_tests.RestoreTestViewSet, basename="restore-test")
router.register("restore-test-policies", restore_tests.RestoreTestPolicyViewSet, basename="restore-test-policy")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/backups/", views.BackupView.as_view(), name="backups"),
    path("v1/vms/<int:pk>/placement/", placement.VmPlacementView.as_view(), name="vm-placement"),
    path("v1/me/", views.MeView.as_view(), name="me"),
    path("v1/search/", search.SearchView.as_view(), name="search"),
    path("v1/points/<uuid:pk>/zip/", zip_download.PointZipView.as_view(), name="point-zip"),
    path("v1/points/<uuid:pk>/rehydrate/", rehydrate.PointRehydrateView.as_view(), name="point-rehydrate"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
