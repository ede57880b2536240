"""The Settings page: the vCenter connections and who holds which role, each section shown only to
those who may see it. It composes inventory and accounts, so it lives a layer above both."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.actions import ROLE_NAMES
from inventory.models import VCenter
from teams import directory


def settings_page(request: HttpRequest) -> HttpResponse:
    roles = None
    if request.user.has_perm("auth.view_user"):
        active = get_user_model().objects.filter(is_active=True).order_by("username")
        roles = Group.objects.filter(name__in=ROLE_NAMES).prefetch_related(Prefetch("user_set", queryset=active))
    context = {
        "vcenters": VCenter.objects.all() if request.user.has_perm("inventory.view_vcenter") else None,
        "roles": sorted(roles, key=lambda g: ROLE_NAMES.index(g.name)) if roles is not None else None,
        "sign_in": _sign_in() if request.user.has_perm("auth.change_group") else None,
    }
    return render(request, "teams/settings.html", context)


def _sign_in() -> dict[str, str]:
    """How people can sign in besides local passwords: the directory's server, Entra ID's issuer."""
    ldap = directory.current_settings()
    entra = settings.ENTRA_ID
    return {"directory": ldap.server_uri if ldap else "", "entra": entra.issuer if entra else ""}
