"""The inventory as frozen dataclasses: datacenters, VM folders, clusters, hosts, pools, datastores,
networks and VMs with their disks, read in bulk (fetch_inventory, fetch_vms, fetch_folders, list_vms).

Placement targets carry their inventory path as govc writes it ("DC/host/Cluster/Resources/Pool",
"DC/vm/Prod", "DC/datastore/ds1", "DC/network/VM Network"): every name on the way as vCenter stores it
(escaped: a "/" in a name is "%2f"), so a path splits on "/" unambiguously."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from .connection import AboutInfo, Connection, translated
from .errors import VCenterError
from .names import unescape_name
from .soap import (
    PAGE_SIZE,
    REPORT_MISSING,
    VIM25,
    RawObject,
    Ref,
    int_text,
    objects_with_ancestors,
    property_specs,
    retrieve_raw,
    view_objects,
    xsi_type,
)
from .vmomi import moref_of

# Entity names below are shown to people: vCenter's %2f, %5c and %25 escapes are decoded.


@dataclass(frozen=True)
class DatacenterInfo:
    moref: str
    name: str
    vm_folder_moref: str


@dataclass(frozen=True)
class FolderInfo:
    """A VM folder (one whose childType includes VirtualMachine); each datacenter's root "vm" folder
    is one too, with is_root=True and parent_moref None."""

    moref: str
    name: str
    parent_moref: str | None  # the parent VM folder; None for a datacenter's root VM folder
    datacenter_moref: str
    is_vm_folder: bool
    is_root: bool
    path: str = ""  # inventory path, "DC/vm/Prod/Web"


@dataclass(frozen=True)
class ClusterInfo:
    moref: str
    name: str
    datacenter_moref: str
    path: str = ""  # inventory path, "DC/host/Cluster"


@dataclass(frozen=True)
class HostInfo:
    moref: str
    name: str
    cluster_moref: str | None  # None for a standalone host
    datacenter_moref: str
    connection_state: str  # "connected", "disconnected", "notResponding"
    path: str = ""  # "DC/host/Cluster/esx01", "DC/host/esx02/esx02" (a standalone host's compute resource)


@dataclass(frozen=True)
class ResourcePoolInfo:
    moref: str
    name: str
    parent_moref: str | None  # the parent pool; None for a cluster's (or host's) root pool
    owner_moref: str  # the cluster or standalone compute resource
    datacenter_moref: str
    path: str = ""  # "DC/host/Cluster/Resources/Pool", "DC/host/esx02/Resources"


@dataclass(frozen=True)
class DatastoreInfo:
    moref: str
    name: str
    datacenter_moref: str
    capacity_bytes: int
    free_bytes: int
    type: str  # "VMFS", "NFS", "vsan", "OTHER" (vcsim's local datastores)
    url: str
    path: str = ""  # "DC/datastore/ds1"


@dataclass(frozen=True)
class NetworkInfo:
    """A network VMs can be connected to: a standard port group (Network), a distributed port group
    (uplink port groups left out) or an opaque network."""

    moref: str
    name: str
    datacenter_moref: str
    kind: str  # "Network", "DistributedVirtualPortgroup" or "OpaqueNetwork"
    path: str  # "DC/network/VM Network"


@dataclass(frozen=True)
class DiskInfo:
    key: int
    label: str  # "Hard disk 1"
    capacity_bytes: int
    file_name: str  # "[datastore1] web-01/web-01.vmdk"
    datastore_name: str  # "datastore1", from file_name
    datastore_moref: str | None
    path: str  # "web-01/web-01.vmdk", relative to the datastore
    thin: bool | None  # None when the backing has no such notion (RDM, sparse)
    disk_mode: str  # "persistent", "independent_persistent", "independent_nonpersistent", ...
    backing: str  # "flat", "sparse", "rdm_physical", "rdm_virtual" or "other"
    controller_key: int | None
    unit_number: int | None

    @property
    def datastore(self) -> str:
        """The datastore's name (the field's former name)."""
        return self.datastore_name


@dataclass(frozen=True)
class VmInfo:
    moref: str
    name: str  # as shown to people: vCenter's %2f, %5c and %25 escapes decoded
    instance_uuid: str | None
    bios_uuid: str | None
    power_state: str  # "poweredOn", "poweredOff", "suspended"
    guest_id: str | None
    guest_full_name: str | None
    is_template: bool
    datacenter_moref: str | None
    # The two below are kept as vCenter stores names (escaped), as dcPath and inventory paths need them.
    datacenter: str | None
    folder_path: str  # "Production/Web" below the datacenter's VM folder, "" at its root
    folder_moref: str | None  # None for VMs inside a vApp
    host_moref: str | None
    resource_pool_moref: str | None
    num_cpu: int
    memory_mb: int
    snapshot_count: int  # every snapshot in the tree, not only the roots
    cbt_enabled: bool  # config.changeTrackingEnabled
    change_version: str | None  # config.changeVersion: changes with every configuration (disk) change
    disks: tuple[DiskInfo, ...]


@dataclass(frozen=True)
class Inventory:
    about: AboutInfo
    datacenters: tuple[DatacenterInfo, ...]
    folders: tuple[FolderInfo, ...]  # VM folders only
    clusters: tuple[ClusterInfo, ...]
    hosts: tuple[HostInfo, ...]
    resource_pools: tuple[ResourcePoolInfo, ...]
    datastores: tuple[DatastoreInfo, ...]
    vms: tuple[VmInfo, ...]
    round_trips: int  # SOAP requests this read took
    networks: tuple[NetworkInfo, ...] = ()


DEVICES = "config.hardware.device"
VM_PROPERTIES = (
    "name",
    "parent",
    "config.instanceUuid",
    "config.uuid",
    "config.guestId",
    "config.guestFullName",
    "config.template",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.changeTrackingEnabled",
    "config.changeVersion",
    DEVICES,
    "runtime.powerState",
    "runtime.host",
    "resourcePool",
    "snapshot",
)
FOLDER_PROPERTIES = ("name", "parent", "childType")
DATACENTER_PROPERTIES = ("name", "parent", "vmFolder")
_INVENTORY_PROPERTIES: dict[str, Sequence[str]] = {
    "Folder": FOLDER_PROPERTIES,
    "Datacenter": DATACENTER_PROPERTIES,
    "ComputeResource": ("name", "parent"),  # clusters too (a subtype)
    "HostSystem": ("name", "parent", "runtime.connectionState"),
    "ResourcePool": ("name", "parent", "owner"),  # vApps too
    "Datastore": ("name", "parent", "summary.capacity", "summary.freeSpace", "summary.type", "summary.url"),
    "Network": ("name", "parent"),  # distributed port groups and opaque networks too
    "DistributedVirtualPortgroup": ("config.uplink",),
    "VirtualMachine": VM_PROPERTIES,
}


def fetch_inventory(conn: Connection, *, page_size: int = PAGE_SIZE, with_disks: bool = True) -> Inventory:
    """Datacenters, VM folders, clusters, hosts, resource pools, datastores and VMs (with disks) in a
    few round trips: one ContainerView over the root folder, read with RetrievePropertiesEx pages of
    page_size objects (about 11 pages for 10,000 VMs), then the view is destroyed. Which datacenter
    each object belongs to is worked out in memory from the parents.

    with_disks=False leaves config.hardware.device out (disks empty), which halves the data read.
    """
    start = conn.round_trips
    properties = dict(_INVENTORY_PROPERTIES)
    if not with_disks:
        properties["VirtualMachine"] = [p for p in VM_PROPERTIES if p != DEVICES]
    builder = InventoryBuilder()
    with _container_view(conn, list(properties)) as view:
        for raw in retrieve_raw(conn, property_specs(properties) + view_objects(view), page_size):
            builder.add(raw)
    return builder.inventory(conn.about, round_trips=conn.round_trips - start)


def fetch_vms(conn: Connection, morefs: Iterable[str], *, page_size: int = PAGE_SIZE) -> list[VmInfo]:
    """Re-read some VMs (and the folders above them) in one RetrievePropertiesEx; VMs that no longer
    exist are left out."""
    morefs = list(dict.fromkeys(morefs))
    if not morefs:
        return []
    properties = {"VirtualMachine": VM_PROPERTIES, "Folder": FOLDER_PROPERTIES, "Datacenter": DATACENTER_PROPERTIES}
    spec = property_specs(properties) + objects_with_ancestors("VirtualMachine", morefs)
    builder = InventoryBuilder()
    for raw in retrieve_raw(conn, spec + REPORT_MISSING, page_size):
        builder.add(raw)
    return list(builder.inventory(conn.about, round_trips=0).vms)


def fetch_folders(conn: Connection) -> tuple[FolderInfo, ...]:
    """Every VM folder of every datacenter (three round trips, whatever the number of VMs)."""
    properties = {"Folder": FOLDER_PROPERTIES, "Datacenter": DATACENTER_PROPERTIES}
    builder = InventoryBuilder()
    with _container_view(conn, list(properties)) as view:
        for raw in retrieve_raw(conn, property_specs(properties) + view_objects(view), PAGE_SIZE):
            builder.add(raw)
    return builder.inventory(conn.about, round_trips=0).folders


def list_vms(conn: Connection, *, with_disks: bool = True, page_size: int = PAGE_SIZE) -> list[VmInfo]:
    """Every VM (and template) with its folder and disks: fetch_inventory(...).vms."""
    return list(fetch_inventory(conn, page_size=page_size, with_disks=with_disks).vms)


@contextmanager
def _container_view(conn: Connection, kinds: list[str]) -> Iterator[str]:
    """A recursive ContainerView of these types over the root folder; yields its moref."""
    content = conn.content
    with translated(conn.endpoint):
        view = conn.view_manager.CreateContainerView(content.rootFolder, [getattr(vim, k) for k in kinds], True)
    try:
        yield moref_of(view)
    finally:
        with suppress(VCenterError), translated(conn.endpoint):  # a failed read already says why
            view.DestroyView()


class InventoryBuilder:
    """Collects objects as they stream in (VMs already reduced to plain values), then places each in
    its datacenter and folder by walking parents in memory."""

    def __init__(self) -> None:
        self.kind: dict[str, str] = {}
        self.parent: dict[str, Ref | None] = {}
        self.name: dict[str, str] = {}  # as vCenter stores it (escaped)
        self.child_types: dict[str, list[str]] = {}
        self.vm_folder: dict[str, str] = {}  # datacenter -> its root VM folder
        self.owner: dict[str, str] = {}
        self.extra: dict[str, dict[str, Any]] = {}
        self.vms: list[dict[str, Any]] = []
        self._dc: dict[str, str | None] = {}
        self._path: dict[str, str] = {}
        self._inventory_path: dict[str, str] = {}

    def add(self, raw: RawObject) -> None:
        if "name" not in raw.props:  # missing object (fetch_vms) or one without read permission
            return
        moref = raw.moref
        self.kind[moref], self.name[moref], self.parent[moref] = raw.type, raw.text("name") or "", raw.ref("parent")
        if raw.type == "VirtualMachine":
            self.vms.append(_vm_values(raw))
        elif raw.type == "Folder":
            self.child_types[moref] = raw.strings("childType")
        elif raw.type == "Datacenter":
            if (vm_folder := raw.ref("vmFolder")) is not None:
                self.vm_folder[moref] = vm_folder.value
        elif raw.type in ("ResourcePool", "VirtualApp"):
            owner = raw.ref("owner")
            self.owner[moref] = owner.value if owner else ""
        elif raw.type == "DistributedVirtualPortgroup":
            self.extra[moref] = {"uplink": raw.flag("config.uplink")}
        elif raw.type == "HostSystem":
            self.extra[moref] = {"connection_state": raw.text("runtime.connectionState", "")}
        elif raw.type == "Datastore":
            self.extra[moref] = {
                "capacity_bytes": raw.number("summary.capacity"),
                "free_bytes": raw.number("summary.freeSpace"),
                "type": raw.text("summary.type", ""),
                "url": raw.text("summary.url", ""),
            }

    def datacenter(self, moref: str | None) -> str | None:
        """The datacenter above an object (walking parents, remembered for every object on the way)."""
        trail: list[str] = []
        found: str | None = None
        while moref is not None:
            if moref in self._dc:
                found = self._dc[moref]
                break
            if self.kind.get(moref) == "Datacenter":
                found = moref
                break
            trail.append(moref)
            parent = self.parent.get(moref)
            moref = parent.value if parent is not None else None
        for visited in trail:
            self._dc[visited] = found
        return found

    def folder_path(self, folder: str) -> str:
        """ "Production/Web" (escaped names) below the datacenter's root VM folder, "" for that folder."""
        if folder not in self._path:
            parent = self.parent.get(folder)
            if parent is None or parent.type != "Folder" or folder in self.vm_folder.values():
                self._path[folder] = ""
            else:
                above = self.folder_path(parent.value)
                self._path[folder] = f"{above}/{self.name[folder]}" if above else self.name[folder]
        return self._path[folder]

    def inventory_path(self, moref: str) -> str:
        """The path govc gives an object: the names (as stored) from below the root folder down to it,
        "DC/host/Cluster/Resources"; "" for the root folder (and for objects whose parents were not read)."""
        if moref not in self._inventory_path:
            trail: list[str] = []
            current: str | None = moref
            while current is not None and current not in self._inventory_path:
                parent = self.parent.get(current)
                if parent is None or current not in self.name:  # the root folder
                    self._inventory_path[current] = ""
                    break
                trail.append(current)
                current = parent.value
            above = self._inventory_path.get(current, "") if current is not None else ""
            for visited in reversed(trail):
                above = f"{above}/{self.name[visited]}" if above else self.name[visited]
                self._inventory_path[visited] = above
        return self._inventory_path[moref]

    def _of_kind(self, *kinds: str) -> list[str]:
        return [moref for moref, kind in self.kind.items() if kind in kinds]

    def inventory(self, about_info: AboutInfo, *, round_trips: int) -> Inventory:
        return Inventory(
            about=about_info,
            datacenters=tuple(
                DatacenterInfo(dc, unescape_name(self.name[dc]), self.vm_folder.get(dc, ""))
                for dc in self._of_kind("Datacenter")
            ),
            folders=tuple(self._folders()),
            clusters=tuple(
                ClusterInfo(c, unescape_name(self.name[c]), self.datacenter(c) or "", self.inventory_path(c))
                for c in self._of_kind("ClusterComputeResource")
            ),
            hosts=tuple(self._hosts()),
            resource_pools=tuple(self._pools()),
            datastores=tuple(
                DatastoreInfo(
                    ds,
                    unescape_name(self.name[ds]),
                    self.datacenter(ds) or "",
                    **self.extra[ds],
                    path=self.inventory_path(ds),
                )
                for ds in self._of_kind("Datastore")
            ),
            vms=tuple(self._vm(values) for values in self.vms),
            round_trips=round_trips,
            networks=tuple(self._networks()),
        )

    def _networks(self) -> Iterator[NetworkInfo]:
        for network in self._of_kind("Network", "DistributedVirtualPortgroup", "OpaqueNetwork"):
            kind = self.kind[network]
            if self.extra.get(network, {}).get("uplink"):
                continue  # a distributed switch's uplinks: no VM can be connected to them
            yield NetworkInfo(
                network,
                unescape_name(self.name[network]),
                self.datacenter(network) or "",
                kind,
                self.inventory_path(network),
            )

    def _folders(self) -> Iterator[FolderInfo]:
        roots = set(self.vm_folder.values())
        for folder in self._of_kind("Folder"):
            if "VirtualMachine" not in self.child_types.get(folder, []):
                continue
            parent = self.parent.get(folder)
            is_root = folder in roots
            yield FolderInfo(
                moref=folder,
                name=unescape_name(self.name[folder]),
                parent_moref=None if is_root or parent is None or parent.type != "Folder" else parent.value,
                datacenter_moref=self.datacenter(folder) or "",
                is_vm_folder=True,
                is_root=is_root,
                path=self.inventory_path(folder),
            )

    def _hosts(self) -> Iterator[HostInfo]:
        for host in self._of_kind("HostSystem"):
            parent = self.parent.get(host)
            cluster = parent.value if parent is not None and parent.type == "ClusterComputeResource" else None
            yield HostInfo(
                host,
                unescape_name(self.name[host]),
                cluster,
                self.datacenter(host) or "",
                **self.extra[host],
                path=self.inventory_path(host),
            )

    def _pools(self) -> Iterator[ResourcePoolInfo]:
        for pool in self._of_kind("ResourcePool", "VirtualApp"):
            parent = self.parent.get(pool)
            above = parent.value if parent is not None and parent.type in ("ResourcePool", "VirtualApp") else None
            yield ResourcePoolInfo(
                pool,
                unescape_name(self.name[pool]),
                above,
                self.owner.get(pool, ""),
                self.datacenter(pool) or "",
                self.inventory_path(pool),
            )

    def _vm(self, values: dict[str, Any]) -> VmInfo:
        parent: Ref | None = values.pop("parent")
        folder = parent.value if parent is not None and parent.type == "Folder" else None
        datacenter = self.datacenter(values["moref"])
        return VmInfo(
            **values,
            datacenter_moref=datacenter,
            datacenter=self.name.get(datacenter) if datacenter else None,
            folder_path=self.folder_path(folder) if folder else "",
            folder_moref=folder,
        )


