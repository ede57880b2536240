from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inventory.models import VCenter, VirtualMachine
from inventory.queries import unprotected_count
from jobs.models import JobRun
from protection.models import ProtectionGroup


def overview(request: HttpRequest) -> HttpResponse:
    """Where a user lands: the state of protection at a glance, and what to do next."""
    context = {
        "vcenter_count": VCenter.objects.count(),
        "vm_count": VirtualMachine.objects.filter(removed_at__isnull=True).count(),
        "unprotected_count": unprotected_count(),
        "group_count": ProtectionGroup.objects.count(),
        "recent_jobs": JobRun.objects.defer("log", "traceback")[:5]
        if request.user.has_perm("jobs.view_jobrun")
        else [],
        "running_jobs": JobRun.objects.filter(status=JobRun.Status.RUNNING).count(),
        "failed_jobs": JobRun.objects.filter(status__in=[JobRun.Status.FAILED, JobRun.Status.ERRORED]).count(),
    }
    return render(request, "dashboard/overview.html", context)
