"""A VM's configuration as a JSON-able document (vm_config): what a restore recreates."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from .connection import Connection
from .errors import NotFound
from .inventory import (
    DATACENTER_PROPERTIES,
    DEVICES,
    FOLDER_PROPERTIES,
    VM_PROPERTIES,
    InventoryBuilder,
    VmInfo,
    disk_info,
)
from .names import unescape_name
from .soap import (
    PAGE_SIZE,
    REPORT_MISSING,
    VIM25,
    RawObject,
    int_text,
    objects_with_ancestors,
    property_specs,
    retrieve_raw,
    traversal,
    xsi_type,
)

_CONFIG_PROPERTIES = (
    *VM_PROPERTIES,
    "config.firmware",
    "config.version",
    "config.hardware.numCoresPerSocket",
    "config.annotation",
    "config.files.vmPathName",
    "config.extraConfig",
)
# Where VM configuration is read, what else is read with it: names of its networks and datastores,
# and the folders and datacenter above it (for the folder path).
_CONFIG_NEIGHBOURS: dict[str, Sequence[str]] = {
    "VirtualMachine": _CONFIG_PROPERTIES,
    "Folder": FOLDER_PROPERTIES,
    "Datacenter": DATACENTER_PROPERTIES,
    "Network": ("name",),  # distributed port groups too (a subtype)
    "DistributedVirtualPortgroup": ("key",),
    "Datastore": ("name",),
}
CONFIG_SCHEMA = 1  # vm_config()["schema"]: bumped when the shape changes

# Storage controllers, by their vSphere type, with the short name used in govc and PowerCLI.
_CONTROLLER_KINDS = {
    "VirtualLsiLogicSASController": "lsilogic-sas",
    "VirtualLsiLogicController": "lsilogic",
    "ParaVirtualSCSIController": "pvscsi",
    "VirtualBusLogicController": "buslogic",
    "VirtualAHCIController": "sata",
    "VirtualNVMEController": "nvme",
    "VirtualIDEController": "ide",
}
NIC_TYPES = frozenset(
    {
        "VirtualE1000",
        "VirtualE1000e",
        "VirtualPCNet32",
        "VirtualVmxnet",
        "VirtualVmxnet2",
        "VirtualVmxnet3",
        "VirtualVmxnet3Vrdma",
        "VirtualSriovEthernetCard",
    }
)
_CDROM_BACKINGS = {
    "VirtualCdromIsoBackingInfo": "iso",
    "VirtualCdromRemotePassthroughBackingInfo": "client",
    "VirtualCdromRemoteAtapiBackingInfo": "client",
    "VirtualCdromPassthroughBackingInfo": "host",
    "VirtualCdromAtapiBackingInfo": "host",
}
# extraConfig left out of a capture: guestinfo.* (guest data, often credentials or cloud-init
# payloads), anything named like a secret, and state the host writes for the running VM (swap file,
# migration, change tracking, NUMA sizing), which a recreated VM must not inherit.
_SKIPPED_EXTRA_CONFIG = re.compile(
    r"^guestinfo\.|pass(word|wd|phrase)|secret|token|credential|private.?key|"
    r"^sched\.swap\.derivedname$|^migrate\.|^vmotion\.|^monitor\.phys_bits_used$|^nvram$|ctkenabled$|"
    r"^numa\.autosize\.|^softpoweroff$|^toolsinstallmanager\.|^vmware\.log\.",
    re.IGNORECASE,
)


def vm_config(conn: Connection, vm_moref: str) -> dict[str, Any]:
    """A VM's configuration as plain JSON-serialisable values, enough to recreate it; one round trip.
    NotFound when the VM does not exist.

    Keys, always present and in this order (lists sorted by device key; None where vCenter has no value):
      schema (CONFIG_SCHEMA), moref, name (as shown), instance_uuid, bios_uuid, guest_id, guest_full_name,
      firmware ("bios" | "efi"), hardware_version ("vmx-19"), num_cpu, cores_per_socket, memory_mb,
      annotation, change_tracking (bool), datacenter, datacenter_moref, folder_moref, folder_path
      (the last two as VmInfo has them: names escaped as vCenter stores them), resource_pool_moref,
      host_moref, vmx_path ("[ds1] web-01/web-01.vmx"), datastore (the vmx's), datastore_moref,
      controllers: [{type ("VirtualLsiLogicSASController"), kind ("lsilogic-sas"), key, label,
        bus_number, sharing ("noSharing" for SCSI, else None)}]  (storage controllers only),
      disks: [{key, label, controller_key, unit_number, capacity_bytes, file_name, datastore,
        datastore_moref, path, thin, disk_mode, backing ("flat", "sparse", "rdm_physical", ...),
        backing_type ("VirtualDiskFlatVer2BackingInfo"), sharing, uuid}],
      nics: [{type ("VirtualVmxnet3"), key, label, controller_key, unit_number, mac_address,
        address_type, network (name), network_moref, portgroup_key, switch_uuid, connected,
        start_connected}],
      cdroms: [{key, label, controller_key, unit_number, backing ("iso" | "client" | "host" |
        "other"), file_name, device_name, connected, start_connected}],
      extra_config: {key: value} sorted by key, without secrets and host-written state
        (see _SKIPPED_EXTRA_CONFIG).
    """
    spec = property_specs(_CONFIG_NEIGHBOURS) + _vm_and_neighbours(vm_moref) + REPORT_MISSING
    builder = InventoryBuilder()
    networks: dict[str, str] = {}  # moref -> name
    portgroups: dict[str, str] = {}  # distributed port group key -> moref
    datastores: dict[str, str] = {}  # name -> moref
    own: dict[str, Any] | None = None
    for raw in retrieve_raw(conn, spec, PAGE_SIZE):
        name = unescape_name(raw.text("name") or "")
        if raw.type == "VirtualMachine" and "name" in raw.props:
            own = _config_values(raw)  # now: elements are cleared after each object
        elif raw.type == "Datastore":
            datastores[name] = raw.moref
        elif raw.type in ("Network", "DistributedVirtualPortgroup", "OpaqueNetwork"):
            networks[raw.moref] = name
            if key := raw.text("key"):
                portgroups[key] = raw.moref
        builder.add(raw)  # VMs, folders and datacenters: the VM's folder path
    vms = builder.inventory(conn.about, round_trips=0).vms
    if own is None or not vms:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} does not exist (any more)")
    return _config_document(vms[0], own, networks, portgroups, datastores)


def _vm_and_neighbours(moref: str) -> str:
    follow = traversal("network", "VirtualMachine", "network") + traversal("datastore", "VirtualMachine", "datastore")
    return objects_with_ancestors("VirtualMachine", [moref], also=follow)


def _config_values(raw: RawObject) -> dict[str, Any]:
    """What vm_config needs beyond VmInfo, read from the VM's elements while they exist."""
    devices = list(raw.props.get(DEVICES, []))
    return {
        "firmware": raw.text("config.firmware"),
        "hardware_version": raw.text("config.version"),
        "cores_per_socket": raw.number("config.hardware.numCoresPerSocket") or None,
        "annotation": raw.text("config.annotation", ""),
        "vmx_path": raw.text("config.files.vmPathName"),
        "controllers": [_controller(d) for d in devices if xsi_type(d) in _CONTROLLER_KINDS],
        "disks": [_disk_config(d) for d in devices if xsi_type(d) == "VirtualDisk"],
        "nics": [_nic(d) for d in devices if xsi_type(d) in NIC_TYPES or d.find(f"{VIM25}macAddress") is not None],
        "cdroms": [_cdrom(d) for d in devices if xsi_type(d) == "VirtualCdrom"],
        "extra_config": _extra_config(raw.props.get("config.extraConfig")),
    }


def _config_document(
    vm: VmInfo, own: dict[str, Any], networks: dict[str, str], portgroups: dict[str, str], datastores: dict[str, str]
) -> dict[str, Any]:
    vmx_datastore = re.match(r"\[([^\]]*)\]", own["vmx_path"] or "")
    datastore = vmx_datastore.group(1) if vmx_datastore else None
    for nic in own["nics"]:
        # a distributed port group is named by its key in the backing
        nic["network_moref"] = nic["network_moref"] or portgroups.get(nic["portgroup_key"] or "")
        nic["network"] = networks.get(nic["network_moref"] or "") or nic["network"]
    return {
        "schema": CONFIG_SCHEMA,
        "moref": vm.moref,
        "name": vm.name,
        "instance_uuid": vm.instance_uuid,
        "bios_uuid": vm.bios_uuid,
        "guest_id": vm.guest_id,
        "guest_full_name": vm.guest_full_name,
        "firmware": own["firmware"],
        "hardware_version": own["hardware_version"],
        "num_cpu": vm.num_cpu,
        "cores_per_socket": own["cores_per_socket"],
        "memory_mb": vm.memory_mb,
        "annotation": own["annotation"],
        "change_tracking": vm.cbt_enabled,
        "datacenter": vm.datacenter,
        "datacenter_moref": vm.datacenter_moref,
        "folder_moref": vm.folder_moref,
        "folder_path": vm.folder_path,
        "resource_pool_moref": vm.resource_pool_moref,
        "host_moref": vm.host_moref,
        "vmx_path": own["vmx_path"],
        "datastore": datastore,
        "datastore_moref": datastores.get(datastore) if datastore else None,
        "controllers": sorted(own["controllers"], key=lambda d: d["key"]),
        "disks": sorted(own["disks"], key=lambda d: d["key"]),
        "nics": sorted(own["nics"], key=lambda d: d["key"]),
        "cdroms": sorted(own["cdroms"], key=lambda d: d["key"]),
        "extra_config": own["extra_config"],
    }


def _text(element: ET.Element | None, path: str) -> str | None:
    """The text at a "/"-separated path of vim25 elements, None when absent."""
    if element is None:
        return None
    return element.findtext("/".join(f"{VIM25}{part}" for part in path.split("/")))


def _flag(element: ET.Element | None, path: str) -> bool | None:
    text = _text(element, path)
    return None if text is None else text.strip() == "true"


def _key_and_label(device: ET.Element) -> dict[str, Any]:
    return {"key": int_text(device, "key") or 0, "label": _text(device, "deviceInfo/label") or ""}


def _device_place(device: ET.Element) -> dict[str, Any]:
    """Key, label, and the controller and unit it sits at."""
    return {
        **_key_and_label(device),
        "controller_key": int_text(device, "controllerKey"),
        "unit_number": int_text(device, "unitNumber"),
    }


def _controller(device: ET.Element) -> dict[str, Any]:
    kind = xsi_type(device)
    return {
        "type": kind,
        "kind": _CONTROLLER_KINDS[kind],
        **_key_and_label(device),
        "bus_number": int_text(device, "busNumber"),
        "sharing": _text(device, "sharedBus"),
    }


def _disk_config(device: ET.Element) -> dict[str, Any]:
    disk = disk_info(device)
    backing = device.find(f"{VIM25}backing")
    return {
        "key": disk.key,
        "label": disk.label,
        "controller_key": disk.controller_key,
        "unit_number": disk.unit_number,
        "capacity_bytes": disk.capacity_bytes,
        "file_name": disk.file_name,
        "datastore": disk.datastore_name,
        "datastore_moref": disk.datastore_moref,
        "path": disk.path,
        "thin": disk.thin,
        "disk_mode": disk.disk_mode,
        "backing": disk.backing,
        "backing_type": xsi_type(backing),
        "sharing": _text(backing, "sharing"),
        "uuid": _text(backing, "uuid"),
    }


def _nic(device: ET.Element) -> dict[str, Any]:
    backing = device.find(f"{VIM25}backing")
    network = backing.find(f"{VIM25}network") if backing is not None else None
    return {
        "type": xsi_type(device),
        **_device_place(device),
        "mac_address": _text(device, "macAddress"),
        "address_type": _text(device, "addressType"),
        # deviceName for standard port groups; filled in from the port group for distributed ones
        "network": _text(backing, "deviceName") or _text(backing, "opaqueNetworkId"),
        "network_moref": (network.text or None) if network is not None else None,
        "portgroup_key": _text(backing, "port/portgroupKey"),
        "switch_uuid": _text(backing, "port/switchUuid"),
        "connected": _flag(device, "connectable/connected"),
        "start_connected": _flag(device, "connectable/startConnected"),
    }


def _cdrom(device: ET.Element) -> dict[str, Any]:
    backing = device.find(f"{VIM25}backing")
    return {
        **_device_place(device),
        "backing": _CDROM_BACKINGS.get(xsi_type(backing), "other"),
        "file_name": _text(backing, "fileName"),
        "device_name": _text(backing, "deviceName"),
        "connected": _flag(device, "connectable/connected"),
        "start_connected": _flag(device, "connectable/startConnected"),
    }


def _extra_config(options: ET.Element | None) -> dict[str, str]:
    values = {}
    for option in options if options is not None else []:
        key = option.findtext(f"{VIM25}key") or ""
        if key and not _SKIPPED_EXTRA_CONFIG.search(key):
            values[key] = option.findtext(f"{VIM25}value") or ""
    return dict(sorted(values.items()))
