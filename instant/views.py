"""The Instant recoveries page (the table, polled while any row is not final; Migrate and Stop) and
the start form reached from a recovery point. Thin: instant.actions does the work and audits it."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from instant import actions
from instant.forms import MigrateForm, StartForm
from instant.models import InstantRecovery
from lib.htmx import htmx_partial
from vault.models import RecoveryPoint

SHOWN = 200  # rows on the page, newest first


@permission_required("instant.view_instantrecovery", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    recoveries = list(InstantRecovery.objects.select_related("source_vm", "job")[:SHOWN])
    can_change = request.user.has_perm("instant.change_instantrecovery")
    rows = [
        (r, MigrateForm(r) if can_change and r.state == InstantRecovery.State.RUNNING else None, _stoppable(r))
        for r in recoveries
    ]
    context = {
        "rows": rows,
        "can_change": can_change,
        "polling": any(not r.is_final for r in recoveries),
    }
    template = "instant/list.html#table" if htmx_partial(request) else "instant/list.html"
    return render(request, template, context)


def _stoppable(recovery: InstantRecovery) -> bool:
    """As instant.actions.stop accepts: running or stopping, or a start whose job ended unfinished."""
    State = InstantRecovery.State
    if recovery.state in (State.RUNNING, State.STOPPING):
        return True
    job = recovery.job
    return recovery.state in (State.QUEUED, State.STARTING) and job is not None and job.is_final


@permission_required("instant.add_instantrecovery", raise_exception=True)
def start(request: HttpRequest, pk: UUID) -> HttpResponse:
    point = get_object_or_404(RecoveryPoint.objects.select_related("vm"), pk=pk)
    form = StartForm(point, request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            recovery = actions.start_instant_recovery(
                request.user, point, name=data["name"], host=data["host"], connect_network=data["connect_network"]
            )
        except actions.InstantRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Instant recovery of {point.vm.name} as {recovery.vm_name} queued.")
            if recovery.job_id is not None:
                return redirect("jobs:detail", pk=recovery.job_id)
            return redirect("instant:index")
    return render(request, "instant/start.html", {"point": point, "form": form})


@require_POST
@permission_required("instant.change_instantrecovery", raise_exception=True)
def migrate(request: HttpRequest, pk: int) -> HttpResponse:
    recovery = get_object_or_404(InstantRecovery.objects.select_related("source_vm"), pk=pk)
    form = MigrateForm(recovery, request.POST)
    if not form.is_valid():
        errors = form.errors.get("datastore") or ["Choose a datastore."]
        messages.error(request, f"{recovery.vm_name} was not migrated: {errors[0]}")
        return redirect("instant:index")
    try:
        run = actions.migrate(request.user, recovery, form.cleaned_data["datastore"])
    except actions.InstantRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{run.title} queued.")
    return redirect("instant:index")


@require_POST
@permission_required("instant.change_instantrecovery", raise_exception=True)
def stop(request: HttpRequest, pk: int) -> HttpResponse:
    recovery = get_object_or_404(InstantRecovery, pk=pk)
    try:
        run = actions.stop(request.user, recovery)
    except actions.InstantRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{run.title} queued.")
    return redirect("instant:index")
