"""What a datastore folder holds for a VM, made from a recovery point's manifest: a descriptor and a
flat extent per disk ("NAME.vmdk", "NAME-flat.vmdk", as ESXi writes a monolithicFlat VMFS disk) and
the VM's configuration ("VM.vmx") when the backup captured it (protection's backup stores
inventory.vcenter.vm_config's document as the manifest's meta["config"])."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

SECTOR = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._ +-]")

# ddb.adapterType per controller kind (vm_config's "kind"): vSphere writes LSI SAS, PVSCSI, SATA and
# NVMe disks as "lsilogic" too.
_ADAPTER = {"ide": "ide", "buslogic": "buslogic"}
# The .vmx device prefix and virtualDev of each controller kind.
_VMX_CONTROLLER = {
    "lsilogic": ("scsi", "lsilogic"),
    "lsilogic-sas": ("scsi", "lsisas1068"),
    "pvscsi": ("scsi", "pvscsi"),
    "buslogic": ("scsi", "buslogic"),
    "sata": ("sata", None),
    "nvme": ("nvme", None),
    "ide": ("ide", None),
}
_NIC_DEV = {
    "VirtualVmxnet3": "vmxnet3",
    "VirtualVmxnet2": "vmxnet2",
    "VirtualVmxnet": "vmxnet",
    "VirtualE1000": "e1000",
    "VirtualE1000e": "e1000e",
    "VirtualPCNet32": "vlance",
}


@dataclass(frozen=True)
class DiskFiles:
    """One disk of the point as files: its store key, size, and the names it is served under."""

    key: str
    size: int
    name: str  # "web-01_1": descriptor "web-01_1.vmdk", extent "web-01_1-flat.vmdk"
    adapter_type: str = "lsilogic"
    controller: dict[str, Any] | None = None  # vm_config's controller of this disk, when captured
    unit_number: int | None = None

    @property
    def descriptor_name(self) -> str:
        return f"{self.name}.vmdk"

    @property
    def flat_name(self) -> str:
        return f"{self.name}-flat.vmdk"


def safe_name(text: str, fallback: str) -> str:
    """A file name the descriptor and .vmx can quote: no separators, quotes or control characters."""
    cleaned = _UNSAFE.sub("_", text).strip(" .")
    return cleaned[:100] or fallback


def disk_files(meta: dict[str, Any], sizes: dict[str, int]) -> list[DiskFiles]:
    """The point's disks (store key -> size) named as the VM named them ("[ds] vm/vm_1.vmdk" ->
    "vm_1"), "disk-KEY" when the configuration was not captured; names made unique."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    assert isinstance(config, dict)
    captured = {str(d.get("key")): d for d in config.get("disks", []) if isinstance(d, dict)}
    controllers = {c.get("key"): c for c in config.get("controllers", []) if isinstance(c, dict)}
    files: list[DiskFiles] = []
    taken: set[str] = set()
    for key in sorted(sizes, key=_disk_order):
        disk = captured.get(key, {})
        path = str(disk.get("path") or disk.get("file_name") or "")
        base = re.sub(r"(-flat)?\.vmdk$", "", path.rsplit("/", 1)[-1].rsplit("] ", 1)[-1])
        name = safe_name(base, f"disk-{safe_name(key, 'x')}")
        unique, n = name, 1
        while unique.lower() in taken:
            n += 1
            unique = f"{name}_{n}"
        taken.add(unique.lower())
        controller = controllers.get(disk.get("controller_key"))
        adapter = _ADAPTER.get(str((controller or {}).get("kind")), "lsilogic")
        files.append(DiskFiles(key, sizes[key], unique, adapter, controller, disk.get("unit_number")))
    return files


def _disk_order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 62, key)


