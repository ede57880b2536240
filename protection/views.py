"""Protection groups: list, create/edit with live preview, detail, pause/resume, delete, back up now."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from inventory.models import VirtualMachine
from inventory.queries import folder_tree
from jobs.models import JobRun
from protection import actions
from protection.forms import GroupForm, PolicyForm
from protection.models import Policy, ProtectionGroup
from protection.scheduling import BACKUP_KIND

PICKER_LIMIT = 30


def _last_runs() -> dict[int, JobRun]:
    """The newest backup job of each group, in one query over recent backups."""
    latest: dict[int, JobRun] = {}
    for run in JobRun.objects.filter(kind=BACKUP_KIND).defer("log", "traceback").order_by("-created")[:2000]:
        latest.setdefault(run.params.get("group_id"), run)
    return latest


@permission_required("protection.view_protectiongroup", raise_exception=True)
def index(request: HttpRequest) -> HttpResponse:
    active = Q(members__removed_at__isnull=True)
    groups = ProtectionGroup.objects.select_related("policy").annotate(
        member_count=Count("members", filter=active, distinct=True),
        protected_bytes=Sum("members__disks__capacity_bytes", filter=active),
    )
    last = _last_runs()
    now = timezone.now()
    rows = []
    for group in groups:
        policy = getattr(group, "policy", None)
        schedule = policy.parsed_schedule() if policy else None
        rows.append(
            {
                "group": group,
                "last_run": last.get(group.pk),
                "next_run": None if group.paused or schedule is None else schedule.next_slot(now),
                "schedule": schedule.describe() if schedule else "—",
            }
        )
    return render(request, "protection/index.html", {"rows": rows})


def _forms(request: HttpRequest, group: ProtectionGroup | None) -> tuple[GroupForm, PolicyForm]:
    data = request.POST if request.method == "POST" else None
    initial = GroupForm.initial_for(group) if group else None
    policy = getattr(group, "policy", None) if group else None
    return (
        GroupForm(data, instance=group, initial=initial),
        PolicyForm(data, prefix="policy", instance=policy or Policy()),
    )


def _edit(request: HttpRequest, group: ProtectionGroup | None) -> HttpResponse:
    group_form, policy_form = _forms(request, group)
    if request.method == "POST" and group_form.is_valid() and policy_form.is_valid():
        try:
            saved = actions.save_group(
                request.user,
                group=group,
                name=group_form.cleaned_data["name"],
                description=group_form.cleaned_data["description"],
                selection=group_form.selection(),
                policy_values=policy_form.values(),
            )
        except actions.SelectionConflict as exc:
            group_form.add_error(None, str(exc))
        else:
            messages.success(request, f"Protection group “{saved.name}” saved.")
            return redirect("protection:group", pk=saved.pk)
    selection = actions.Selection.of(group) if group and request.method != "POST" else _posted_selection(request)
    context = {
        "group": group,
        "form": group_form,
        "policy_form": policy_form,
        "tree": folder_tree(),
        "selected_folders": set(selection.folder_ids),
        "selected_vms": VirtualMachine.objects.filter(pk__in=selection.vm_ids).order_by("name"),
        "preview": actions.preview(selection, group),
        "timezone_now": timezone.localtime(),
    }
    return render(request, "protection/group_form.html", context)


def _posted_selection(request: HttpRequest) -> actions.Selection:
    """The selection in the submitted form, tolerating half-filled forms (for the live preview)."""

    def ids(name: str) -> list[int]:
        return [int(v) for v in request.POST.getlist(name) if v.isdigit()]

    return actions.Selection(
        folder_ids=ids("folders"),
        vm_ids=ids("vms"),
        excluded_vm_ids=ids("excluded_vms"),
        excluded_disk_ids=ids("excluded_disks"),
    )


@permission_required("protection.add_protectiongroup", raise_exception=True)
def group_create(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@permission_required("protection.change_protectiongroup", raise_exception=True)
def group_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _edit(request, get_object_or_404(ProtectionGroup.objects.select_related("policy"), pk=pk))


@require_POST
@permission_required("protection.view_protectiongroup", raise_exception=True)
def group_preview(request: HttpRequest) -> HttpResponse:
    group = ProtectionGroup.objects.filter(pk=request.POST.get("group_id") or 0).first()
    preview = actions.preview(_posted_selection(request), group)
    return render(request, "protection/group_form.html#preview", {"preview": preview})


@permission_required("protection.view_protectiongroup", raise_exception=True)
def vm_picker(request: HttpRequest) -> HttpResponse:
    """VMs matching a search, to tick one by one; the VMs already ticked stay in the form."""
    text = request.GET.get("vm_search", "").strip()
    chosen = {int(v) for v in request.GET.getlist("vms") if v.isdigit()}
    found = VirtualMachine.objects.none()
    if text:
        found = (
            VirtualMachine.objects.filter(removed_at__isnull=True)
            .filter(Q(name__icontains=text) | Q(path__icontains=text))
            .exclude(pk__in=chosen)
            .select_related("protection_group")
            .order_by("name")[:PICKER_LIMIT]
        )
    context = {
        "found": found,
        "vm_search": text,
        "selected_vms": VirtualMachine.objects.filter(pk__in=chosen).order_by("name"),
    }
    return render(request, "protection/group_form.html#vm-picker", context)


@permission_required("protection.view_protectiongroup", raise_exception=True)
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ProtectionGroup.objects.select_related("policy"), pk=pk)
    members = group.members.filter(removed_at__isnull=True).select_related("folder").order_by("name")
    runs = JobRun.objects.filter(kind=BACKUP_KIND, params__group_id=group.pk).defer("log", "traceback")[:20]
    schedule = group.policy.parsed_schedule()
    context = {
        "group": group,
        "members": members,
        "runs": runs,
        "schedule": schedule.describe(),
        "next_run": None if group.paused else schedule.next_slot(timezone.now()),
        "selection": actions.Selection.of(group),
        "folders": group.folders.all(),
    }
    return render(request, "protection/group_detail.html", context)


@require_POST
@permission_required("protection.change_protectiongroup", raise_exception=True)
def group_pause(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ProtectionGroup, pk=pk)
    paused = request.POST.get("paused") == "1"
    actions.set_paused(request.user, group, paused)
    messages.info(request, f"“{group.name}” {'paused: no scheduled backups start' if paused else 'resumed'}.")
    return redirect("protection:group", pk=group.pk)


@permission_required("protection.delete_protectiongroup", raise_exception=True)
def group_delete(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ProtectionGroup, pk=pk)
    if request.method == "POST":
        actions.delete_group(request.user, group)
        messages.success(request, f"“{group.name}” deleted. Its VMs' recovery points are kept.")
        return redirect("protection:index")
    return render(request, "protection/group_delete.html", {"group": group, "members": group.members.count()})


@require_POST
@permission_required("protection.backup_now", raise_exception=True)
def group_backup_now(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(ProtectionGroup.objects.select_related("policy"), pk=pk)
    runs = actions.backup_now(request.user, group=group)
    messages.info(request, f"{len(runs)} backup job{'s' if len(runs) != 1 else ''} queued for “{group.name}”.")
    return redirect("jobs:list")


@require_POST
@permission_required("protection.backup_now", raise_exception=True)
def vm_backup_now(request: HttpRequest, pk: int) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("protection_group__policy"), pk=pk)
    try:
        runs = actions.backup_now(request.user, vm=vm)
    except actions.SelectionConflict as exc:
        messages.error(request, str(exc))
        return redirect("inventory:vm", pk=vm.pk)
    if runs:
        messages.info(request, f"Backup of {vm.name} queued.")
        return redirect("jobs:detail", pk=runs[0].pk)
    messages.info(request, f"A backup of {vm.name} is already queued or running.")
    return redirect("inventory:vm", pk=vm.pk)


@require_POST
@permission_required("inventory.change_virtualmachine", raise_exception=True)
def vm_do_not_protect(request: HttpRequest, pk: int) -> HttpResponse:
    """The "do not protect" switch on the inventory's VM page (its URL stays under /inventory/)."""
    vm = get_object_or_404(VirtualMachine, pk=pk)
    value = request.POST.get("value") == "1"
    actions.set_do_not_protect(request.user, vm, value)
    messages.success(
        request,
        f"{vm.name} is marked “do not protect”." if value else f"{vm.name} may be protected again.",
    )
    return redirect("inventory:vm", pk=vm.pk)
