"""Snapshots (create, remove, list, their disks and change ids) and Changed Block Tracking queries."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pyVmomi import vim, vmodl

from .connection import Connection, fault_message, fault_name, translated
from .errors import ChangeTrackingUnavailable, NotFound, QuiesceFailed, VCenterError
from .inventory import DEVICES, DiskInfo, disk_info
from .soap import REPORT_MISSING, VIM25, int_text, one_object, property_specs, retrieve_raw, xsi_type
from .tasks import TaskFailed, wait_for_task
from .vmomi import moref_of

_T = TypeVar("_T")


@dataclass(frozen=True)
class SnapshotInfo:
    moref: str
    name: str
    description: str
    created: datetime  # aware
    quiesced: bool
    parent_moref: str | None  # None for a root snapshot
    id: int  # vCenter's number for it, unique within the VM
    power_state: str  # of the VM when it was taken
    current: bool  # the VM runs on top of this one (snapshot.currentSnapshot)


def create_snapshot(conn: Connection, vm_moref: str, name: str, description: str, quiesce: bool) -> str:
    """Snapshot a VM without its memory; returns the snapshot's moref.

    With quiesce, a guest that cannot quiesce raises QuiesceFailed, so that a caller may fall back
    to a crash-consistent snapshot; other failures raise VCenterError.
    """
    vm = conn.ref(vim.VirtualMachine, vm_moref)
    with translated(conn.endpoint):
        task = vm.CreateSnapshot_Task(name=name, description=description, memory=False, quiesce=quiesce)
    try:
        return moref_of(wait_for_task(conn, task))
    except TaskFailed as failure:
        if quiesce and is_quiesce_failure(failure.fault_name, failure.message):
            where = conn.endpoint.where
            raise QuiesceFailed(f"{where}: the guest of {vm_moref} could not be quiesced: {failure}") from None
        raise


# Faults of a quiesced snapshot that a crash-consistent one does not have. vSphere reports a guest that
# fails to quiesce as ApplicationQuiesceFault, or as a generic SnapshotFault/SystemError whose message
# says "quiesc..." ("An error occurred while quiescing the virtual machine", "msg.snapshot.error-
# QUIESCINGERROR"); ToolsUnavailable when VMware Tools do not run, so nothing can quiesce.
_QUIESCE_FAULTS = frozenset({"ApplicationQuiesceFault", "ToolsUnavailable"})


def is_quiesce_failure(fault_name: str, message: str) -> bool:
    return fault_name in _QUIESCE_FAULTS or "quiesc" in message.lower()


def remove_snapshot(conn: Connection, snapshot_moref: str) -> None:
    """Delete one snapshot (not its children), merging its changes into the parent disk."""
    snapshot = conn.ref(vim.vm.Snapshot, snapshot_moref)
    with translated(conn.endpoint):
        task = snapshot.RemoveSnapshot_Task(removeChildren=False, consolidate=True)
    wait_for_task(conn, task)


def list_snapshots(conn: Connection, vm_moref: str) -> list[SnapshotInfo]:
    """A VM's snapshots, the whole tree flattened (each parent before its children); [] when it has
    none. NotFound when the VM does not exist."""
    spec = property_specs({"VirtualMachine": ["name", "snapshot"]}) + one_object("VirtualMachine", vm_moref)
    snapshots: list[SnapshotInfo] | None = None
    for raw in retrieve_raw(conn, spec + REPORT_MISSING, 1):
        if "name" in raw.props:  # the VM exists; an unset snapshot property is simply left out
            info = raw.props.get("snapshot")
            snapshots = _snapshot_tree(info) if info is not None else []
    if snapshots is None:
        raise NotFound(f"{conn.endpoint.where}: VM {vm_moref} does not exist (any more)")
    return snapshots


def _snapshot_tree(info: ET.Element) -> list[SnapshotInfo]:
    current = info.findtext(f"{VIM25}currentSnapshot")
    out: list[SnapshotInfo] = []

    def walk(node: ET.Element, parent: str | None) -> None:
        moref = node.findtext(f"{VIM25}snapshot") or ""
        out.append(
            SnapshotInfo(
                moref=moref,
                name=node.findtext(f"{VIM25}name") or "",
                description=node.findtext(f"{VIM25}description") or "",
                created=_aware(node.findtext(f"{VIM25}createTime") or ""),
                quiesced=(node.findtext(f"{VIM25}quiesced") or "").strip() == "true",
                parent_moref=parent,
                id=int_text(node, "id") or 0,
                power_state=node.findtext(f"{VIM25}state") or "",
                current=moref == current,
            )
        )
        for child in node.iterfind(f"{VIM25}childSnapshotList"):
            walk(child, moref)

    for root in info.iterfind(f"{VIM25}rootSnapshotList"):
        walk(root, None)
    return out


def _aware(text: str) -> datetime:
    """An xsd:dateTime as an aware datetime (UTC when it carries no offset)."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def snapshot_disks(conn: Connection, snapshot_moref: str) -> tuple[DiskInfo, ...]:
    """The disks as the snapshot captured them (its config.hardware.device).

    On vSphere the VM moves on to delta disks when a snapshot is taken, and these backings still name
    the frozen disks (the base, or the parent delta): the files to read for a backup of the snapshot.
    (vcsim 0.24.2 keeps one backing throughout.) NotFound when the snapshot does not exist.
    """
    return _snapshot_devices(conn, snapshot_moref, lambda devices: tuple(disk_info(d) for d in devices))


