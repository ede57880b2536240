"""Who may see which VMs' recovery points. Views and commands ask here, never decide themselves."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from inventory.models import VirtualMachine
from recovery.models import RestoreGrant

SEE_ALL = ("recovery.restore_vms", "vault.view_recoverypoint")  # administrators, auditors


def sees_every_vm(user: Any) -> bool:
    return any(user.has_perm(perm) for perm in SEE_ALL)


def lacks_grants(user: Any) -> bool:
    """True for someone who sees only granted VMs and has no grant (the page says why it is empty)."""
    return not sees_every_vm(user) and not RestoreGrant.objects.filter(user=user).exists()


def visible_vms(user: Any) -> QuerySet[VirtualMachine]:
    """VMs whose recovery points `user` may list: all for administrators and auditors; for restore
    operators those in the protection groups and folders granted to them (none without a grant)."""
    vms = VirtualMachine.objects.all()
    if sees_every_vm(user):
        return vms
    if not user.has_perm("recovery.browse_recoverypoints"):
        return vms.none()
    scope = Q(pk__in=[])
    for grant in RestoreGrant.objects.filter(user=user).select_related("folder"):
        if grant.group_id:
            # The VM's group now, or the group of any of its points (a VM moved out keeps its past).
            scope |= Q(protection_group_id=grant.group_id) | Q(recovery_points__group_id=grant.group_id)
        elif grant.folder is not None:
            folder = grant.folder
            scope |= Q(vcenter_id=folder.vcenter_id) & (
                Q(folder_id=folder.pk) | Q(folder__path__startswith=folder.path + "/")
            )
    return vms.filter(scope).distinct()


def can_browse(user: Any, vm: VirtualMachine) -> bool:
    return user.has_perm("recovery.browse_recoverypoints") and visible_vms(user).filter(pk=vm.pk).exists()


def can_download(user: Any, vm: VirtualMachine) -> bool:
    return user.has_perm("recovery.restore_files") and can_browse(user, vm)