def _vm_values(raw: RawObject) -> dict[str, Any]:
    """A VM's own fields (all but where it sits), read from its elements before they are cleared."""
    host, pool = raw.ref("runtime.host"), raw.ref("resourcePool")
    devices = raw.props.get(DEVICES)
    snapshot = raw.props.get("snapshot")
    return {
        "moref": raw.moref,
        "parent": raw.ref("parent"),
        "name": unescape_name(raw.text("name") or ""),
        "instance_uuid": raw.text("config.instanceUuid"),
        "bios_uuid": raw.text("config.uuid"),
        "power_state": raw.text("runtime.powerState", ""),
        "guest_id": raw.text("config.guestId"),
        "guest_full_name": raw.text("config.guestFullName"),
        "is_template": raw.flag("config.template"),
        "host_moref": host.value if host else None,
        "resource_pool_moref": pool.value if pool else None,
        "num_cpu": raw.number("config.hardware.numCPU"),
        "memory_mb": raw.number("config.hardware.memoryMB"),
        "snapshot_count": _snapshot_count(snapshot) if snapshot is not None else 0,
        "cbt_enabled": raw.flag("config.changeTrackingEnabled"),
        "change_version": raw.text("config.changeVersion"),
        "disks": tuple(disk_info(d) for d in devices if xsi_type(d) == "VirtualDisk") if devices is not None else (),
    }


