"""API token pages: the current user's tokens (a fragment My account loads) and an administrator's
view of someone's tokens (a fragment the Users page loads). Included at the root by config/urls.py."""

from django.urls import path

from teams import token_views

app_name = "tokens"
urlpatterns = [
    path("account/tokens/", token_views.mine, name="mine"),
    path("account/tokens/<int:pk>/revoke/", token_views.revoke, name="revoke"),
    path("users/<int:pk>/tokens/", token_views.of_user, name="of_user"),
]
