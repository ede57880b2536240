from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import queries
from inventory.models import VCenter
from jobs.queries import visible_runs
from lib.htmx import htmx_partial
from protection.models import ProtectionGroup
from recovery import access


def overview(request: HttpRequest) -> HttpResponse:
    """Where a user lands: the state of protection at a glance, refreshed in place every 30 seconds.
    Those who see only granted VMs (restore operators) get the figures of those VMs alone."""
    user = request.user
    if access.sees_every_vm(user):
        context = {
            **queries.overview(),
            "whole_estate": True,
            "vcenter_count": VCenter.objects.count(),
            "group_count": ProtectionGroup.objects.count(),
        }
    else:
        context = {**queries.restore_operator_overview(user), "whole_estate": False}
    context["recent_jobs"] = (
        visible_runs(user).defer("log", "traceback")[:5] if user.has_perm("jobs.view_jobrun") else []
    )
    template = "dashboard/overview.html#numbers" if htmx_partial(request) else "dashboard/overview.html"
    return render(request, template, context)
