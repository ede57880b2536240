from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from dashboard import queries
from inventory.models import VCenter
from inventory.queries import PROOF_OVERDUE
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
            "proof_url": _proof_url(user),
        }
    else:
        context = {**queries.restore_operator_overview(user), "whole_estate": False}
    context["recent_jobs"] = (
        visible_runs(user).defer("log", "traceback")[:5] if user.has_perm("jobs.view_jobrun") else []
    )
    template = "dashboard/overview.html#numbers" if htmx_partial(request) else "dashboard/overview.html"
    return render(request, template, context)


def _proof_url(user: Any) -> str:
    """Where the "proven recoverable" tile leads: the Restore tests page for those who may see it,
    otherwise the VM list filtered to the VMs not proven within their policy."""
    if user.has_perm("restore_tests.view_restoretest"):
        try:
            return reverse("restore_tests:index")
        except NoReverseMatch:  # the page is not there (yet)
            pass
    return reverse("inventory:index") + "?protection=" + PROOF_OVERDUE
