"""The Users pages: the list, a new local user, one user's roles, grants, password and state.

Every view checks its permission (auth.view_user to look, auth.add_user / auth.change_user to
change); the changes themselves are accounts.actions and recovery.actions, audited there.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import actions
from accounts.models import Profile, profile_of
from accounts.roles import user_roles
from recovery import actions as recovery_actions
from recovery.models import RestoreGrant
from teams.forms import EditUserForm, GrantForm, NewUserForm

CHANGE = "auth.change_user"


def _user(pk: int) -> Any:
    return get_object_or_404(get_user_model(), pk=pk)


@permission_required("auth.view_user", raise_exception=True)
def user_list(request: HttpRequest) -> HttpResponse:
    users = get_user_model().objects.select_related("profile").prefetch_related("groups").order_by("username")
    return render(request, "teams/users.html", {"users": users})


@never_cache
@permission_required("auth.add_user", raise_exception=True)
def user_create(request: HttpRequest) -> HttpResponse:
    form = NewUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                created = actions.create_user(request.user, data["username"], roles=data["roles"], email=data["email"])
                for group in data["grant_groups"]:
                    recovery_actions.add_grant(request.user, created.user, group=group)
                for folder in data["grant_folders"]:
                    recovery_actions.add_grant(request.user, created.user, folder=folder)
        except (actions.UserRefused, recovery_actions.RestoreRefused) as exc:
            form.add_error(None, str(exc))
        else:
            # Shown once, on this answer only: never stored in clear, never redirected through a URL.
            return render(
                request,
                "teams/password_once.html",
                {"subject": created.user, "password": created.one_time_password, "created": True},
            )
    return render(request, "teams/user_new.html", {"form": form})


@permission_required("auth.view_user", raise_exception=True)
def user_detail(request: HttpRequest, pk: int, form: EditUserForm | None = None) -> HttpResponse:
    subject = _user(pk)
    profile = profile_of(subject)
    roles = sorted(subject.groups.values_list("name", flat=True))
    context = {
        "subject": subject,
        "profile": profile,
        "local": profile.sign_in == Profile.SignIn.LOCAL,
        "roles": user_roles(subject),
        "form": form or EditUserForm(initial={"email": subject.email, "roles": roles}),
        "grant_form": GrantForm(),
        "grants": RestoreGrant.objects.filter(user=subject).select_related("group", "folder"),
        "is_self": subject.pk == request.user.pk,
    }
    return render(request, "teams/user_detail.html", context)


@permission_required(CHANGE, raise_exception=True)
@require_POST
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    subject = _user(pk)
    form = EditUserForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                actions.set_email(request.user, subject, form.cleaned_data["email"])
                if profile_of(subject).sign_in == Profile.SignIn.LOCAL:
                    actions.set_roles(request.user, subject, form.cleaned_data["roles"])
        except actions.UserRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{subject.get_username()} saved.")
            return redirect("teams:user", pk=subject.pk)
    return user_detail(request, pk, form=form)


@permission_required(CHANGE, raise_exception=True)
@require_POST
def user_state(request: HttpRequest, pk: int, enable: bool) -> HttpResponse:
    subject = _user(pk)
    try:
        if enable:
            actions.enable_user(request.user, subject)
        else:
            actions.disable_user(request.user, subject)
    except actions.UserRefused as exc:
        messages.error(request, str(exc))
    else:
        done = "enabled" if enable else "disabled: their sessions ended and their API tokens were revoked"
        messages.success(request, f"{subject.get_username()} {done}.")
    return redirect("teams:user", pk=subject.pk)


@never_cache
@permission_required(CHANGE, raise_exception=True)
@require_POST
def user_reset_password(request: HttpRequest, pk: int) -> HttpResponse:
    subject = _user(pk)
    try:
        password = actions.reset_password(request.user, subject)
    except actions.UserRefused as exc:
        messages.error(request, str(exc))
        return redirect("teams:user", pk=subject.pk)
    return render(request, "teams/password_once.html", {"subject": subject, "password": password, "created": False})


@permission_required((CHANGE, "recovery.add_restoregrant"), raise_exception=True)
@require_POST
def user_grant_add(request: HttpRequest, pk: int) -> HttpResponse:
    subject = _user(pk)
    form = GrantForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a protection group or a folder (one of them).")
    elif profile_of(subject).sign_in != Profile.SignIn.LOCAL:
        messages.error(request, "Directory users get their grants from the directory group mappings.")
    else:
        try:
            recovery_actions.add_grant(
                request.user, subject, group=form.cleaned_data["group"], folder=form.cleaned_data["folder"]
            )
        except recovery_actions.RestoreRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Grant added.")
    return redirect("teams:user", pk=subject.pk)


@permission_required((CHANGE, "recovery.delete_restoregrant"), raise_exception=True)
@require_POST
def user_grant_remove(request: HttpRequest, pk: int, grant_id: int) -> HttpResponse:
    subject = _user(pk)
    recovery_actions.remove_grant(request.user, get_object_or_404(RestoreGrant, pk=grant_id, user=subject))
    messages.success(request, "Grant removed.")
    return redirect("teams:user", pk=subject.pk)
