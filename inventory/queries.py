"""Read-side helpers shared by pages, the command line and the API: filtering and sorting VMs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from inventory.models import Datacenter, Folder, VirtualMachine

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
PROTECTION_FILTERS = ("protected", "unprotected", "do_not_protect", "removed")
# The VM list also offers the protected VMs a restore test has not proven within their group's policy
# (proof_overdue, kept by restore_tests, a layer above); the API's and the command's filters do not yet.
PROOF_OVERDUE = "proof_overdue"
_PROTECTION_SCOPES = {  # "removed" is applied with include_removed in vm_queryset
    "protected": Q(protection_group__isnull=False),
    "unprotected": Q(protection_group__isnull=True, do_not_protect=False, is_template=False),
    "do_not_protect": Q(do_not_protect=True),
    PROOF_OVERDUE: Q(protection_group__isnull=False, proof_overdue=True),
}


@dataclass(frozen=True)
class VmFilter:
    """Which VMs to list: the filters of the inventory page, the API and `manage.py vms` (each fills
    the ones it offers; an empty one does not filter)."""

    search: str | None = None  # in the name or path, or the exact instance UUID
    vcenter_id: int | None = None
    vcenter_name: str | None = None
    folder_id: int | None = None  # the folder and its subfolders
    folder_path: str | None = None  # "DC/Production": the folder and its subfolders
    power_state: str | None = None
    protection: str | None = None  # one of PROTECTION_FILTERS, or PROOF_OVERDUE
    include_removed: bool = False


def vm_queryset(filters: VmFilter, sort: str = "name") -> QuerySet[VirtualMachine]:
    """The VMs matching `filters`, ordered by one of SORTS (an unknown one sorts by name)."""
    search, protection = filters.search, filters.protection
    vms = VirtualMachine.objects.all()
    if protection == "removed":  # VMs deleted in vCenter that keep their recovery points
        vms = vms.filter(removed_at__isnull=False)
    elif not filters.include_removed:
        vms = vms.filter(removed_at__isnull=True)
    if search:
        vms = vms.filter(Q(name__icontains=search) | Q(path__icontains=search) | Q(instance_uuid__iexact=search))
    if filters.vcenter_id:
        vms = vms.filter(vcenter_id=filters.vcenter_id)
    if filters.vcenter_name:
        vms = vms.filter(vcenter__name=filters.vcenter_name)
    if filters.folder_id:
        folder = Folder.objects.filter(pk=filters.folder_id).first()
        vms = vms.filter(folder.subtree_filter("folder__")) if folder else vms.none()
    if filters.folder_path:
        path = filters.folder_path.strip("/")
        vms = vms.filter(Q(folder__path=path) | Q(folder__path__startswith=path + "/"))
    if filters.power_state:
        vms = vms.filter(power_state=filters.power_state)
    if protection in _PROTECTION_SCOPES:
        vms = vms.filter(_PROTECTION_SCOPES[protection])
    return vms.order_by(*SORTS.get(sort, SORTS["name"]))


def unprotected_count() -> int:
    return vm_queryset(VmFilter(protection="unprotected")).count()


def folder_tree() -> list[dict]:
    """vCenter → datacenter → nested folders, each with the number of VMs in its whole subtree.

    Three queries whatever the size of the inventory; counts are summed up the tree in Python.
    """
    direct = dict(
        VirtualMachine.objects.filter(removed_at__isnull=True, folder__isnull=False)
        .values_list("folder")
        .annotate(n=Count("pk"))
    )
    folders = Folder.objects.filter(removed_at__isnull=True).order_by("path")
    nodes = {
        f["pk"]: {**f, "children": [], "count": direct.get(f["pk"], 0)}
        for f in folders.values("pk", "name", "parent_id", "datacenter_id", "is_root", "path")
    }
    for node in nodes.values():  # in path order, so children come out sorted
        if node["parent_id"] in nodes:
            nodes[node["parent_id"]]["children"].append(node)
    for node in sorted(nodes.values(), key=lambda n: -n["path"].count("/")):  # deepest first
        if node["parent_id"] in nodes:
            nodes[node["parent_id"]]["count"] += node["count"]
    roots = {n["datacenter_id"]: n for n in nodes.values() if n["is_root"]}
    tree: dict[int, dict] = {}
    for dc in Datacenter.objects.select_related("vcenter").order_by("vcenter__name", "name"):
        entry = tree.setdefault(dc.vcenter_id, {"vcenter": dc.vcenter, "datacenters": []})
        entry["datacenters"].append({"dc": dc, "root": roots.get(dc.pk, {"children": [], "count": 0, "pk": None})})
    return list(tree.values())
