from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.signin import ThrottledAuthenticationForm
from inventory import urls as inventory_urls
from protection import views as protection_views

# The VM page's "do not protect" switch is protection's concept, but its URL and name stay in the
# inventory namespace, next to the page it belongs to; composed here so inventory imports nothing above it.
inventory_pages = [
    *inventory_urls.urlpatterns,
    path("vms/<int:pk>/do-not-protect/", protection_views.vm_do_not_protect, name="vm_do_not_protect"),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("teams.oidc_urls")),  # Sign in with Microsoft (Entra ID), when configured
    path("", include("dashboard.urls")),
    path("inventory/", include((inventory_pages, inventory_urls.app_name))),
    path("protection/", include("protection.urls")),
    path("recovery/", include("recovery.urls")),
    path("instant/", include("instant.urls")),
    path("restore-tests/", include("restore_tests.urls")),
    path("jobs/", include("jobs.urls")),
    path("vault/", include("vault.urls")),
    path("alerts/", include("alerts.urls")),
    path("audit/", include("audit.urls")),
    path("reports/", include("reports.urls")),
    path("settings/directory/", include("teams.directory_urls")),  # directory sign-in (LDAP)
    path("", include("teams.urls")),  # /users/… and /account/…
    path("api/", include("api.urls")),
    path("", include("teams.token_urls")),
]
