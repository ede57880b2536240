"""Read-side helpers shared by pages, the command line and the API: filtering and sorting VMs."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from inventory.models import VirtualMachine

SORTS = {
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "path": ("path", "pk"),
    "-path": ("-path", "-pk"),
    "power": ("power_state", "name", "pk"),
    "-power": ("-power_state", "name", "pk"),
    "group": ("protection_group__name", "name", "pk"),
    "-group": ("-protection_group__name", "name", "pk"),
}
PROTECTION_FILTERS = ("protected", "unprotected", "do_not_protect")


def vm_queryset(
    *,
    search: str | None = None,
    vcenter_id: int | None = None,
    vcenter_name: str | None = None,
    folder_id: int | None = None,
    folder_path: str | None = None,
    power_state: str | None = None,
    protection: str | None = None,
    include_removed: bool = False,
    sort: str = "name",
) -> QuerySet[VirtualMachine]:
    vms = VirtualMachine.objects.all()
    if not include_removed:
        vms = vms.filter(removed_at__isnull=True)
    if search:
        vms = vms.filter(Q(name__icontains=search) | Q(path__icontains=search) | Q(instance_uuid__iexact=search))
    if vcenter_id:
        vms = vms.filter(vcenter_id=vcenter_id)
    if vcenter_name:
        vms = vms.filter(vcenter__name=vcenter_name)
    if folder_id:
        from inventory.models import Folder

        folder = Folder.objects.filter(pk=folder_id).first()
        vms = vms.filter(folder.subtree_filter("folder__")) if folder else vms.none()
    if folder_path:
        path = folder_path.strip("/")
        vms = vms.filter(Q(folder__path=path) | Q(folder__path__startswith=path + "/"))
    if power_state:
        vms = vms.filter(power_state=power_state)
    if protection == "protected":
        vms = vms.filter(protection_group__isnull=False)
    elif protection == "unprotected":
        vms = vms.filter(protection_group__isnull=True, do_not_protect=False, is_template=False)
    elif protection == "do_not_protect":
        vms = vms.filter(do_not_protect=True)
    return vms.order_by(*SORTS.get(sort, SORTS["name"]))


def unprotected_count() -> int:
    return vm_queryset(protection="unprotected").count()
