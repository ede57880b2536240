"""Recovery: the VMs that have recovery points (browsing and restores arrive with issue 7)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inventory.models import VirtualMachine


def index(request: HttpRequest) -> HttpResponse:
    if not (
        request.user.has_perm("recovery.browse_recoverypoints") or request.user.has_perm("vault.view_recoverypoint")
    ):
        raise PermissionDenied
    vms = (
        VirtualMachine.objects.filter(recovery_points__isnull=False)
        .annotate(point_count=Count("recovery_points"), latest_point=Max("recovery_points__created"))
        .select_related("vcenter")
        .order_by("name")
    )
    return render(request, "recovery/index.html", {"vms": vms})
