from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import queries
from inventory.models import VCenter
from jobs.models import JobRun
from lib.htmx import htmx_partial
from protection.models import ProtectionGroup


def overview(request: HttpRequest) -> HttpResponse:
    """Where a user lands: the state of protection at a glance, refreshed in place every 30 seconds."""
    context = {
        **queries.overview(),
        "vcenter_count": VCenter.objects.count(),
        "group_count": ProtectionGroup.objects.count(),
        "recent_jobs": JobRun.objects.defer("log", "traceback")[:5]
        if request.user.has_perm("jobs.view_jobrun")
        else [],
    }
    template = "dashboard/overview.html#numbers" if htmx_partial(request) else "dashboard/overview.html"
    return render(request, template, context)
