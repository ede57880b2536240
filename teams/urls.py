"""/users/… (administrators), /account/… and /settings/ (everyone signed in); included at the site root."""

from django.urls import path

from teams.views import account, settings, users

app_name = "teams"
urlpatterns = [
    path("users/", users.user_list, name="users"),
    path("users/new/", users.user_create, name="user_new"),
    path("users/<int:pk>/", users.user_detail, name="user"),
    path("users/<int:pk>/edit/", users.user_edit, name="user_edit"),
    path("users/<int:pk>/disable/", users.user_state, {"enable": False}, name="user_disable"),
    path("users/<int:pk>/enable/", users.user_state, {"enable": True}, name="user_enable"),
    path("users/<int:pk>/reset-password/", users.user_reset_password, name="user_reset_password"),
    path("users/<int:pk>/grants/", users.user_grant_add, name="user_grant_add"),
    path("users/<int:pk>/grants/<int:grant_id>/remove/", users.user_grant_remove, name="user_grant_remove"),
    path("settings/", settings.settings_page, name="settings"),
    path("account/", account.my_account, name="account"),
    path("account/password/", account.change_password, name="password"),
]
