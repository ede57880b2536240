"""What a full-VM restore needs from vCenter beyond reads and writes of disks: a new VM recreated from
a captured configuration (vm_config), and disk layouts, to refuse overwriting a VM whose disks
changed since the point was taken."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from pyVmomi import vim

from .connection import Connection, _translated
from .errors import AlreadyExists, ConfigNotRestorable, NotFound, VCenterError
from .names import check_vm_name, unescape_name
from .soap import _REPORT_MISSING, PAGE_SIZE, _objects_with_ancestors, _property_specs, _read_one, _retrieve_raw
from .tasks import _TaskFailed, _wait
from .vmconfig import _NIC_TYPES, CONFIG_SCHEMA, vm_config
from .vmdk import read_vmdk_descriptor
from .vms import destroy_vm

GiB = 1024 * 1024 * 1024


@dataclass(frozen=True)
class CreatedDisk:
    """A disk of a VM made by create_vm_from_config, and the file a restore writes its bytes to."""

    source_key: int  # the disk's key in the configuration it was made from (the point's disk)
    key: int  # its key in the new VM
    label: str  # "Hard disk 2", as the new VM names it
    capacity_bytes: int
    datastore: str  # the datastore's name
    flat_path: str  # "web-01/web-01_1-flat.vmdk", relative to the datastore (write_datastore_file's path)

    @property
    def flat_file(self) -> str:
        """ "[ds1] web-01/web-01_1-flat.vmdk" """
        return f"[{self.datastore}] {self.flat_path}"


@dataclass(frozen=True)
class VmCreated:
    moref: str
    instance_uuid: str  # a new one, never the configuration's
    name: str  # as shown (unescaped), the name asked for
    datacenter: str  # as vCenter stores it (escaped): the datacenter argument of write_datastore_file
    disks: tuple[CreatedDisk, ...]  # in the configuration's order (by source key)
    warnings: tuple[str, ...]  # what could not be recreated as captured, one sentence each


@dataclass(frozen=True)
class DiskPlace:
    """Where a disk sits and how big it is: what must not have changed for an overwrite restore."""

    key: int
    label: str  # "Hard disk 2"
    controller_type: str  # "VirtualLsiLogicSASController", "" when the controller is unknown
    bus_number: int | None  # of the controller
    unit_number: int | None
    capacity_bytes: int
    file_name: str  # "[ds1] web-01/web-01_1.vmdk", the descriptor
    flat_file: str  # "[ds1] web-01/web-01_1-flat.vmdk": by vSphere's naming, beside the descriptor

    @property
    def position(self) -> str:
        """ "SCSI 0:1", as the vSphere Client writes it."""
        bus = "?" if self.bus_number is None else self.bus_number
        unit = "?" if self.unit_number is None else self.unit_number
        return f"{_BUS_FAMILIES.get(self.controller_type, 'controller')} {bus}:{unit}"


# Storage controllers: the bus family a guest sees, and the names the vSphere Client shows.
_BUS_FAMILIES = {
    "VirtualLsiLogicSASController": "SCSI",
    "VirtualLsiLogicController": "SCSI",
    "ParaVirtualSCSIController": "SCSI",
    "VirtualBusLogicController": "SCSI",
    "VirtualAHCIController": "SATA",
    "VirtualNVMEController": "NVMe",
    "VirtualIDEController": "IDE",
}
_CONTROLLER_NAMES = {
    "VirtualLsiLogicSASController": "LSI Logic SAS",
    "VirtualLsiLogicController": "LSI Logic Parallel",
    "ParaVirtualSCSIController": "VMware Paravirtual",
    "VirtualBusLogicController": "BusLogic Parallel",
    "VirtualAHCIController": "SATA (AHCI)",
    "VirtualNVMEController": "NVMe",
    "VirtualIDEController": "IDE",
}
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
    bytes to be written to the returned flat files (write_datastore_file).

    Recreated: guest OS, CPUs and cores per socket, memory, firmware, hardware version, annotation,
    extraConfig (but the original's identity: uuid.*, vc.uuid, vmci0.id); storage controllers of the
    same types and bus numbers (the two IDE controllers every VM has are used as they are); each disk
    at the same controller and unit, of the same capacity, as a thin flat disk in the VM's directory
    on datastore_name (disk mode kept); network adapters of the same types, on the network of the same
    name when the cluster (or host_moref) has one, with new generated MAC addresses; CD-ROM drives at
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
    if stored_name in place.vm_names:
        raise AlreadyExists(f"{where}: a VM named {name!r} already exists in the folder {place.folder_name!r}")
    if datastore_name not in place.datastores:
        raise NotFound(
            f"{where}: there is no datastore {datastore_name!r} available to {place.compute_name!r} "
            f"(available: {', '.join(sorted(place.datastores)) or 'none'})"
        )
    warnings: list[str] = []
    stub = conn.si._stub
    instance_uuid = str(uuid.uuid4())
    while instance_uuid.lower() == (config.get("instance_uuid") or "").lower():  # never, in practice
        instance_uuid = str(uuid.uuid4())
    spec = vim.vm.ConfigSpec(
        name=stored_name,
        guestId=config["guest_id"],
        numCPUs=config["num_cpu"],
        memoryMB=config["memory_mb"],
        instanceUuid=instance_uuid,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore_name}]"),
        deviceChange=_device_specs(conn, config, place, warnings),
    )
    if config.get("cores_per_socket"):
        spec.numCoresPerSocket = config["cores_per_socket"]
    if config.get("firmware"):
        spec.firmware = config["firmware"]
    if config.get("hardware_version"):
        spec.version = config["hardware_version"]
    if config.get("annotation"):
        spec.annotation = config["annotation"]
    extra = {k: v for k, v in (config.get("extra_config") or {}).items() if not _IDENTITY_EXTRA_CONFIG.search(k)}
    if extra:
        spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in extra.items()]

    folder = vim.Folder(folder_moref, stub)
    host = vim.HostSystem(host_moref, stub) if host_moref else None
    with _translated(conn.endpoint):
        task = folder.CreateVM_Task(config=spec, pool=vim.ResourcePool(pool_moref, stub), host=host)
    try:
        moref = _wait(conn, task)._moId
    except _TaskFailed as failure:
        if failure.fault_name in ("DuplicateName", "AlreadyExists"):
            raise AlreadyExists(
                f"{where}: a VM named {name!r} already exists in the folder {place.folder_name!r}"
            ) from None
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
        if kind not in _BUS_FAMILIES or getattr(vim.vm.device, kind, None) is None:
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
    spec = _property_specs(_PLACEMENT_PROPERTIES) + _objects_with_ancestors("Folder", [folder_moref], also=_CHILDREN)
    spec += _object_and("ResourcePool", pool_moref, _POOL_OWNER)
    if host_moref:
        spec += _object_and("HostSystem", host_moref, _HOST_ACCESS)
    objects: dict[str, tuple[str, dict[str, Any]]] = {}
    for raw in _retrieve_raw(conn, spec + _REPORT_MISSING, PAGE_SIZE):
        if "name" not in raw.props and "key" not in raw.props:
            continue  # missing (reported so) or unreadable
        values: dict[str, Any] = {"name": raw.text("name") or ""}
        for prop in ("parent", "owner"):
            ref = raw.ref(prop)
            values[prop] = ref.value if ref is not None else None
        for prop in ("childType", "network", "datastore"):
            values[prop] = raw.strings(prop)
        values["key"] = raw.text("key")
        values["switch"] = raw.text("config.distributedVirtualSwitch")
        objects[raw.moref] = (raw.type, values)

    def get(moref: str | None, what: str) -> dict[str, Any]:
        if moref is None or moref not in objects:
            raise NotFound(f"{where}: {what} {moref} does not exist (any more)")
        return objects[moref][1]

    folder = get(folder_moref, "folder")
    if "VirtualMachine" not in folder["childType"]:
        raise VCenterError(f"{where}: {unescape_name(folder['name'])!r} ({folder_moref}) is not a VM folder")
    datacenter, above = "", folder["parent"]
    while above in objects:
        kind, values = objects[above]
        if kind == "Datacenter":
            datacenter = values["name"]
            break
        above = values["parent"]
    pool = get(pool_moref, "resource pool")
    compute = get(pool["owner"], "cluster")
    access = compute
    if host_moref:
        access = get(host_moref, "host")
        if access["parent"] != pool["owner"]:
            raise VCenterError(
                f"{where}: host {unescape_name(access['name'])!r} is not in {unescape_name(compute['name'])!r}, "
                "the resource pool's cluster"
            )
    networks: dict[str, tuple[str, str, str]] = {}
    portgroups: dict[str, tuple[str, str]] = {}
    for moref in access["network"]:
        if moref in objects:
            kind, values = objects[moref]
            networks.setdefault(unescape_name(values["name"]), (kind, moref, values["name"]))
            if kind == "DistributedVirtualPortgroup" and values["key"] and values["switch"]:
                portgroups[moref] = (values["key"], values["switch"])
    return _Placement(
        folder_name=unescape_name(folder["name"]),
        datacenter=datacenter,
        vm_names={
            values["name"]
            for kind, values in objects.values()
            if kind == "VirtualMachine" and values["parent"] == folder_moref
        },
        compute_name=unescape_name((access if host_moref else compute)["name"]),
        datastores={unescape_name(objects[m][1]["name"]) for m in access["datastore"] if m in objects},
        networks=networks,
        portgroups=portgroups,
    )


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


def _traverse(name: str, kind: str, path: str, inner: str = "") -> str:
    return (
        f'<selectSet xsi:type="TraversalSpec"><name>{name}</name><type>{kind}</type><path>{path}</path>'
        f"<skip>false</skip>{inner}</selectSet>"
    )


def _object_and(kind: str, moref: str, select: str) -> str:
    """One object and those select reaches from it."""
    return f'<objectSet><obj type="{kind}">{xml_escape(moref)}</obj><skip>false</skip>{select}</objectSet>'


_CHILDREN = _traverse("children", "Folder", "childEntity")
_POOL_OWNER = _traverse(
    "owner",
    "ResourcePool",
    "owner",
    _traverse("ownerNetworks", "ComputeResource", "network")
    + _traverse("ownerDatastores", "ComputeResource", "datastore"),
)
_HOST_ACCESS = _traverse("hostNetworks", "HostSystem", "network") + _traverse(
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
        new = getattr(device, kind)(
            key=-100 - i, busNumber=controller["bus_number"] or 0, deviceInfo=_label(controller["label"])
        )
        if isinstance(new, device.VirtualSCSIController):
            new.sharedBus = controller["sharing"] or "noSharing"
        specs.append(device.VirtualDeviceSpec(operation="add", device=new))
        controller_keys[controller["key"]] = new.key

    for i, disk in enumerate(config.get("disks") or []):
        if disk["backing"] not in ("flat", "sparse"):
            warnings.append(
                f"{disk['label']} was a {_BACKING_WORDS.get(disk['backing'], disk['backing'])}; it is "
                "recreated as a thin virtual disk"
            )
        capacity = disk["capacity_bytes"]
        mode = disk["disk_mode"] if disk["disk_mode"] in _DISK_MODES else "persistent"
        new = device.VirtualDisk(
            key=-2000 - i,
            deviceInfo=_label(disk["label"]),
            controllerKey=controller_keys[disk["controller_key"]],
            unitNumber=disk["unit_number"],
            capacityInKB=-(-capacity // 1024),
            capacityInBytes=capacity,
            # No file name: vCenter names the disk after the VM, in the VM's directory.
            backing=device.VirtualDisk.FlatVer2BackingInfo(diskMode=mode, thinProvisioned=True, fileName=""),
        )
        specs.append(device.VirtualDeviceSpec(operation="add", fileOperation="create", device=new))

    for i, nic in enumerate(config.get("nics") or []):
        if (new_nic := _nic_device(conn, nic, i, place, warnings)) is not None:
            specs.append(device.VirtualDeviceSpec(operation="add", device=new_nic))

    for i, cdrom in enumerate(config.get("cdroms") or []):
        label = cdrom["label"] or f"CD/DVD drive {i + 1}"
        controller_key = controller_keys.get(cdrom["controller_key"])
        if controller_key is None or cdrom["unit_number"] is None:
            warnings.append(f"{label} is left out: its controller is not in the VM configuration")
            continue
        new = device.VirtualCdrom(
            key=-3000 - i,
            deviceInfo=_label(cdrom["label"]),
            controllerKey=controller_key,
            unitNumber=cdrom["unit_number"],
            backing=device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False),
            connectable=device.VirtualDevice.ConnectInfo(startConnected=False, connected=False, allowGuestControl=True),
        )
        specs.append(device.VirtualDeviceSpec(operation="add", device=new))
    return specs


def _label(label: str | None) -> vim.Description | None:
    """The captured label, which vCenter replaces by its own ("Hard disk 2"); the simulator keeps it."""
    return vim.Description(label=label, summary="") if label else None


_BACKING_WORDS = {"rdm_physical": "raw device mapping (physical)", "rdm_virtual": "raw device mapping (virtual)"}


def _nic_device(
    conn: Connection, nic: dict[str, Any], index: int, place: _Placement, warnings: list[str]
) -> vim.vm.device.VirtualEthernetCard | None:
    device = vim.vm.device
    label = nic["label"] or f"Network adapter {index + 1}"
    kind = nic["type"]
    if kind not in _NIC_TYPES or kind == "VirtualSriovEthernetCard" or getattr(device, kind, None) is None:
        warnings.append(f"{label} was a {kind or 'network'} adapter; it is recreated as a VMXNET 3 adapter")
        kind = "VirtualVmxnet3"
    network = nic["network"] or ""
    connected = nic["start_connected"] is not False
    found = place.networks.get(network)
    if found is None:
        if not place.networks:
            warnings.append(f"{label} is left out: no network named {network!r}, nor any other, is available here")
            return None
        network = min(place.networks)
        found = place.networks[network]
        connected = False
        warnings.append(
            f"{label}: no network named {nic['network']!r} is available here; the adapter is on {network!r}, "
            "disconnected"
        )
    if nic["address_type"] == "manual" and nic["mac_address"]:
        warnings.append(f"{label} had the manual MAC address {nic['mac_address']}; it gets a new generated one")
    kind_of_network, moref, stored_network_name = found
    stub = conn.si._stub
    backing: vim.vm.device.VirtualDevice.BackingInfo
    if kind_of_network == "DistributedVirtualPortgroup" and moref in place.portgroups:
        key, switch = place.portgroups[moref]
        switch_uuid = _read_one(conn, vim.DistributedVirtualSwitch(switch, stub), ["uuid"]).get("uuid")
        port = vim.dvs.PortConnection(portgroupKey=key, switchUuid=switch_uuid)
        backing = device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
    else:
        backing = device.VirtualEthernetCard.NetworkBackingInfo(
            deviceName=stored_network_name, network=vim.Network(moref, stub), useAutoDetect=False
        )
    return getattr(device, kind)(
        key=-4000 - index,
        deviceInfo=_label(nic["label"]),
        backing=backing,
        addressType="generated",
        connectable=device.VirtualDevice.ConnectInfo(startConnected=connected, connected=False, allowGuestControl=True),
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


# ---- disk layouts ----


def disk_layout(conn: Connection, vm_moref: str) -> list[DiskPlace]:
    """A VM's disks as they are now (one round trip), to compare with layout_from_config(the point's
    configuration) through layout_differences. NotFound when the VM does not exist."""
    return layout_from_config(vm_config(conn, vm_moref))


def layout_from_config(config: dict[str, Any]) -> list[DiskPlace]:
    """The disks of a configuration (vm_config), sorted by controller type, bus and unit."""
    controllers = {c["key"]: c for c in config.get("controllers") or []}
    places = []
    for disk in config.get("disks") or []:
        controller = controllers.get(disk["controller_key"]) or {}
        file_name = disk["file_name"] or ""
        places.append(
            DiskPlace(
                key=disk["key"],
                label=disk["label"] or f"Disk {disk['key']}",
                controller_type=controller.get("type") or "",
                bus_number=controller.get("bus_number"),
                unit_number=disk["unit_number"],
                capacity_bytes=disk["capacity_bytes"] or 0,
                file_name=file_name,
                flat_file=re.sub(r"\.vmdk$", "-flat.vmdk", file_name) if file_name.endswith(".vmdk") else file_name,
            )
        )
    return sorted(places, key=_place_order)


def _place_order(place: DiskPlace) -> tuple[str, int, int, int]:
    return (
        _BUS_FAMILIES.get(place.controller_type, place.controller_type),
        -1 if place.bus_number is None else place.bus_number,
        -1 if place.unit_number is None else place.unit_number,
        place.key,
    )


def layout_differences(before: Sequence[DiskPlace], now: Sequence[DiskPlace]) -> list[str]:
    """What changed between two disk layouts (before: the point's, now: the VM's), one sentence each;
    [] when the disks are the same: at the same places (bus family, bus and unit: what the guest sees),
    of the same capacities, on controllers of the same types. Device keys and file names are not
    compared: a disk moved to another datastore is still the same disk to the guest."""

    def where(place: DiskPlace) -> tuple[str, int | None, int | None]:
        return (_BUS_FAMILIES.get(place.controller_type, place.controller_type), place.bus_number, place.unit_number)

    then = {where(p): p for p in before}
    current = {where(p): p for p in now}
    sentences = []
    for position in sorted(then.keys() | current.keys(), key=lambda w: (w[0], w[1] or 0, w[2] or 0)):
        old, new = then.get(position), current.get(position)
        if new is None:
            assert old is not None
            sentences.append(f"{old.label} ({old.position}, {_size(old.capacity_bytes)}) was removed since the point")
        elif old is None:
            sentences.append(f"{new.label} ({new.position}, {_size(new.capacity_bytes)}) was added since the point")
        else:
            if new.capacity_bytes != old.capacity_bytes:
                sentences.append(
                    f"{new.label} is {_size(new.capacity_bytes)} now, {_size(old.capacity_bytes)} in the point"
                )
            if new.controller_type != old.controller_type:
                sentences.append(
                    f"{new.label} is on a {_controller_name(new.controller_type)} controller now, "
                    f"{_controller_name(old.controller_type)} in the point"
                )
    return sentences


def _controller_name(kind: str) -> str:
    return _CONTROLLER_NAMES.get(kind, kind or "unknown")


def _size(n: int) -> str:
    """Exact and short: "48 GiB", "1536 MiB", else "10,737,418,752 bytes" (never rounded: two sizes that
    differ never read the same)."""
    for unit, name in ((GiB, "GiB"), (1024 * 1024, "MiB"), (1024, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n:,} bytes"
