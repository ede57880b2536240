from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from jobs import actions, queries, runner
from jobs.models import JobRun
from lib.htmx import htmx_partial

PAGE_SIZE = 50


@permission_required("jobs.view_jobrun", raise_exception=True)
def job_list(request: HttpRequest) -> HttpResponse:
    runs = queries.visible_runs(request.user).select_related("created_by").defer("log", "traceback", "result")
    status = request.GET.get("status", "")
    if status == "failed_any":  # failed or errored: what the overview counts as failed
        runs = runs.filter(status__in=[JobRun.Status.FAILED, JobRun.Status.ERRORED])
    elif status == "active":
        runs = runs.filter(status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING])
    elif status in JobRun.Status.values:
        runs = runs.filter(status=status)
    kind = request.GET.get("kind", "")
    if kind:
        runs = runs.filter(kind=kind)
    hours = request.GET.get("hours", "")
    if hours.isdigit():
        runs = runs.filter(created__gte=timezone.now() - timedelta(hours=int(hours)))
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "status": status, "statuses": JobRun.Status.choices, "kind": kind, "hours": hours}
    return render(request, "jobs/list.html", context)


@permission_required("jobs.view_jobrun", raise_exception=True)
def job_row(request: HttpRequest, pk: str) -> HttpResponse:
    """The polled fragment of one row; polling stops (HTTP 286) once the job is final."""
    run = get_object_or_404(queries.visible_runs(request.user).defer("log", "traceback"), pk=pk)
    response = render(request, "jobs/list.html#job-row", {"run": run})
    return _stop_polling_when_final(run, response)


@permission_required("jobs.view_jobrun", raise_exception=True)
def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    run = get_object_or_404(queries.visible_runs(request.user), pk=pk)
    template = "jobs/detail.html#job-panel" if htmx_partial(request) else "jobs/detail.html"
    response = render(request, template, {"run": run})
    return _stop_polling_when_final(run, response) if htmx_partial(request) else response


@require_POST
@permission_required("jobs.add_jobrun", raise_exception=True)
def start_system_check(request: HttpRequest) -> HttpResponse:
    run = runner.enqueue("system.check", user=request.user)
    messages.info(request, f"{run.title} queued.")
    return redirect("jobs:list")


@require_POST
@permission_required("jobs.cancel_jobrun", raise_exception=True)
def cancel(request: HttpRequest, pk: str) -> HttpResponse:
    run = get_object_or_404(queries.visible_runs(request.user), pk=pk)
    messages.info(request, actions.cancel_job(str(run.pk), request.user))
    # Back to the page the form came from, but only on this site: never an open redirect elsewhere.
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("jobs:detail", pk=run.pk)


def _stop_polling_when_final(run: JobRun, response: HttpResponse) -> HttpResponse:
    if not run.is_final:
        return response
    stop = HttpResponseStopPolling(response.content)
    stop["Content-Type"] = response["Content-Type"]
    return stop
