"""Recovery pages: VM → recovery point → volume → folders; downloads, zips, search, other versions;
whole-VM restores for administrators.

Every view checks `recovery.access` for the VM behind the URL (a partial requested directly gets
the same answer as the page), and every download is recorded through `recovery.actions`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from inventory.models import VirtualMachine
from lib.htmx import htmx_partial
from recovery import access, actions, browse, downloads
from recovery import filesystems as fs
from recovery.catalog import search as catalog_search
from recovery.forms import GrantForm, RestoreVmForm
from recovery.models import RestoreGrant
from vault import actions as vault_actions
from vault import archive
from vault.models import RecoveryPoint

BASKET = "recovery-basket"  # session key: {point id: [item strings]}


def _require_any_view(request: HttpRequest) -> None:
    if not (access.sees_every_vm(request.user) or request.user.has_perm("recovery.browse_recoverypoints")):
        raise PermissionDenied


def _point_for(request: HttpRequest, pk: UUID, *, download: bool = False) -> RecoveryPoint:
    # A point out of the user's scope is 404 (they may not know it exists); one they see but may not
    # open or download from (an auditor, helpdesk without restore_files) is 403.
    point = get_object_or_404(access.visible_points(request.user).select_related("vm"), pk=pk)
    if not access.may_open(request.user, download=download):
        raise PermissionDenied
    return point


def index(request: HttpRequest) -> HttpResponse:
    _require_any_view(request)
    query = request.GET.get("q", "").strip()
    vms = access.vms_with_points(request.user)  # annotated with the user's own point_count, latest_point
    if query:
        vms = vms.filter(Q(name__icontains=query) | Q(path__icontains=query))
    vms = vms.select_related("vcenter").order_by("name")
    context = {"vms": vms, "q": query, "no_grants": access.lacks_grants(request.user)}
    return render(request, "recovery/index.html", context)


def vm_points(request: HttpRequest, vm_id: int) -> HttpResponse:
    _require_any_view(request)
    vm = get_object_or_404(access.visible_vms(request.user), pk=vm_id)
    points = access.visible_points(request.user).filter(vm=vm).order_by("-created")
    return render(
        request, "recovery/vm.html", {"vm": vm, "points": points, "can_browse": access.may_open(request.user)}
    )


def point_detail(request: HttpRequest, pk: UUID) -> HttpResponse:
    point = _point_for(request, pk)
    context = {"point": point, "disks": [], "error": "", "basket": _basket(request, point)}
    try:
        context["disks"] = browse.point_disks(point)
    except browse.PointArchived as exc:
        context.update(_archive_context(request, exc))
    except browse.PointUnavailable as exc:
        context["error"] = str(exc)
    context["can_restore_vm"] = request.user.has_perm("recovery.restore_vms")
    return render(request, "recovery/point.html", context)


def folder(request: HttpRequest, pk: UUID, disk: int, volume: int) -> HttpResponse:
    point = _point_for(request, pk)
    path = request.GET.get("path", "/") or "/"
    basket = _basket(request, point)
    context = {"point": point, "disk": disk, "volume_index": volume, "path": path, "basket": basket}
    # The folder's entries already in the selection, so their boxes stay ticked on every page.
    context["selected"] = {item.split(":", 2)[2] for item in basket if item.startswith(f"{disk}:{volume}:")}
    try:
        context["crumbs"] = _crumbs(path)
        context["page"] = browse.list_folder(point, disk, volume, path, _page_number(request))
    except ValueError:
        raise Http404("No such path") from None
    except fs.NotFound:
        raise Http404(f"{path} is not in this recovery point") from None
    except browse.PointArchived as exc:
        context.update(_archive_context(request, exc))
    except (fs.FileSystemError, browse.PointUnavailable) as exc:
        context["error"] = str(exc)
    context["can_download"] = access.may_open(request.user, download=True)
    template = "recovery/folder.html#listing" if htmx_partial(request) else "recovery/folder.html"
    return render(request, template, context)


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _archive_context(request: HttpRequest, exc: browse.PointArchived) -> dict[str, Any]:
    can_rehydrate = access.may_open(request.user, download=True)  # exc.point came through _point_for
    return {"archive": exc.notice, "can_rehydrate": can_rehydrate, "priorities": archive.PRIORITIES}


@require_POST
def rehydrate(request: HttpRequest, pk: UUID) -> HttpResponse:
    """Start rehydrating a vault point's archived chunks: billed by Azure, so only on a confirmed POST
    from someone who may restore files from the VM."""
    point = _point_for(request, pk, download=True)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm the rehydration and its cost first.")
        return redirect("recovery:point", point.pk)
    try:
        after = vault_actions.rehydrate_point(request.user, point, priority=request.POST.get("priority", "Standard"))
    except vault_actions.VaultActionError as exc:
        messages.error(request, str(exc))
    else:
        if after.archived:
            takes = archive.REHYDRATION_TIME[point.rehydration_priority]
            messages.success(request, f"Rehydration started: Azure brings the chunks back in {takes}.")
        else:
            messages.success(request, "The point's chunks are online again: it can be browsed now.")
    return redirect("recovery:point", point.pk)


def _crumbs(path: str) -> list[tuple[str, str]]:
    crumbs, current = [("/", "/")], ""
    for part in fs.split_path(path):
        current = f"{current}/{part}"
        crumbs.append((part, current))
    return crumbs


def download(request: HttpRequest, pk: UUID, disk: int, volume: int) -> StreamingHttpResponse:
    point = _point_for(request, pk, download=True)
    path = request.GET.get("path", "")
    try:
        filesystem = browse.open_filesystem(point, disk, volume)
        entry = filesystem.stat(path)
        if entry.is_dir:
            raise Http404("That is a folder: select it and download the selection as a zip.")
        stream = filesystem.open(path)
        # Reads the first piece before responding: an archived chunk there is a PointArchived.
        return downloads.file_response(request.user, point, f"{disk}:{volume}:{path}", entry, stream)
    except ValueError:
        raise Http404("No such path") from None
    except fs.NotFound:
        raise Http404(f"{path} is not in this recovery point") from None
    except (fs.FileSystemError, browse.PointUnavailable) as exc:
        raise Http404(str(exc)) from None


# Selection basket (kept in the session, per point) -----------------------------------------------


def _basket(request: HttpRequest, point: RecoveryPoint) -> list[str]:
    return list(request.session.get(BASKET, {}).get(str(point.pk), []))


@require_POST
def select(request: HttpRequest, pk: UUID) -> HttpResponse:
    point = _point_for(request, pk, download=True)
    try:
        item = str(browse.Item.parse(request.POST.get("item", "")))
    except ValueError:
        return HttpResponse("Not a file or folder of this point.", status=400)
    baskets = request.session.get(BASKET, {})
    chosen = baskets.get(str(point.pk), [])
    if request.POST.get("action") == "remove" or (request.POST.get("action") != "add" and item in chosen):
        chosen = [c for c in chosen if c != item]
    elif item not in chosen:
        chosen.append(item)
    baskets[str(point.pk)] = chosen[:500]
    request.session[BASKET] = baskets
    return render(request, "recovery/point.html#basket", {"point": point, "basket": chosen})


@require_POST
def download_zip(request: HttpRequest, pk: UUID) -> HttpResponseBase:
    point = _point_for(request, pk, download=True)
    chosen = request.POST.getlist("item") or _basket(request, point)
    try:
        items = [browse.Item.parse(text) for text in chosen]
    except ValueError:
        return HttpResponse("The selection holds a path that is not allowed.", status=400)
    if not items:
        messages.error(request, "Select files or folders first.")
        return redirect("recovery:point", point.pk)
    try:
        return downloads.zip_response(request.user, point, items)
    except browse.PointArchived:
        return redirect("recovery:point", point.pk)  # whose page shows the archive panel


def search_all(request: HttpRequest) -> HttpResponse:
    """Find files by name, glob or path fragment in every point of the VMs the user may restore from
    (or of one, `?vm=ID`); reads the catalog only."""
    _require_any_view(request)
    vm_id = request.GET.get("vm", "")
    vm = get_object_or_404(access.visible_vms(request.user), pk=vm_id) if vm_id.isdigit() else None
    return _search_page(request, vm=vm, point=None)


def search(request: HttpRequest, pk: UUID) -> HttpResponse:
    """The search of a point's page: the same catalog search, over the points of that point's VM."""
    point = _point_for(request, pk)
    return _search_page(request, vm=point.vm, point=point)


def _search_page(request: HttpRequest, *, vm: VirtualMachine | None, point: RecoveryPoint | None) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    context: dict[str, Any] = {"q": query, "vm": vm, "point": point, "result": None}
    context["can_download"] = request.user.has_perm("recovery.restore_files")  # hits hold visible points only
    if query:
        context["not_searched"] = catalog_search.not_searched(request.user, vm)
        try:
            context["result"] = catalog_search.search(request.user, query, vm=vm)
        except ValueError as exc:
            context["error"] = str(exc)
    template = "recovery/search.html#results" if htmx_partial(request) else "recovery/search.html"
    return render(request, template, context)


def versions(request: HttpRequest, pk: UUID, disk: int, volume: int) -> HttpResponse:
    """The path in every point of the VM the user may see, from the catalog (no point is opened)."""
    point = _point_for(request, pk)
    path = request.GET.get("path", "")
    try:
        fs.split_path(path)
    except ValueError:
        raise Http404("No such path") from None
    rows = catalog_search.other_versions(request.user, point, disk, volume, path)
    context = {"point": point, "disk": disk, "volume_index": volume, "path": path, "rows": rows}
    context["can_download"] = request.user.has_perm("recovery.restore_files")
    template = "recovery/versions.html#table" if htmx_partial(request) else "recovery/versions.html"
    return render(request, template, context)


# Whole-VM restore (administrators) ---------------------------------------------------------------


@permission_required("recovery.restore_vms", raise_exception=True)
def restore_vm(request: HttpRequest, pk: UUID) -> HttpResponse:
    point = get_object_or_404(RecoveryPoint.objects.select_related("vm__vcenter"), pk=pk)
    notice = archive.notice(point)  # the cached state: archived chunks would refuse the restore job
    if notice is not None:
        context = {"point": point, "archive": notice, "priorities": archive.PRIORITIES}
        context["can_rehydrate"] = access.can_download_point(request.user, point)
        return render(request, "recovery/restore_vm.html", context, status=409 if request.method == "POST" else 200)
    form = RestoreVmForm(request.POST or None, point=point)
    if request.method == "POST" and form.is_valid():
        try:
            run = actions.start_vm_restore(request.user, point, form.target())
        except actions.RestoreRefused as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("jobs:detail", run.pk)
    return render(request, "recovery/restore_vm.html", {"point": point, "form": form})


# Grants (administrators) -------------------------------------------------------------------------


@permission_required("recovery.add_restoregrant", raise_exception=True)
def grants(request: HttpRequest) -> HttpResponse:
    form = GrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            actions.add_grant(request.user, data["user"], group=data["group"], folder=data["folder"])
        except actions.RestoreRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Grant added.")
            return redirect("recovery:grants")
    rows = RestoreGrant.objects.select_related("user", "group", "folder")
    return render(request, "recovery/grants.html", {"form": form, "grants": rows})


@permission_required("recovery.delete_restoregrant", raise_exception=True)
@require_POST
def revoke_grant(request: HttpRequest, grant_id: int) -> HttpResponse:
    actions.remove_grant(request.user, get_object_or_404(RestoreGrant, pk=grant_id))
    messages.success(request, "Grant removed.")
    return redirect("recovery:grants")
