"""/oidc/sign-in/ starts the Entra ID sign-in; /oidc/callback/ is the redirect URI registered in Entra ID."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from teams.oidc_views import EntraCallbackView, EntraSignInView

app_name = "entra"

urlpatterns = [
    path("sign-in/", login_not_required(EntraSignInView.as_view()), name="sign_in"),
    path("callback/", login_not_required(EntraCallbackView.as_view()), name="callback"),
]
