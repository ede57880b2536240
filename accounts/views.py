from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inventory.models import VCenter


def settings_page(request: HttpRequest) -> HttpResponse:
    """Connections and users; each section shows only what the user may see."""
    context = {
        "vcenters": VCenter.objects.all() if request.user.has_perm("inventory.view_vcenter") else None,
        "users": get_user_model().objects.prefetch_related("groups").order_by("username")
        if request.user.has_perm("auth.view_user")
        else None,
    }
    return render(request, "accounts/settings.html", context)
