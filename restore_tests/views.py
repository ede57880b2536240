"""The Restore tests page: each protection group's schedule, the queue (polled while a test is queued or
running) and the history, "Test now", and a group's policy form. Thin: restore_tests.actions queues
and saves, and audits."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from lib.htmx import htmx_partial
from protection.models import ProtectionGroup
from restore_tests import actions
from restore_tests.forms import PolicyForm, StartTestForm
from restore_tests.models import RestoreTest, RestoreTestPolicy

HISTORY = 50  # finished tests shown, newest first


@dataclass(frozen=True)
class ScheduleRow:
    group: ProtectionGroup
    policy: RestoreTestPolicy | None  # None: no policy saved, the defaults (not scheduled)
    overdue: int  # VMs of the group not proven within the policy

    @property
    def window(self) -> str:
        policy = self.policy
        if policy is None or policy.window_hours >= 24:
            return "any time"
        return f"from {policy.window_start:%H:%M} for {policy.window_hours} h"

    @property
    def checks(self) -> list[str]:
        """What a test of this group checks, in order, as the policy (or the defaults) says."""
        policy = self.policy or RestoreTestPolicy()
        found = ["volumes", f"heartbeat within {policy.heartbeat_seconds} s"]
        if policy.require_ip:
            found.append("an IP address")
        if policy.tcp_port is not None:
            found.append(f"TCP port {policy.tcp_port}")
        if policy.canary_path:
            found.append(f"{policy.canary_path} of at least {policy.canary_min_bytes} bytes")
        return found


@permission_required("restore_tests.view_restoretest", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    context = _activity()
    if htmx_partial(request):  # the polled fragment: queue and history
        return render(request, "restore_tests/index.html#activity", context)
    context["schedule"] = _schedule()
    context["form"] = StartTestForm() if request.user.has_perm("restore_tests.add_restoretest") else None
    return render(request, "restore_tests/index.html", context)


def _schedule() -> list[ScheduleRow]:
    overdue = Count("members", filter=Q(members__proof_overdue=True, members__removed_at__isnull=True))
    groups = ProtectionGroup.objects.annotate(overdue=overdue).order_by("name")
    policies = {p.group_id: p for p in RestoreTestPolicy.objects.select_related("host")}
    return [ScheduleRow(g, policies.get(g.pk), g.overdue) for g in groups]


def _activity() -> dict[str, object]:
    tests = RestoreTest.objects.select_related("vm", "job")
    queue = list(tests.filter(state__in=actions.ACTIVE).order_by("queued"))
    history = list(tests.filter(state__in=RestoreTest.FINAL).order_by("-finished", "-pk")[:HISTORY])
    return {
        "queue": [(test, test.steps[-1] if test.steps else None) for test in queue],
        "history": [(test, took(test)) for test in history],
        "polling": bool(queue),
    }


def took(test: RestoreTest) -> str:
    """How long a test took: "12 s", "3 min 4 s", "1 h 2 min"."""
    if test.duration is None:
        return "—"
    seconds = round(test.duration.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    if not minutes:
        return f"{seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s"


@require_POST
@permission_required("restore_tests.add_restoretest", raise_exception=True)
def start(request: HttpRequest) -> HttpResponse:
    form = StartTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, "No restore test was queued: choose a VM that has a recovery point.")
        return redirect("restore_tests:index")
    try:
        test = actions.start_test(request.user, form.cleaned_data["vm"])
    except actions.RestoreTestRefused as exc:
        messages.error(request, str(exc))
        return redirect("restore_tests:index")
    messages.success(request, f"Restore test of {test.vm.name} queued.")
    if test.job_id is None:
        return redirect("restore_tests:index")
    return redirect("jobs:detail", pk=test.job_id)


@permission_required("restore_tests.change_restoretestpolicy", raise_exception=True)
def policy(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(ProtectionGroup, pk=group_id)
    existing = RestoreTestPolicy.objects.filter(group=group).first()
    form = PolicyForm(request.POST or None, instance=existing or RestoreTestPolicy(group=group))
    if request.method == "POST" and form.is_valid():
        actions.save_policy(request.user, group, **form.policy_fields())
        messages.success(request, f"Restore test policy of {group.name} saved.")
        return redirect("restore_tests:index")
    return render(request, "restore_tests/policy.html", {"group": group, "form": form, "existing": existing})
