"""My account (every signed-in user) and the change of one's own password."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts import actions
from accounts.models import Profile, profile_of
from accounts.roles import user_roles
from recovery.models import RestoreGrant


def my_account(request: HttpRequest) -> HttpResponse:
    user: Any = request.user  # signed in: LoginRequiredMiddleware
    profile = profile_of(user)
    context = {
        "profile": profile,
        "local": profile.sign_in == Profile.SignIn.LOCAL,
        "roles": user_roles(user),
        "grants": RestoreGrant.objects.filter(user=user).select_related("group", "folder"),
    }
    return render(request, "teams/account.html", context)


@never_cache
@sensitive_post_parameters()
def change_password(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    profile = profile_of(user)
    if profile.sign_in != Profile.SignIn.LOCAL:
        messages.info(request, "Your password is kept by the directory: change it there.")
        return redirect("teams:account")
    form = PasswordChangeForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        actions.change_own_password(user, form.cleaned_data["new_password1"])
        update_session_auth_hash(request, user)  # stay signed in here; other sessions end
        messages.success(request, "Your password has been changed.")
        target = request.POST.get("next", "")
        hosts = {request.get_host()}
        if url_has_allowed_host_and_scheme(target, allowed_hosts=hosts, require_https=request.is_secure()):
            return redirect(target)
        return redirect("teams:account")
    context = {"form": form, "must_change": profile.must_change_password, "next": request.GET.get("next", "")}
    return render(request, "teams/password.html", context)
