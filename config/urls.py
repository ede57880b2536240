from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
    path("inventory/", include("inventory.urls")),
    path("protection/", include("protection.urls")),
    path("recovery/", include("recovery.urls")),
    path("jobs/", include("jobs.urls")),
    path("vault/", include("vault.urls")),
    path("alerts/", include("alerts.urls")),
    path("audit/", include("audit.urls")),
    path("reports/", include("reports.urls")),
    path("settings/", include("accounts.urls")),
    path("api/", include("api.urls")),
]
