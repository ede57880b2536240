"""Read-side helpers shared by pages, the command line and the API: filtering and sorting VMs."""

from __future__ import annotations

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
    if protection == "removed":  # VMs deleted in vCenter that keep their recovery points
        vms = vms.filter(removed_at__isnull=False)
    elif not include_removed:
        vms = vms.filter(removed_at__isnull=True)
    if search:
        vms = vms.filter(Q(name__icontains=search) | Q(path__icontains=search) | Q(instance_uuid__iexact=search))
    if vcenter_id:
        vms = vms.filter(vcenter_id=vcenter_id)
    if vcenter_name:
        vms = vms.filter(vcenter__name=vcenter_name)
    if folder_id:
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
