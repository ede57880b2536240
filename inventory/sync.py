"""Write what vCenter reported into the database: bulk upserts, a fixed number of queries plus one
INSERT per 1,000 VMs, disks or folders (make bench-inventory prints them at 1,000, 10,000 and 50,000 VMs).

`apply_inventory` takes a complete `vcenter.Inventory` (a full sync) and may mark objects that
vanished as removed; `apply_vm_changes` takes the few VMs the watcher saw change. Both run in one
transaction, so a failure part-way leaves the previous state untouched, and both finish by
announcing the VMs they touched (`inventory.signals.vms_changed`) inside it; protection refreshes
group membership (auto-detect) in its receiver, so that commits or rolls back with the sync.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.models import (
    Cluster,
    Datacenter,
    Datastore,
    Folder,
    Host,
    Network,
    ResourcePool,
    VCenter,
    VirtualDisk,
    VirtualMachine,
)
from inventory.signals import announce_vms_changed

logger = logging.getLogger(__name__)
BATCH = 1000
# A full sync that adds or removes this many VMs refreshes the planner's statistics of the inventory
# tables itself. Autovacuum would, a minute or more later; until then PostgreSQL plans for the tables
# as they were (empty, after a first sync): at 50,000 VMs the VM list filtered by a folder took
# 1.2 s instead of 70 ms (make bench-inventory). ANALYZE samples, so it costs about 0.2 s at 50,000.
ANALYZE_AFTER = 1000
M = TypeVar("M", bound=models.Model)


@dataclass
class SyncResult:
    vms_seen: int = 0
    vms_new: int = 0
    vms_removed: int = 0
    folders: int = 0
    joined: int = 0
    warnings: list[str] = field(default_factory=list)


class _Placed(Protocol):
    """An object inside a datacenter as vcenter reports it (cluster, host, pool, datastore)."""

    @property
    def moref(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def datacenter_moref(self) -> str: ...
    @property
    def path(self) -> str: ...


BY_MOREF = ["vcenter", "moref"]
PLACED_FIELDS = ["name", "datacenter", "inventory_path"]


def _upsert(model: type[M], rows: Sequence[M], unique: list[str], update: list[str]) -> None:
    if rows:
        model._default_manager.bulk_create(
            rows, update_conflicts=True, unique_fields=unique, update_fields=update, batch_size=BATCH
        )


def _pk_map(model: type[models.Model], vcenter: VCenter) -> dict[str, int]:
    return dict(model._default_manager.filter(vcenter=vcenter).values_list("moref", "pk"))


def _placed(vcenter: VCenter, obj: _Placed, datacenters: dict[str, int]) -> dict[str, Any]:
    """The fields of every object inside a datacenter (its model's row takes them as keywords)."""
    return {
        "vcenter": vcenter,
        "moref": obj.moref,
        "name": obj.name,
        "datacenter_id": datacenters[obj.datacenter_moref],
        "inventory_path": obj.path,
    }


@dataclass(frozen=True)
class _Maps:
    """What VM and disk rows point at, by moref: the containers' primary keys and the folders' paths."""

    datacenter: dict[str, int]
    folder: dict[str, int]
    host: dict[str, int]
    pool: dict[str, int]
    datastore: dict[str, int]
    folder_path: dict[str, str]

    @classmethod
    def read(cls, vcenter: VCenter, folder_paths: dict[str, str]) -> _Maps:
        return cls(
            datacenter=_pk_map(Datacenter, vcenter),
            folder=_pk_map(Folder, vcenter),
            host=_pk_map(Host, vcenter),
            pool=_pk_map(ResourcePool, vcenter),
            datastore=_pk_map(Datastore, vcenter),
            folder_path=folder_paths,
        )


def not_protectable_reason(disk: vsphere.DiskInfo) -> str:
    if disk.disk_mode.startswith("independent"):
        return "Independent disk: vSphere snapshots do not include it."
    if disk.backing == "rdm_physical":
        return "Raw device mapping in physical mode: it cannot be snapshotted."
    if disk.backing not in ("flat", "sparse", "rdm_virtual"):
        return f"Unsupported disk backing ({disk.backing})."
    return ""


def _folder_paths(folders: Iterable[vsphere.FolderInfo], datacenter_names: dict[str, str]) -> dict[str, str]:
    """Inventory path of each VM folder: "<datacenter>/<folder>/<subfolder>"; a root folder is the datacenter."""
    by_moref = {folder.moref: folder for folder in folders}
    paths: dict[str, str] = {}

    def path_of(moref: str) -> str:
        if moref not in paths:
            folder = by_moref[moref]
            parent = folder.parent_moref
            if folder.is_root or parent not in by_moref:
                paths[moref] = datacenter_names[folder.datacenter_moref]
            else:
                paths[moref] = f"{path_of(parent)}/{folder.name}"
        return paths[moref]

    for moref in by_moref:
        path_of(moref)
    return paths


def _sync_containers(vcenter: VCenter, inv: vsphere.Inventory) -> _Maps:
    """Datacenters, folders, clusters, hosts, pools and datastores; returns what VMs point at."""
    _upsert(
        Datacenter,
        [Datacenter(vcenter=vcenter, moref=d.moref, name=d.name) for d in inv.datacenters],
        BY_MOREF,
        ["name"],
    )
    dcs = _pk_map(Datacenter, vcenter)
    folder_paths = _sync_folders(vcenter, inv.folders, {d.moref: d.name for d in inv.datacenters})
    clusters = [Cluster(**_placed(vcenter, c, dcs)) for c in inv.clusters if c.datacenter_moref in dcs]
    _upsert(Cluster, clusters, BY_MOREF, PLACED_FIELDS)
    _sync_hosts(vcenter, inv.hosts, dcs)
    _sync_resource_pools(vcenter, inv.resource_pools, dcs)
    _sync_datastores(vcenter, inv.datastores, dcs)
    networks = [Network(**_placed(vcenter, n, dcs), kind=n.kind) for n in inv.networks if n.datacenter_moref in dcs]
    _upsert(Network, networks, BY_MOREF, [*PLACED_FIELDS, "kind"])
    _delete_vanished_containers(vcenter, inv)
    return _Maps.read(vcenter, folder_paths)


def _sync_hosts(vcenter: VCenter, hosts: Iterable[vsphere.HostInfo], dcs: dict[str, int]) -> None:
    clusters = _pk_map(Cluster, vcenter)
    rows = [
        Host(
            **_placed(vcenter, h, dcs),
            cluster_id=clusters.get(h.cluster_moref or ""),
            connection_state=h.connection_state,
        )
        for h in hosts
        if h.datacenter_moref in dcs
    ]
    _upsert(Host, rows, BY_MOREF, [*PLACED_FIELDS, "cluster", "connection_state"])


def _sync_resource_pools(vcenter: VCenter, pools: Iterable[vsphere.ResourcePoolInfo], dcs: dict[str, int]) -> None:
    rows = [
        ResourcePool(**_placed(vcenter, p, dcs), parent_moref=p.parent_moref or "", owner_moref=p.owner_moref or "")
        for p in pools
        if p.datacenter_moref in dcs
    ]
    _upsert(ResourcePool, rows, BY_MOREF, [*PLACED_FIELDS, "parent_moref", "owner_moref"])


def _sync_datastores(vcenter: VCenter, datastores: Iterable[vsphere.DatastoreInfo], dcs: dict[str, int]) -> None:
    rows = [
        Datastore(
            **_placed(vcenter, d, dcs),
            capacity_bytes=d.capacity_bytes,
            free_bytes=d.free_bytes,
            type=d.type,
            url=d.url,
        )
        for d in datastores
        if d.datacenter_moref in dcs
    ]
    _upsert(Datastore, rows, BY_MOREF, [*PLACED_FIELDS, "capacity_bytes", "free_bytes", "type", "url"])


def _delete_vanished_containers(vcenter: VCenter, inv: vsphere.Inventory) -> None:
    """Objects gone from a complete inventory are deleted; VMs pointing at them keep a NULL."""
    for model, seen in (
        (Cluster, inv.clusters),
        (Host, inv.hosts),
        (ResourcePool, inv.resource_pools),
        (Datastore, inv.datastores),
        (Network, inv.networks),
    ):
        model.objects.filter(vcenter=vcenter).exclude(moref__in=[o.moref for o in seen]).delete()


VM_FIELDS = [
    "moref",
    "name",
    "bios_uuid",
    "datacenter",
    "folder",
    "path",
    "host",
    "resource_pool",
    "power_state",
    "guest_id",
    "guest_name",
    "num_cpu",
    "memory_mb",
    "snapshot_count",
    "cbt_enabled",
    "is_template",
    "last_seen",
    "removed_at",
]


def _unique_vms(vms: Iterable[vsphere.VmInfo], result: SyncResult) -> dict[str, vsphere.VmInfo]:
    """VMs by instance UUID, each UUID once; those without one are skipped (an inaccessible VM
    reports no config)."""
    seen: dict[str, vsphere.VmInfo] = {}
    for vm in vms:
        if not vm.instance_uuid:
            result.warnings.append(f"VM {vm.name!r} ({vm.moref}) reports no instance UUID; skipped.")
        elif vm.instance_uuid in seen:
            result.warnings.append(f"VMs {seen[vm.instance_uuid].name!r} and {vm.name!r} share an instance UUID.")
        else:
            seen[vm.instance_uuid] = vm
    return seen


def _vm_row(vcenter: VCenter, instance_uuid: str, vm: vsphere.VmInfo, maps: _Maps, now: dt.datetime) -> VirtualMachine:
    folder_path = maps.folder_path.get(vm.folder_moref or "", "")
    return VirtualMachine(
        vcenter=vcenter,
        instance_uuid=instance_uuid,
        moref=vm.moref,
        name=vm.name,
        bios_uuid=vm.bios_uuid or "",
        datacenter_id=maps.datacenter.get(vm.datacenter_moref or ""),
        folder_id=maps.folder.get(vm.folder_moref or ""),
        path=f"{folder_path}/{vm.name}" if folder_path else vm.name,
        host_id=maps.host.get(vm.host_moref or ""),
        resource_pool_id=maps.pool.get(vm.resource_pool_moref or ""),
        power_state=vm.power_state or "",
        guest_id=vm.guest_id or "",
        guest_name=vm.guest_full_name or "",
        num_cpu=vm.num_cpu or 0,
        memory_mb=vm.memory_mb or 0,
        snapshot_count=vm.snapshot_count,
        cbt_enabled=bool(vm.cbt_enabled),
        is_template=vm.is_template,
        last_seen=now,
        removed_at=None,
    )


def _sync_vms(
    vcenter: VCenter, vms: dict[str, vsphere.VmInfo], maps: _Maps, now: dt.datetime, *, complete: bool = False
) -> list[int]:
    """Upsert VMs (by instance UUID) and their disks; returns the VMs' primary keys.

    complete: vms are all the vCenter's VMs (a full sync), so rows are looked up by vCenter rather
    than by a list of every UUID and primary key (50,000 parameters cost seconds to send at 50,000 VMs).
    """
    rows = [_vm_row(vcenter, uuid, vm, maps, now) for uuid, vm in vms.items()]
    _upsert(VirtualMachine, rows, ["vcenter", "instance_uuid"], VM_FIELDS)
    found = VirtualMachine.objects.filter(vcenter=vcenter)
    if not complete:
        found = found.filter(instance_uuid__in=list(vms))
    pks = {uuid: pk for uuid, pk in found.values_list("instance_uuid", "pk") if uuid in vms}
    disks = VirtualDisk.objects.all()
    disks = disks.filter(vm__vcenter=vcenter) if complete else disks.filter(vm_id__in=list(pks.values()))
    _sync_disks({pks[uuid]: vm.disks for uuid, vm in vms.items()}, maps, disks)
    return list(pks.values())


def _sync_disks(
    disks_by_vm: dict[int, Sequence[vsphere.DiskInfo]], maps: _Maps, known: models.QuerySet[VirtualDisk]
) -> None:
    """Upsert the disks of these VMs (by primary key) and delete those vCenter no longer lists (of
    known, the disk rows these VMs may have)."""
    rows = [
        VirtualDisk(
            vm_id=vm_id,
            key=d.key,
            label=d.label,
            capacity_bytes=d.capacity_bytes,
            file_name=d.file_name,
            datastore_id=maps.datastore.get(d.datastore_moref or ""),
            thin=d.thin,
            disk_mode=d.disk_mode,
            backing=d.backing,
            not_protectable_reason=not_protectable_reason(d),
        )
        for vm_id, disks in disks_by_vm.items()
        for d in disks
    ]
    _upsert(
        VirtualDisk,
        rows,
        ["vm", "key"],
        ["label", "capacity_bytes", "file_name", "datastore", "thin", "disk_mode", "backing", "not_protectable_reason"],
    )
    # A disk removed from a VM in vCenter goes; the VM's full device list was just read.
    current = {(vm_id, d.key) for vm_id, disks in disks_by_vm.items() for d in disks}
    stale = [
        pk
        for pk, vm_id, key in known.values_list("pk", "vm_id", "key")
        if vm_id in disks_by_vm and (vm_id, key) not in current
    ]
    if stale:
        VirtualDisk.objects.filter(pk__in=stale).delete()


def _analyze(*tables: type[models.Model]) -> None:
    """ANALYZE inside the sync's transaction: it counts the rows this transaction wrote, and its
    statistics commit (or roll back) with them."""
    names = ", ".join(connection.ops.quote_name(table._meta.db_table) for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {names}")


@transaction.atomic
def apply_inventory(vcenter: VCenter, inv: vsphere.Inventory) -> SyncResult:
    """Apply a complete inventory: upsert everything, mark VMs and folders that vanished as removed."""
    result = SyncResult()
    known = set(VirtualMachine.objects.filter(vcenter=vcenter).values_list("instance_uuid", flat=True))
    maps = _sync_containers(vcenter, inv)
    vms = _unique_vms(inv.vms, result)
    now = timezone.now()
    pks = _sync_vms(vcenter, vms, maps, now, complete=True)
    result.vms_seen = len(vms)
    result.vms_new = len(vms.keys() - known)
    # Every VM this sync saw has last_seen = now (exactly: one value for the whole sync).
    result.vms_removed = (
        VirtualMachine.objects.filter(vcenter=vcenter, removed_at__isnull=True)
        .exclude(last_seen=now)
        .update(removed_at=now)
    )
    result.folders = len(maps.folder_path)
    if result.vms_new + result.vms_removed >= ANALYZE_AFTER:
        _analyze(VirtualMachine, VirtualDisk, Folder)
    vcenter.instance_uuid = inv.about.instance_uuid or vcenter.instance_uuid
    vcenter.version = inv.about.full_name or vcenter.version
    vcenter.last_sync, vcenter.last_sync_error = timezone.now(), ""
    vcenter.save(update_fields=["instance_uuid", "version", "last_sync", "last_sync_error"])
    result.joined = announce_vms_changed(pks)
    for warning in result.warnings:
        logger.warning("%s: %s", vcenter, warning)
    return result


@transaction.atomic
def apply_vm_changes(
    vcenter: VCenter,
    changed: Sequence[vsphere.VmInfo],
    removed_morefs: Iterable[str],
    folders: Sequence[vsphere.FolderInfo] | None = None,
) -> SyncResult:
    """Apply what the watcher saw: changed VMs re-read in full, removed VMs by moref, and the folder
    tree when it changed. Nothing else is touched."""
    result = SyncResult()
    moved_by_folders: list[int] = []
    if folders is not None:
        dc_names = dict(Datacenter.objects.filter(vcenter=vcenter).values_list("moref", "name"))
        _sync_folders(vcenter, folders, dc_names)
        # A folder moved under (or out of) a protected folder moves its VMs with it.
        moved_by_folders = list(VirtualMachine.objects.filter(vcenter=vcenter).values_list("pk", flat=True))
    maps = _Maps.read(vcenter, dict(Folder.objects.filter(vcenter=vcenter).values_list("moref", "path")))
    vms = _unique_vms(changed, result)
    known = set(
        VirtualMachine.objects.filter(vcenter=vcenter, instance_uuid__in=list(vms)).values_list(
            "instance_uuid", flat=True
        )
    )
    pks = _sync_vms(vcenter, vms, maps, timezone.now())
    removed = list(removed_morefs)
    if removed:
        result.vms_removed = VirtualMachine.objects.filter(
            vcenter=vcenter, moref__in=removed, removed_at__isnull=True
        ).update(removed_at=timezone.now())
    result.vms_seen, result.vms_new = len(vms), len(vms.keys() - known)
    result.joined = announce_vms_changed(set(pks) | set(moved_by_folders))
    return result


def _sync_folders(
    vcenter: VCenter, folders: Iterable[vsphere.FolderInfo], datacenter_names: dict[str, str]
) -> dict[str, str]:
    """Upsert the VM folder tree; folders that vanished are marked removed (groups may select them).

    Returns moref → path. VMs in a folder whose path changed (renamed or moved folder) get new paths.
    """
    dc_pks = _pk_map(Datacenter, vcenter)
    vm_folders = [f for f in folders if f.is_vm_folder and f.datacenter_moref in dc_pks]
    paths = _folder_paths(vm_folders, datacenter_names)
    old_paths = dict(Folder.objects.filter(vcenter=vcenter).values_list("moref", "path"))
    fields = ["name", "datacenter", "path", "is_root", "removed_at", "inventory_path"]
    rows = [
        Folder(
            vcenter=vcenter,
            moref=f.moref,
            name=f.name,
            datacenter_id=dc_pks[f.datacenter_moref],
            path=paths[f.moref],
            is_root=f.is_root,
            removed_at=None,
            inventory_path=f.path,
        )
        for f in vm_folders
    ]
    _upsert(Folder, rows, ["vcenter", "moref"], fields)
    # Parents need primary keys, which new folders have only now.
    pks = _pk_map(Folder, vcenter)
    for row, info in zip(rows, vm_folders, strict=True):
        row.parent_id = None if info.is_root else pks.get(info.parent_moref or "")
    _upsert(Folder, rows, ["vcenter", "moref"], [*fields, "parent"])
    Folder.objects.filter(vcenter=vcenter, removed_at__isnull=True).exclude(moref__in=list(paths)).update(
        removed_at=timezone.now()
    )
    for moref, path in paths.items():
        if moref in old_paths and old_paths[moref] != path:
            VirtualMachine.objects.filter(folder_id=pks[moref]).update(
                path=Concat(Value(path + "/"), "name", output_field=models.CharField())
            )
    return paths