def descriptor(disk: DiskFiles) -> str:
    """The text descriptor ESXi writes beside a "-flat.vmdk" (createType "vmfs", one VMFS extent),
    its CID and uuid derived from the name and size so the same point always gives the same text."""
    sectors = -(-disk.size // SECTOR)
    heads, per_track, max_cylinders = (16, 63, 16383) if disk.adapter_type == "ide" else (255, 63, 65535)
    cylinders = min(sectors // (heads * per_track), max_cylinders)
    seed = hashlib.sha256(f"{disk.flat_name}:{disk.size}".encode()).hexdigest()
    uuid = " ".join(seed[32 + i : 34 + i] for i in range(0, 32, 2))
    return (
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\n"
        f"CID={seed[24:32]}\nparentCID=ffffffff\nisNativeSnapshot=\"no\"\ncreateType=\"vmfs\"\n\n"
        f"# Extent description\nRW {sectors} VMFS \"{disk.flat_name}\"\n\n"
        "# The Disk Data Base\n#DDB\n\n"
        f"ddb.adapterType = \"{disk.adapter_type}\"\n"
        f"ddb.geometry.cylinders = \"{cylinders}\"\n"
        f"ddb.geometry.heads = \"{heads}\"\n"
        f"ddb.geometry.sectors = \"{per_track}\"\n"
        f"ddb.longContentID = \"{seed[:32]}\"\n"
        f"ddb.uuid = \"{uuid}\"\n"
        "ddb.virtualHWVersion = \"13\"\n"
    )  # fmt: skip


def vmx_name(meta: dict[str, Any]) -> str | None:
    """ "VM.vmx" when the point holds the VM's configuration, else None (no .vmx is served)."""
    config = meta.get("config")
    if not isinstance(config, dict):
        return None
    return safe_name(str(config.get("name") or meta.get("vm") or "vm"), "vm") + ".vmx"


def vmx(meta: dict[str, Any], disks: list[DiskFiles]) -> str:
    """A .vmx for registering the VM from this folder: its hardware as captured, its disks pointing
    at the descriptors served beside it, NICs present but not connected at power-on (a copy of a
    running server must not meet its original on the network unless someone asks), then the captured
    extraConfig as vSphere keeps it in the .vmx (but keys set above, the original's identity and any key
    that is not a plain name). No uuid.bios or instance UUID: vSphere gives the registered copy new ones."""
    config: dict[str, Any] = meta["config"]
    lines = {
        ".encoding": "UTF-8",
        "config.version": "8",
        "virtualHW.version": str(config.get("hardware_version") or "vmx-13").removeprefix("vmx-"),
        "displayName": str(config.get("name") or meta.get("vm") or "vm"),
        "guestOS": vmx_guest_os(str(config.get("guest_id") or "")),
        "numvcpus": str(config.get("num_cpu") or 1),
        "memSize": str(config.get("memory_mb") or 1024),
    }
    if config.get("cores_per_socket"):
        lines["cpuid.coresPerSocket"] = str(config["cores_per_socket"])
    if config.get("firmware") == "efi":
        lines["firmware"] = "efi"
    lines.update(_controller_lines(config))
    lines.update(_disk_lines(disks))
    lines.update(_nic_lines(config))
    lines.update(_extra_lines(config, lines))
    return "".join(f'{key} = "{vmx_quote(value)}"\n' for key, value in lines.items())


# Guest ids whose .vmx name is not the rule's (ESXi's own table; the rule covers the rest).
_VMX_GUEST_NAMES = {
    "otherGuest64": "other-64",
    "windows7Server64Guest": "windows7srv-64",
    "windows8Server64Guest": "windows8srv-64",
    "windows9Server64Guest": "windows9srv-64",
    "winLonghornGuest": "longhorn",
    "winLonghorn64Guest": "longhorn-64",
}


def vmx_guest_os(guest_id: str) -> str:
    """The .vmx's guestOS for a vSphere guest id: ESXi names guests differently there
    ("windows2019srv_64Guest" is "windows2019srv-64", "otherLinux64Guest" "otherlinux-64") and takes
    an id it does not know for "Other"."""
    if not guest_id:
        return "other-64"
    if guest_id in _VMX_GUEST_NAMES:
        return _VMX_GUEST_NAMES[guest_id]
    if not guest_id.endswith("Guest"):
        return guest_id.lower()  # a .vmx name already
    name = guest_id.removesuffix("Guest").lower()
    if name.endswith("_64"):
        return name[:-3] + "-64"
    if name.endswith("64"):
        return name[:-2] + "-64"
    return name


def vmx_quote(value: str) -> str:
    """A value as a .vmx writes it between its double quotes (| escapes)."""
    return value.replace("|", "|7C").replace('"', "|22").replace("\n", " ")


# An extraConfig key that may go into a .vmx as it is; the identity keys are the original VM's (see
# inventory.vcenter.restore: a copy gets its own).
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_IDENTITY_KEY = re.compile(r"^(uuid\.|vc\.uuid$|vmci0\.id$)", re.IGNORECASE)


def _extra_lines(config: dict[str, Any], taken: dict[str, str]) -> dict[str, str]:
    extra = config.get("extra_config")
    if not isinstance(extra, dict):
        return {}
    seen = {key.lower() for key in taken}
    lines: dict[str, str] = {}
    for key, value in extra.items():
        key = str(key)
        if not _PLAIN_KEY.match(key) or _IDENTITY_KEY.match(key) or key.lower() in seen:
            continue
        seen.add(key.lower())
        lines[key] = "" if value is None else str(value)
    return lines


def _controller_lines(config: dict[str, Any]) -> dict[str, str]:
    lines: dict[str, str] = {}
    for controller in config.get("controllers", []):
        prefix, dev = _VMX_CONTROLLER.get(str(controller.get("kind")), ("scsi", "lsilogic"))
        name = f"{prefix}{controller.get('bus_number') or 0}"
        lines[f"{name}.present"] = "TRUE"
        if dev:
            lines[f"{name}.virtualDev"] = dev
    return lines


def _disk_lines(disks: list[DiskFiles]) -> dict[str, str]:
    lines: dict[str, str] = {}
    for position, disk in enumerate(disks):
        controller = disk.controller or {"kind": "lsilogic", "bus_number": 0}
        prefix, _dev = _VMX_CONTROLLER.get(str(controller.get("kind")), ("scsi", "lsilogic"))
        unit = disk.unit_number if disk.unit_number is not None else position
        device = f"{prefix}{controller.get('bus_number') or 0}:{unit}"
        lines[f"{device}.present"] = "TRUE"
        lines[f"{device}.fileName"] = disk.descriptor_name
        if prefix == "scsi":
            lines[f"{device}.deviceType"] = "scsi-hardDisk"
    if disks and not any(disk.controller for disk in disks):  # no captured controller: give them one
        lines = {"scsi0.present": "TRUE", "scsi0.virtualDev": "lsilogic", **lines}
    return lines


def _nic_lines(config: dict[str, Any]) -> dict[str, str]:
    lines: dict[str, str] = {}
    for n, nic in enumerate(config.get("nics", [])):
        name = f"ethernet{n}"
        lines[f"{name}.present"] = "TRUE"
        lines[f"{name}.virtualDev"] = _NIC_DEV.get(str(nic.get("type")), "vmxnet3")
        if nic.get("network"):
            lines[f"{name}.networkName"] = str(nic["network"])
        lines[f"{name}.startConnected"] = "FALSE"
        if nic.get("address_type") in ("manual", "Manual") and nic.get("mac_address"):
            lines[f"{name}.addressType"] = "static"
            lines[f"{name}.address"] = str(nic["mac_address"])
        else:
            lines[f"{name}.addressType"] = "generated"
    return lines
