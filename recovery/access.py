"""Who may see which VMs, recovery points and restores. Views, the API and commands ask here, never
decide themselves.

Administrators and auditors see everything. A restore operator sees what their grants cover, point
by point: a group grant covers the points taken while the VM was in that group (`RecoveryPoint.group`),
so a VM that moved to another group keeps its past points in scope but not the ones it got after;
a folder grant covers every point of the VMs now in that folder or below it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, IntegerField, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from inventory.models import VirtualMachine
from recovery.models import Restore, RestoreGrant
from vault.models import RecoveryPoint

SEE_ALL = ("recovery.restore_vms", "vault.view_recoverypoint")  # administrators, auditors
BROWSE = "recovery.browse_recoverypoints"
DOWNLOAD = "recovery.restore_files"


def sees_every_vm(user: Any) -> bool:
    return any(user.has_perm(perm) for perm in SEE_ALL)


def lacks_grants(user: Any) -> bool:
    """True for someone who sees only granted VMs and has no grant (the page says why it is empty)."""
    return not sees_every_vm(user) and not RestoreGrant.objects.filter(user=user).exists()


def _grants(user: Any) -> list[RestoreGrant]:
    return list(RestoreGrant.objects.filter(user=user).select_related("folder"))


def _in_folder(grant: RestoreGrant, prefix: str = "") -> Q:
    """The VMs (prefix "") or points (prefix "vm__") under the grant's folder, subfolders included."""
    folder = grant.folder
    assert folder is not None  # the grant_group_xor_folder constraint: a grant without a group has one
    return Q(**{f"{prefix}vcenter_id": folder.vcenter_id}) & (
        Q(**{f"{prefix}folder_id": folder.pk}) | Q(**{f"{prefix}folder__path__startswith": folder.path + "/"})
    )


def visible_points(user: Any) -> QuerySet[RecoveryPoint]:
    """The recovery points `user` may list and open: all for administrators and auditors; for a
    restore operator the points their grants cover (none without a grant)."""
    points = RecoveryPoint.objects.all()
    if sees_every_vm(user):
        return points
    if not user.has_perm(BROWSE):
        return points.none()
    scope = Q(pk__in=[])
    for grant in _grants(user):
        scope |= Q(group_id=grant.group_id) if grant.group_id else _in_folder(grant, "vm__")
    return points.filter(scope)


def visible_vms(user: Any) -> QuerySet[VirtualMachine]:
    """VMs `user` may know of: all for administrators and auditors; for a restore operator the VMs
    now in their granted groups and folders, and those holding a point they may see (a VM that left a
    granted group, for its points taken while in it)."""
    vms = VirtualMachine.objects.all()
    if sees_every_vm(user):
        return vms
    if not user.has_perm(BROWSE):
        return vms.none()
    grants = _grants(user)
    if not grants:
        return vms.none()
    scope = Q(Exists(visible_points(user).filter(vm_id=OuterRef("pk"))))
    for grant in grants:
        scope |= Q(protection_group_id=grant.group_id) if grant.group_id else _in_folder(grant)
    return vms.filter(scope)


def vms_with_points(user: Any) -> QuerySet[VirtualMachine]:
    """The visible VMs that hold at least one visible point, each annotated with `point_count` and
    `latest_point` counted over the points `user` may see only (the Recovery page's list)."""
    mine = visible_points(user).filter(vm_id=OuterRef("pk")).order_by()
    count = mine.values("vm_id").annotate(n=Count("pk")).values("n")
    latest = mine.values("vm_id").annotate(newest=Max("created")).values("newest")
    return (
        visible_vms(user)
        .annotate(point_count=Coalesce(Subquery(count, output_field=IntegerField()), 0), latest_point=Subquery(latest))
        .filter(point_count__gt=0)
    )


def can_browse(user: Any, vm: VirtualMachine) -> bool:
    """`user` may open this VM's page (which lists only the points `visible_points` gives)."""
    return user.has_perm(BROWSE) and visible_vms(user).filter(pk=vm.pk).exists()


def can_download(user: Any, vm: VirtualMachine) -> bool:
    """`user` may download from the visible points of this VM (the pages' "can_download" switch)."""
    return user.has_perm(DOWNLOAD) and can_browse(user, vm)


def may_open(user: Any, *, download: bool = False) -> bool:
    """For a point or VM already fetched through visible_points / visible_vms (so in scope): whether
    the user may open it, or also download from it. Saves asking the scope query a second time."""
    return user.has_perm(BROWSE) and (not download or user.has_perm(DOWNLOAD))


def can_browse_point(user: Any, point: RecoveryPoint) -> bool:
    """`user` may open this point: its disks, folders, search and versions."""
    return user.has_perm(BROWSE) and visible_points(user).filter(pk=point.pk).exists()


def can_download_point(user: Any, point: RecoveryPoint) -> bool:
    """`user` may download files and folders from this point."""
    return user.has_perm(DOWNLOAD) and can_browse_point(user, point)


def visible_restores(user: Any) -> QuerySet[Restore]:
    """Restores `user` may see: all for administrators and auditors; a restore operator's own ones."""
    restores = Restore.objects.all()
    if sees_every_vm(user):
        return restores
    return restores.filter(requested_by=user.pk) if user.has_perm(BROWSE) else restores.none()
