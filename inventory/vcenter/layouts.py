"""Disk layouts: where a VM's disks sit and how big they are, to refuse overwriting a VM whose disks
changed since a point was taken (layout_differences)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .connection import Connection
from .vmconfig import vm_config

GiB = 1024 * 1024 * 1024


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
        return f"{BUS_FAMILIES.get(self.controller_type, 'controller')} {bus}:{unit}"


# Storage controllers: the bus family a guest sees, and the names the vSphere Client shows.
BUS_FAMILIES = {
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
        BUS_FAMILIES.get(place.controller_type, place.controller_type),
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
        return (BUS_FAMILIES.get(place.controller_type, place.controller_type), place.bus_number, place.unit_number)

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