def snapshot_change_ids(conn: Connection, snapshot_moref: str) -> dict[int, str]:
    """Disk key -> the disk's change id when the snapshot was taken (backing.changeId), for disks that
    have one (Changed Block Tracking was on): the change id to give query_changed_areas for the next
    backup. NotFound when the snapshot does not exist."""

    def change_ids(devices: list[ET.Element]) -> dict[int, str]:
        ids = {}
        for disk in devices:
            change_id = disk.findtext(f"{VIM25}backing/{VIM25}changeId")
            if change_id:
                ids[int_text(disk, "key") or 0] = change_id
        return ids

    return _snapshot_devices(conn, snapshot_moref, change_ids)


def _snapshot_devices(conn: Connection, snapshot_moref: str, convert: Callable[[list[ET.Element]], _T]) -> _T:
    """convert(the snapshot's disks), read in one round trip."""
    spec = property_specs({"VirtualMachineSnapshot": [DEVICES]}) + one_object("VirtualMachineSnapshot", snapshot_moref)
    found: list[_T] = []
    for raw in retrieve_raw(conn, spec + REPORT_MISSING, 1):
        devices = raw.props.get(DEVICES)
        if devices is not None:  # elements are cleared after each object: convert them now
            found.append(convert([d for d in devices if xsi_type(d) == "VirtualDisk"]))
    if not found:
        raise NotFound(f"{conn.endpoint.where}: snapshot {snapshot_moref} does not exist (any more)")
    return found[0]


def query_changed_areas(
    conn: Connection, vm_moref: str, snapshot_moref: str, disk_key: int, change_id: str, capacity_bytes: int
) -> list[tuple[int, int]]:
    """(offset, length) of the areas of a disk that changed between change_id and the snapshot, sorted
    and merged; change_id "*" gives every area in use.

    vCenter answers for part of the disk at a time (its DiskChangeInfo says which part): this asks
    again from where each answer ends until the whole capacity is covered. A change id that is not
    valid (tracking off or reset since, an unknown id) raises ChangeTrackingUnavailable: read the
    whole disk then.
    """
    vm, snapshot = conn.ref(vim.VirtualMachine, vm_moref), conn.ref(vim.vm.Snapshot, snapshot_moref)
    areas: list[tuple[int, int]] = []
    offset = 0
    while offset < capacity_bytes:
        info = _changed_areas_from(conn, vm, snapshot, disk_key, offset, change_id)
        areas.extend((area.start, area.length) for area in info.changedArea or [])
        end = int(info.startOffset) + int(info.length)
        if end <= offset:  # would ask the same question forever
            raise VCenterError(f"{conn.endpoint.where}: QueryChangedDiskAreas made no progress at offset {offset}")
        offset = end
    return merged_areas(areas, capacity_bytes)


def _changed_areas_from(
    conn: Connection, vm: vim.VirtualMachine, snapshot: vim.vm.Snapshot, disk_key: int, offset: int, change_id: str
) -> vim.VirtualMachine.DiskChangeInfo:
    with translated(conn.endpoint):
        try:
            return vm.QueryChangedDiskAreas(
                snapshot=snapshot, deviceKey=disk_key, startOffset=offset, changeId=change_id
            )
        except (vim.fault.FileFault, vmodl.fault.InvalidArgument) as fault:
            # FileFault: tracking off or reset; InvalidArgument on changeId: not an id of this disk.
            # Other invalid arguments (deviceKey, startOffset) are the caller's mistake.
            if isinstance(fault, vmodl.fault.InvalidArgument) and fault.invalidProperty not in (None, "", "changeId"):
                raise
            raise ChangeTrackingUnavailable(
                f"{conn.endpoint.where}: no changed areas of disk {disk_key} of {moref_of(vm)} since "
                f"change id {change_id!r} ({fault_name(fault)}: {fault_message(fault)}): read the whole disk"
            ) from None


def merged_areas(areas: Iterable[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Sorted areas with overlapping and touching ones joined, cut at limit."""
    out: list[tuple[int, int]] = []
    for start, length in sorted(areas):
        end = min(start + length, limit)
        if end <= start:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_length = out[-1]
            out[-1] = (last_start, max(last_start + last_length, end) - last_start)
        else:
            out.append((start, end - start))
    return out