def _snapshot_count(info: ET.Element) -> int:
    """Nodes of a VirtualMachineSnapshotInfo's tree: each root and child list entry is one snapshot."""
    nodes = (f"{VIM25}rootSnapshotList", f"{VIM25}childSnapshotList")
    return sum(1 for element in info.iter() if element.tag in nodes)


_BACKINGS = {
    "VirtualDiskFlatVer1BackingInfo": "flat",
    "VirtualDiskFlatVer2BackingInfo": "flat",
    "VirtualDiskSparseVer1BackingInfo": "sparse",
    "VirtualDiskSparseVer2BackingInfo": "sparse",
    "VirtualDiskSeSparseBackingInfo": "sparse",
}
_RDM_MODES = {"physicalMode": "rdm_physical", "virtualMode": "rdm_virtual"}


def disk_info(disk: ET.Element) -> DiskInfo:
    backing = disk.find(f"{VIM25}backing")
    backing_type = xsi_type(backing)
    file_name = (backing.findtext(f"{VIM25}fileName") if backing is not None else None) or ""
    match = re.match(r"\[([^\]]*)\] ?(.*)", file_name)
    datastore = backing.find(f"{VIM25}datastore") if backing is not None else None
    thin = backing.findtext(f"{VIM25}thinProvisioned") if backing is not None else None
    if backing_type == "VirtualDiskRawDiskMappingVer1BackingInfo":
        kind = _RDM_MODES.get(backing.findtext(f"{VIM25}compatibilityMode") or "", "other")  # type: ignore[union-attr]
    else:
        kind = _BACKINGS.get(backing_type, "other")
    capacity = int_text(disk, "capacityInBytes") or (int_text(disk, "capacityInKB") or 0) * 1024
    return DiskInfo(
        key=int_text(disk, "key") or 0,
        label=disk.findtext(f"{VIM25}deviceInfo/{VIM25}label") or "",
        capacity_bytes=capacity,
        file_name=file_name,
        datastore_name=match.group(1) if match else "",
        datastore_moref=(datastore.text or None) if datastore is not None else None,
        path=match.group(2) if match else file_name,
        thin=None if thin is None or kind != "flat" else thin.strip() == "true",
        disk_mode=(backing.findtext(f"{VIM25}diskMode") if backing is not None else None) or "",
        backing=kind,
        controller_key=int_text(disk, "controllerKey"),
        unit_number=int_text(disk, "unitNumber"),
    )
