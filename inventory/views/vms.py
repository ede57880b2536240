"""The inventory: folder tree, VM list with search/filters/sorting/pagination, VM detail."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render

from inventory.forms import VMFilterForm
from inventory.models import Folder, VCenter, VirtualMachine
from inventory.queries import folder_tree, unprotected_count, vm_queryset
from jobs.models import JobRun
from jobs.queries import visible_runs
from lib.htmx import htmx_partial

PAGE_SIZE = 50


@permission_required("inventory.view_virtualmachine", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    form = VMFilterForm(request.GET or None)
    filters = form.vm_filter()
    sort = form.sort_order()
    vms = vm_queryset(filters, sort).select_related("protection_group", "vcenter")
    page = Paginator(vms, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "sort": sort,
        "query": query.urlencode(),
        "query_without_sort": _without(query, "sort"),
        "selected_folder": Folder.objects.filter(pk=filters.folder_id).first() if filters.folder_id else None,
    }
    if htmx_partial(request):
        return render(request, "inventory/index.html#vm-list", context)
    context |= {
        "tree": folder_tree(),
        "vcenter_count": VCenter.objects.count(),
        "unprotected": unprotected_count(),
    }
    return render(request, "inventory/index.html", context)


def _without(query: QueryDict, key: str) -> str:
    copy = query.copy()
    copy.pop(key, None)
    return copy.urlencode()


@permission_required("inventory.view_virtualmachine", raise_exception=True)
def vm_detail(request: HttpRequest, pk: int) -> HttpResponse:
    vm = get_object_or_404(
        VirtualMachine.objects.select_related(
            "vcenter", "datacenter", "folder", "host", "resource_pool", "protection_group"
        ).prefetch_related("disks__datastore"),
        pk=pk,
    )
    from audit.models import AuditEntry

    history = (
        AuditEntry.objects.filter(target_type="inventory.virtualmachine", target_id=str(vm.pk))[:20]
        if request.user.has_perm("audit.view_auditentry")
        else []
    )
    # Points only for those who see every VM's points (recovery.access, a layer above, scopes the others).
    points = (
        vm.recovery_points.prefetch_related("disks")[:50] if request.user.has_perm("vault.view_recoverypoint") else []
    )
    jobs: Iterable[JobRun] = []
    if request.user.has_perm("jobs.view_jobrun"):
        runs = visible_runs(request.user).filter(target_type="inventory.virtualmachine", target_id=str(vm.pk))
        jobs = runs.defer("log")[:5]
    context = {"vm": vm, "history": history, "points": points, "jobs": jobs}
    return render(request, "inventory/vm_detail.html", context)
