"""What a full-VM restore needs from vCenter beyond reads and writes of disks: a new VM recreated from
a captured configuration (vm_config), create_vm_from_config. (Disk layouts, which an overwrite
restore compares, are in layouts.py.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from .connection import Connection
from .errors import AlreadyExists, ConfigNotRestorable, NotFound, VCenterError
from .layouts import BUS_FAMILIES, layout_from_config
from .names import check_vm_name, unescape_name
from .soap import (
    PAGE_SIZE,
    REPORT_MISSING,
    RawObject,
    objects_with_ancestors,
    one_object,
    property_specs,
    read_one,
    retrieve_raw,
    traversal,
)
from .tasks import TaskFailed
from .vmconfig import CONFIG_SCHEMA, NIC_TYPES, vm_config
from .vmdk import read_vmdk_descriptor
from .vmomi import build
from .vms import create_vm_task, destroy_vm


@dataclass(frozen=True)
class CreatedDisk:
    """A disk of a VM made by create_vm_from_config, and the file a restore writes its bytes to."""

    source_key: int  # the disk's key in the configuration it was made from (the point's disk)
    key: int  # its key in the new VM
    label: str  # "Hard disk 2", as the new VM names it
    capacity_bytes: int
    datastore: str  # the datastore's name
    flat_path: str  # "web-01/web-01_1-flat.vmdk", relative to the datastore (DatastoreFile's path)

    @property
    def flat_file(self) -> str:
        """ "[ds1] web-01/web-01_1-flat.vmdk" """
        return f"[{self.datastore}] {self.flat_path}"


@dataclass(frozen=True)
class VmCreated:
    moref: str
    instance_uuid: str  # a new one, never the configuration's
    name: str  # as shown (unescaped), the name asked for
    datacenter: str  # as vCenter stores it (escaped): the datacenter argument of DatastoreFile
    disks: tuple[CreatedDisk, ...]  # in the configuration's order (by source key)
    warnings: tuple[str, ...]  # what could not be recreated as captured, one sentence each


_IDE_KEYS = {0: 200, 1: 201}  # every VM has these two IDE controllers, made with it
_DISK_MODES = frozenset(
    {"persistent", "nonpersistent", "undoable", "independent_persistent", "independent_nonpersistent", "append"}
)
# extraConfig that names the original VM rather than describing its hardware: not carried over.
_IDENTITY_EXTRA_CONFIG = re.compile(r"^(uuid\.|vc\.uuid$|vmci0\.id$)", re.IGNORECASE)


# ---- a new VM from a captured configuration ----


def create_vm_from_config(
    conn: Connection,
    config: dict[str, Any],
    *,
    name: str,
    folder_moref: str,
    pool_moref: str,
    datastore_name: str,
    host_moref: str | None = None,
) -> VmCreated:
    """A new, powered-off VM with the hardware of a captured configuration (vm_config), for its disks'
    bytes to be written to the returned flat files (DatastoreFile.write).

    Recreated: guest OS, CPUs and cores per socket, memory, firmware, hardware version, annotation,
    extraConfig (but the original's identity: uuid.*, vc.uuid, vmci0.id); storage controllers of the
    same types and bus numbers (the two IDE controllers every VM has are used as they are); each disk
    at the same controller and unit, of the same capacity, as a thin flat disk in the VM's directory
    on datastore_name (disk mode kept); network adapters of the same types, on the network of the same
    name when the cluster (or host_moref) has one (or the network chosen with with_nic_networks, or
    disconnected), with new generated MAC addresses; CD-ROM drives at
    their places, empty (a client device, not connected). The VM gets a new instance UUID (and BIOS
    UUID), never the original's.

    What cannot be recreated as captured is said in VmCreated.warnings: an adapter whose network does
    not exist here is put on another network of the cluster, disconnected (or left out when there is
    none); an SR-IOV adapter becomes a VMXNET 3 one; a manual MAC address is not reused; raw device
    mappings become virtual disks.

    Refused before anything is created: InvalidName (names.check_vm_name; the name is stored escaped
    so it reads back as given), AlreadyExists (a VM of that name in the folder), NotFound (the folder,
    pool, host or datastore does not exist, or the datastore is not available to the pool's cluster
    or the host), ConfigNotRestorable (a newer schema, an unknown controller type, a disk whose
    controller the configuration does not describe). If vCenter fails after the VM was created, the VM
    is deleted again before the error is raised.
    """
    stored_name = check_vm_name(name)
    _check_config(config)
    where = conn.endpoint.where
    place = _placement(conn, folder_moref, pool_moref, host_moref)
    name_taken = f"{where}: a VM named {name!r} already exists in the folder {place.folder_name!r}"
    if stored_name in place.vm_names:
        raise AlreadyExists(name_taken)
    if datastore_name not in place.datastores:
        raise NotFound(
            f"{where}: there is no datastore {datastore_name!r} available to {place.compute_name!r} "
            f"(available: {', '.join(sorted(place.datastores)) or 'none'})"
        )
    warnings: list[str] = []
    instance_uuid = _new_instance_uuid(config)
    spec = _config_spec(config, stored_name, instance_uuid, datastore_name)
    spec.deviceChange = _device_specs(conn, config, place, warnings)
    try:
        moref = create_vm_task(conn, spec, folder_moref, pool_moref, host_moref)
    except TaskFailed as failure:
        if failure.fault_name in ("DuplicateName", "AlreadyExists"):
            raise AlreadyExists(name_taken) from None
        raise
    try:
        created = vm_config(conn, moref)
        original = (config.get("instance_uuid") or "").lower()
        if original and (created["instance_uuid"] or "").lower() == original:
            raise VCenterError(f"{where}: the new VM {moref} got the original's instance UUID")
        disks = _created_disks(conn, config, created)
    except BaseException:
        with suppress(VCenterError):
            destroy_vm(conn, moref)
        raise
    return VmCreated(
        moref=moref,
        instance_uuid=created["instance_uuid"] or instance_uuid,
        name=created["name"],
        datacenter=created["datacenter"] or place.datacenter,
        disks=disks,
        warnings=tuple(warnings),
    )


def _new_instance_uuid(config: dict[str, Any]) -> str:
    """A new instance UUID, never the configuration's."""
    instance_uuid = str(uuid.uuid4())
    while instance_uuid.lower() == (config.get("instance_uuid") or "").lower():  # never, in practice
        instance_uuid = str(uuid.uuid4())
    return instance_uuid


# ConfigSpec fields set from the configuration when it has a value: spec field -> vm_config key.
_OPTIONAL_SPEC_FIELDS = {
    "numCoresPerSocket": "cores_per_socket",
    "firmware": "firmware",
    "version": "hardware_version",
    "annotation": "annotation",
}


def _config_spec(
    config: dict[str, Any], stored_name: str, instance_uuid: str, datastore_name: str
) -> vim.vm.ConfigSpec:
    """The new VM's ConfigSpec but its devices: the configuration's hardware, a new identity, files on
    datastore_name."""
    spec = build(
        vim.vm.ConfigSpec,
        name=stored_name,
        guestId=config["guest_id"],
        numCPUs=config["num_cpu"],
        memoryMB=config["memory_mb"],
        instanceUuid=instance_uuid,
        files=build(vim.vm.FileInfo, vmPathName=f"[{datastore_name}]"),
        **{field: config[key] for field, key in _OPTIONAL_SPEC_FIELDS.items() if config.get(key)},
    )
    extra = {k: v for k, v in (config.get("extra_config") or {}).items() if not _IDENTITY_EXTRA_CONFIG.search(k)}
    if extra:
        spec.extraConfig = [build(vim.option.OptionValue, key=k, value=v) for k, v in extra.items()]
    return spec


def _check_config(config: dict[str, Any]) -> None:
    schema = config.get("schema")
    if not isinstance(schema, int) or schema > CONFIG_SCHEMA:
        raise ConfigNotRestorable(
            f"the VM configuration has schema {schema!r}; this program reads schema {CONFIG_SCHEMA} and older"
        )
    missing = [key for key in ("guest_id", "num_cpu", "memory_mb") if not config.get(key)]
    if missing:
        raise ConfigNotRestorable(f"the VM configuration has no {', '.join(missing)}")
    controllers = {c["key"]: c for c in config.get("controllers") or []}
    for controller in controllers.values():
        kind = controller["type"]
        if kind not in BUS_FAMILIES or getattr(vim.vm.device, kind, None) is None:
            raise ConfigNotRestorable(f"{controller['label'] or kind}: controllers of type {kind} cannot be created")
        if kind == "VirtualIDEController" and controller["bus_number"] not in _IDE_KEYS:
            raise ConfigNotRestorable(f"{controller['label']}: a VM has IDE buses 0 and 1 only")
    for disk in config.get("disks") or []:
        if disk["controller_key"] not in controllers or disk["unit_number"] is None:
            raise ConfigNotRestorable(
                f"{disk['label']}: its controller ({disk['controller_key']}) is not in the VM configuration"
            )
        if not disk["capacity_bytes"] or disk["capacity_bytes"] <= 0:
            raise ConfigNotRestorable(f"{disk['label']}: the VM configuration gives it no capacity")


@dataclass
class _Placement:
    """Where the new VM goes, as read from vCenter in one round trip."""

    folder_name: str  # as shown
    datacenter: str  # as stored (escaped)
    vm_names: set[str]  # of the VMs in the folder, as stored (escaped)
    compute_name: str  # the cluster (or host) the VM runs on, as shown
    datastores: set[str]  # names of the datastores it can use
    networks: dict[str, tuple[str, str, str]]  # name (as shown) -> (type, moref, name as stored)
    portgroups: dict[str, tuple[str, str]]  # distributed port group moref -> (key, switch moref)


def _placement(conn: Connection, folder_moref: str, pool_moref: str, host_moref: str | None) -> _Placement:
    where = conn.endpoint.where
    spec = property_specs(_PLACEMENT_PROPERTIES) + objects_with_ancestors("Folder", [folder_moref], also=_CHILDREN)
    spec += one_object("ResourcePool", pool_moref, _POOL_OWNER)
    if host_moref:
        spec += one_object("HostSystem", host_moref, _HOST_ACCESS)
    objects = _PlacementObjects(where)
    for raw in retrieve_raw(conn, spec + REPORT_MISSING, PAGE_SIZE):
        objects.add(raw)

    folder = objects.get(folder_moref, "folder")
    if "VirtualMachine" not in folder["childType"]:
        raise VCenterError(f"{where}: {unescape_name(folder['name'])!r} ({folder_moref}) is not a VM folder")
    pool = objects.get(pool_moref, "resource pool")
    compute = access = objects.get(pool["owner"], "cluster")  # access: whose networks and datastores
    if host_moref:
        access = objects.get(host_moref, "host")
        if access["parent"] != pool["owner"]:
            raise VCenterError(
                f"{where}: host {unescape_name(access['name'])!r} is not in {unescape_name(compute['name'])!r}, "
                "the resource pool's cluster"
            )
    networks, portgroups = objects.networks(access["network"])
    return _Placement(
        folder_name=unescape_name(folder["name"]),
        datacenter=objects.datacenter_above(folder_moref),
        vm_names=objects.vm_names_in(folder_moref),
        compute_name=unescape_name(access["name"]),
        datastores=objects.names(access["datastore"]),
        networks=networks,
        portgroups=portgroups,
    )


class _PlacementObjects:
    """The objects read for a placement, by moref: (type, values of _PLACEMENT_PROPERTIES)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.by_moref: dict[str, tuple[str, dict[str, Any]]] = {}

    def add(self, raw: RawObject) -> None:
        if "name" not in raw.props and "key" not in raw.props:
            return  # missing (reported so) or unreadable
        values: dict[str, Any] = {"name": raw.text("name") or ""}
        for prop in ("parent", "owner"):
            ref = raw.ref(prop)
            values[prop] = ref.value if ref is not None else None
        for prop in ("childType", "network", "datastore"):
            values[prop] = raw.strings(prop)
        values["key"] = raw.text("key")
        values["switch"] = raw.text("config.distributedVirtualSwitch")
        self.by_moref[raw.moref] = (raw.type, values)

    def get(self, moref: str | None, what: str) -> dict[str, Any]:
        """The values of an object that must exist (NotFound otherwise); what names it ("folder")."""
        if moref is None or moref not in self.by_moref:
            raise NotFound(f"{self.where}: {what} {moref} does not exist (any more)")
        return self.by_moref[moref][1]

    def datacenter_above(self, moref: str) -> str:
        """The name (as stored) of the datacenter above an object, "" when it was not read."""
        above = self.by_moref[moref][1]["parent"]
        while above in self.by_moref:
            kind, values = self.by_moref[above]
            if kind == "Datacenter":
                return str(values["name"])
            above = values["parent"]
        return ""

    def names(self, morefs: list[str]) -> set[str]:
        """The names (as shown) of these objects, those read."""
        return {unescape_name(self.by_moref[m][1]["name"]) for m in morefs if m in self.by_moref}

    def vm_names_in(self, folder_moref: str) -> set[str]:
        """Names (as stored) of the VMs in a folder."""
        return {
            values["name"]
            for kind, values in self.by_moref.values()
            if kind == "VirtualMachine" and values["parent"] == folder_moref
        }

    def networks(self, morefs: list[str]) -> tuple[dict[str, tuple[str, str, str]], dict[str, tuple[str, str]]]:
        """_Placement.networks and .portgroups, of these networks (those read)."""
        networks: dict[str, tuple[str, str, str]] = {}
        portgroups: dict[str, tuple[str, str]] = {}
        for moref in morefs:
            if moref in self.by_moref:
                kind, values = self.by_moref[moref]
                networks.setdefault(unescape_name(values["name"]), (kind, moref, values["name"]))
                if kind == "DistributedVirtualPortgroup" and values["key"] and values["switch"]:
                    portgroups[moref] = (values["key"], values["switch"])
        return networks, portgroups


_PLACEMENT_PROPERTIES: dict[str, Sequence[str]] = {
    "Folder": ("name", "parent", "childType"),
    "Datacenter": ("name", "parent"),
    "VirtualMachine": ("name", "parent"),
    "ResourcePool": ("name", "owner"),  # vApps too
    "ComputeResource": ("name", "network", "datastore"),  # clusters too
    "HostSystem": ("name", "parent", "network", "datastore"),
    "Network": ("name",),  # distributed port groups too
    "DistributedVirtualPortgroup": ("key", "config.distributedVirtualSwitch"),
    "Datastore": ("name",),
}


_CHILDREN = traversal("children", "Folder", "childEntity")
_POOL_OWNER = traversal(
    "owner",
    "ResourcePool",
    "owner",
    traversal("ownerNetworks", "ComputeResource", "network")
    + traversal("ownerDatastores", "ComputeResource", "datastore"),
)
_HOST_ACCESS = traversal("hostNetworks", "HostSystem", "network") + traversal(
    "hostDatastores", "HostSystem", "datastore"
)


def _device_specs(
    conn: Connection, config: dict[str, Any], place: _Placement, warnings: list[str]
) -> list[vim.vm.device.VirtualDeviceSpec]:
    """The devices to add: controllers, disks, network adapters, CD-ROM drives (temporary negative
    keys, as vCenter expects for new devices; disks and drives refer to their controller's)."""
    device, specs = vim.vm.device, []
    controller_keys: dict[int, int] = {}  # the configuration's key -> the key in the new VM's spec
    for i, controller in enumerate(config.get("controllers") or []):
        kind = controller["type"]
        if kind == "VirtualIDEController":
            controller_keys[controller["key"]] = _IDE_KEYS[controller["bus_number"]]
            continue
        controller_class = getattr(device, kind)  # checked by _check_config
        fields = {
            "key": -100 - i,
            "busNumber": controller["bus_number"] or 0,
            "deviceInfo": _label(controller["label"]),
        }
        if issubclass(controller_class, device.VirtualSCSIController):
            fields["sharedBus"] = controller["sharing"] or "noSharing"
        made: vim.vm.device.VirtualController = build(controller_class, **fields)
        specs.append(build(device.VirtualDeviceSpec, operation="add", device=made))
        controller_keys[controller["key"]] = made.key

    for i, disk in enumerate(config.get("disks") or []):
        if disk["backing"] not in ("flat", "sparse"):
            warnings.append(
                f"{disk['label']} was a {_BACKING_WORDS.get(disk['backing'], disk['backing'])}; it is "
                "recreated as a thin virtual disk"
            )
        capacity = disk["capacity_bytes"]
        mode = disk["disk_mode"] if disk["disk_mode"] in _DISK_MODES else "persistent"
        new = build(
            device.VirtualDisk,
            key=-2000 - i,
            deviceInfo=_label(disk["label"]),
            controllerKey=controller_keys[disk["controller_key"]],
            unitNumber=disk["unit_number"],
            capacityInKB=-(-capacity // 1024),
            capacityInBytes=capacity,
            # No file name: vCenter names the disk after the VM, in the VM's directory.
            backing=build(device.VirtualDisk.FlatVer2BackingInfo, diskMode=mode, thinProvisioned=True, fileName=""),
        )
        specs.append(build(device.VirtualDeviceSpec, operation="add", fileOperation="create", device=new))

    for i, nic in enumerate(config.get("nics") or []):
        if (new_nic := _nic_device(conn, nic, i, place, warnings)) is not None:
            specs.append(build(device.VirtualDeviceSpec, operation="add", device=new_nic))

    for i, cdrom in enumerate(config.get("cdroms") or []):
        label = cdrom["label"] or f"CD/DVD drive {i + 1}"
        controller_key = controller_keys.get(cdrom["controller_key"])
        if controller_key is None or cdrom["unit_number"] is None:
            warnings.append(f"{label} is left out: its controller is not in the VM configuration")
            continue
        drive = build(
            device.VirtualCdrom,
            key=-3000 - i,
            deviceInfo=_label(cdrom["label"]),
            controllerKey=controller_key,
            unitNumber=cdrom["unit_number"],
            backing=build(device.VirtualCdrom.RemotePassthroughBackingInfo, deviceName="", exclusive=False),
            connectable=build(
                device.VirtualDevice.ConnectInfo, startConnected=False, connected=False, allowGuestControl=True
            ),
        )
        specs.append(build(device.VirtualDeviceSpec, operation="add", device=drive))
    return specs


def _label(label: str | None) -> vim.Description | None:
    """The captured label, which vCenter replaces by its own ("Hard disk 2"); the simulator keeps it."""
    return build(vim.Description, label=label, summary="") if label else None


_BACKING_WORDS = {"rdm_physical": "raw device mapping (physical)", "rdm_virtual": "raw device mapping (virtual)"}


def _nic_device(
    conn: Connection, nic: dict[str, Any], index: int, place: _Placement, warnings: list[str]
) -> vim.vm.device.VirtualEthernetCard | None:
    device = vim.vm.device
    label = nic["label"] or f"Network adapter {index + 1}"
    kind = nic["type"]
    if kind not in NIC_TYPES or kind == "VirtualSriovEthernetCard" or getattr(device, kind, None) is None:
        warnings.append(f"{label} was a {kind or 'network'} adapter; it is recreated as a VMXNET 3 adapter")
        kind = "VirtualVmxnet3"
    network = nic["network"] or ""
    connected = nic["start_connected"] is not False
    found = place.networks.get(network)
    if RESTORE_NETWORK in nic:  # chosen for this restore (with_nic_networks)
        network, found, connected = _chosen_network(nic, label, place, found)
    if found is None:
        if not place.networks:
            warnings.append(f"{label} is left out: no network named {network!r}, nor any other, is available here")
            return None
        network = min(place.networks)
        found = place.networks[network]
        if connected:  # a disconnected adapter asked for needs no warning
            warnings.append(
                f"{label}: no network named {nic['network']!r} is available here; the adapter is on "
                f"{network!r}, disconnected"
            )
        connected = False
    if nic["address_type"] == "manual" and nic["mac_address"]:
        warnings.append(f"{label} had the manual MAC address {nic['mac_address']}; it gets a new generated one")
    kind_of_network, moref, stored_network_name = found
    backing: vim.vm.device.VirtualDevice.BackingInfo
    if kind_of_network == "DistributedVirtualPortgroup" and moref in place.portgroups:
        key, switch = place.portgroups[moref]
        switch_uuid = read_one(conn, conn.ref(vim.DistributedVirtualSwitch, switch), ["uuid"]).get("uuid")
        port = build(vim.dvs.PortConnection, portgroupKey=key, switchUuid=switch_uuid)
        backing = build(device.VirtualEthernetCard.DistributedVirtualPortBackingInfo, port=port)
    else:
        backing = build(
            device.VirtualEthernetCard.NetworkBackingInfo,
            deviceName=stored_network_name,
            network=conn.ref(vim.Network, moref),
            useAutoDetect=False,
        )
    card: vim.vm.device.VirtualEthernetCard = build(
        getattr(device, kind),
        key=-4000 - index,
        deviceInfo=_label(nic["label"]),
        backing=backing,
        addressType="generated",
        connectable=build(
            device.VirtualDevice.ConnectInfo, startConnected=connected, connected=False, allowGuestControl=True
        ),
    )
    return card


RESTORE_NETWORK = "restore_network"  # a NIC's network chosen for a restore: a moref, or None (disconnected)


def with_nic_networks(config: dict[str, Any], networks: Mapping[int, str | None]) -> dict[str, Any]:
    """The configuration with the networks chosen for its adapters (by NIC key): a network's moref,
    or None to leave that adapter disconnected. Adapters not named keep the captured network."""
    nics = [
        {**nic, RESTORE_NETWORK: networks[nic["key"]]} if nic.get("key") in networks else nic
        for nic in config.get("nics") or []
    ]
    return {**config, "nics": nics}


def _chosen_network(
    nic: dict[str, Any], label: str, place: _Placement, captured: tuple[str, str, str] | None
) -> tuple[str, tuple[str, str, str] | None, bool]:
    """(network name, its place.networks entry, connected) for an adapter whose network was chosen:
    a disconnected adapter stays on its captured network when it is here (on some network otherwise:
    vSphere wants a backing); a chosen network must be available to the cluster or host."""
    moref = nic[RESTORE_NETWORK]
    if moref is None:
        return nic["network"] or "", captured, False
    for name, found in place.networks.items():
        if found[1] == moref:
            return name, found, nic["start_connected"] is not False
    raise NotFound(
        f"{label}: the network {moref} is not available to {place.compute_name!r} "
        f"(available: {', '.join(sorted(place.networks)) or 'none'})"
    )


def _created_disks(conn: Connection, config: dict[str, Any], created: dict[str, Any]) -> tuple[CreatedDisk, ...]:
    """Each disk of the configuration, found in the new VM at the same place, with its flat file (read
    from its descriptor: the file a restore writes)."""
    where = conn.endpoint.where
    made = {
        (place.controller_type, place.bus_number, place.unit_number): place for place in layout_from_config(created)
    }
    by_key = {disk["key"]: disk for disk in created["disks"]}
    out = []
    for wanted in layout_from_config(config):
        place = made.get((wanted.controller_type, wanted.bus_number, wanted.unit_number))
        if place is None:
            raise VCenterError(f"{where}: vCenter did not create {wanted.label} at {wanted.position}")
        disk = by_key[place.key]
        descriptor = read_vmdk_descriptor(conn, created["datacenter"] or "", disk["datastore"], disk["path"])
        extents = [e for e in descriptor.extents if e.kind == "flat" and e.path]
        if not descriptor.is_flat or len(extents) != 1:
            raise VCenterError(
                f"[{disk['datastore']}] {disk['path']}: the new disk is not one flat file ({descriptor.create_type}); "
                "it cannot be written through the datastore API"
            )
        out.append(
            CreatedDisk(
                source_key=wanted.key,
                key=place.key,
                label=place.label,
                capacity_bytes=place.capacity_bytes,
                datastore=disk["datastore"],
                flat_path=extents[0].path or "",
            )
        )
    return tuple(out)
