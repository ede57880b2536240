"""The Alerts pages. Views stay thin: check the permission, call an action, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from alerts import actions, queries
from alerts.models import Alert
from lib.htmx import htmx_partial

VIEW = "alerts.view_alert"
ACKNOWLEDGE = "alerts.change_alert"
PAGE_SIZE = 50


@permission_required(VIEW, raise_exception=True)
def alert_list(request: HttpRequest) -> HttpResponse:
    status, kind = request.GET.get("status", ""), request.GET.get("kind", "")
    page = Paginator(queries.alert_list(status, kind), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "status": status,
        "kind": kind,
        "statuses": queries.STATUSES,
        "kinds": Alert.Kind.choices,
    }
    return render(request, "alerts/list.html", context)


@permission_required(VIEW, raise_exception=True)
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("acknowledged_by"), pk=pk)
    return render(request, "alerts/detail.html", {"alert": alert})


@permission_required(VIEW, raise_exception=True)
def alert_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One row of the list, for HTMX."""
    alert = get_object_or_404(Alert.objects.select_related("acknowledged_by"), pk=pk)
    return render(request, "alerts/list.html#alert-row", {"alert": alert})


@permission_required(ACKNOWLEDGE, raise_exception=True)
@require_POST
def acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=pk)
    done = actions.acknowledge(request.user, alert)
    if htmx_partial(request):
        alert.refresh_from_db()
        return render(request, "alerts/list.html#alert-row", {"alert": alert, "just_acknowledged": done})
    if done:
        messages.success(request, f"Acknowledged: {alert.title}.")
    else:
        messages.info(request, "That alert was already acknowledged or has resolved.")
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("alerts:list")
