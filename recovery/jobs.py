"""Whole-VM restore: to a new VM (captured hardware, disks uploaded through the datastore HTTP API) or
over the original (refused if its disks changed since the point; powered off first).

Every restored disk is read back from the datastore and checked chunk by chunk against the point's
index. A restore to a new VM that fails or is cancelled deletes the VM it created, so nothing half
restored is left behind; an overwrite that fails says which disks were already written.

Restores that write over an existing VM's disks (overwrite, one disk) cannot be undone, so they first
hold the VM's claim (no backup of it runs meanwhile, protection.claims) and read and hash every chunk
they will write (recovery.point_check) before powering anything off: a damaged point is refused, and
marked damaged, with a sentence naming the newest intact point.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import Datastore, Folder, Host, ResourcePool, VirtualMachine
from inventory.paths import datacenter_path
from jobs.registry import job_kind
from jobs.runner import JobCancelled, JobContext, JobFailed
from protection import claims
from recovery import actions, point_check
from recovery.models import Restore
from vault import engine, healing
from vault.engine.format import ZERO
from vault.models import RecoveryPoint
from vault.storage import tiered_store

_FLAT_FILE = re.compile(r"^\[(?P<datastore>[^\]]+)\] (?P<path>.+)$")


@dataclass(frozen=True)
class DiskTarget:
    source_key: int  # the point's disk
    label: str
    datacenter: str
    datastore: str
    path: str


@job_kind(actions.RESTORE_VM_KIND, title="Restore a VM", queue="restore")
def restore_vm(ctx: JobContext, point_id: str, target: dict[str, Any]) -> dict[str, Any]:
    point = RecoveryPoint.objects.select_related("vm__vcenter", "vm__datacenter").get(pk=point_id)
    restore = Restore.objects.filter(job_id=ctx.run.pk).first()
    overwritten = None
    try:
        overwritten = _vm_overwritten(point, target)
        if overwritten is not None:
            _claim_or_refuse(ctx, overwritten)
        source = tiered_store()
        result = _restore(ctx, point, target, source)
        # Chunks this restore healed from the other tier may make damaged points whole again.
        healing.note_read_repairs(source, actor=actions.DAMAGE_FOUND_BY)
    except engine.NeedsRehydration as exc:
        _finish(restore, 0, str(exc))
        raise JobFailed(str(exc)) from None
    except JobCancelled:
        _finish(restore, 0, "cancelled")
        raise
    except JobFailed as exc:
        _finish(restore, 0, str(exc))
        raise
    except (vsphere.VCenterError, engine.StoreError, engine.BackendError) as exc:
        if isinstance(exc, engine.ChunkCorrupt):  # met while writing a new VM (which was removed again)
            healing.mark_damaged(
                point, [str(exc)], healing.LOCAL, digests=[exc.digest.hex()], actor=actions.DAMAGE_FOUND_BY
            )
        _finish(restore, 0, str(exc))
        raise JobFailed(f"The restore of {point.vm.name} failed: {exc}") from None
    finally:
        if overwritten is not None:
            claims.release_vm(overwritten.pk, ctx.run.pk)
    _finish(restore, result["bytes"], "")
    return result


def _restore(
    ctx: JobContext, point: RecoveryPoint, target: dict[str, Any], source: engine.TieredStore
) -> dict[str, Any]:
    if source.vault is not None and not point.local:
        engine.ensure_readable(source.vault, str(point.pk))
    indexes = {int(key): index for key, index in _indexes(source, str(point.pk)).items()}
    with open_connection(point.vm.vcenter) as conn:
        if target["mode"] == "overwrite":
            return _overwrite(ctx, conn, point, source, indexes)
        if target["mode"] == "disk":
            return _one_disk(ctx, conn, point, source, indexes, target)
        return _to_new_vm(ctx, conn, point, source, indexes, target)


def _vm_overwritten(point: RecoveryPoint, target: dict[str, Any]) -> VirtualMachine | None:
    """The existing VM whose disks the restore writes over (None for a new VM)."""
    if target["mode"] == "overwrite":
        return point.vm
    if target["mode"] == "disk":
        vm = VirtualMachine.objects.filter(pk=target["vm_id"]).first()
        if vm is None:
            raise JobFailed("The VM to restore the disk into no longer exists; nothing was changed.")
        return vm
    return None


def _claim_or_refuse(ctx: JobContext, vm: VirtualMachine) -> None:
    """Hold the VM's backup claim for the whole restore, so no backup reads the disks being written
    (and a restore does not write under a running backup)."""
    if claims.claim_vm(vm.pk, ctx.run.pk):
        return
    holder = claims.claim_holder(vm.pk)
    doing = "A restore" if holder is not None and holder.kind == actions.RESTORE_VM_KIND else "A backup"
    raise JobFailed(f"{doing} of {vm.name} is running; try again when it has finished.")


def _indexes(source: engine.TieredStore, point_id: str) -> dict[str, engine.DiskIndex]:
    stored = source.open_point(point_id)
    return {key: stored.index(key) for key in stored.disk_keys}


def _finish(restore: Restore | None, nbytes: int, error: str) -> None:
    if restore is not None:
        actions.finish_restore(restore, bytes_done=nbytes, error=error)


def _to_new_vm(ctx, conn, point, source, indexes, target) -> dict[str, Any]:
    folder = Folder.objects.get(pk=target["folder_id"])
    pool = ResourcePool.objects.get(pk=target["pool_id"])
    datastore = Datastore.objects.get(pk=target["datastore_id"])
    host = Host.objects.get(pk=target["host_id"]) if target.get("host_id") else None
    ctx.log(f"Creating {target['name']} in {folder.path} on {datastore.name} with the captured hardware.")
    created = vsphere.create_vm_from_config(
        conn,
        point.config,
        name=target["name"],
        folder_moref=folder.moref,
        pool_moref=pool.moref,
        datastore_name=datastore.name,
        host_moref=host.moref if host else None,
    )
    for warning in created.warnings:
        ctx.log(warning, level="warning")
    disks = [
        DiskTarget(d.source_key, d.label, created.datacenter, d.datastore, d.flat_path)
        for d in created.disks
        if d.source_key in indexes
    ]
    try:
        written = _write_and_check(ctx, conn, source, indexes, disks)
    except BaseException:
        ctx.log(f"Removing the half-restored {target['name']}.", level="warning")
        vsphere.destroy_vm(conn, created.moref)
        raise
    ctx.log(f"{target['name']} is restored (powered off), instance UUID {created.instance_uuid}.")
    return {"vm": target["name"], "moref": created.moref, "bytes": written, "warnings": list(created.warnings)}


def _overwrite(ctx, conn, point, source, indexes) -> dict[str, Any]:
    vm = point.vm
    found = {info.moref: info for info in vsphere.fetch_vms(conn, [vm.moref])}
    if vm.moref not in found or found[vm.moref].instance_uuid != vm.instance_uuid:
        raise JobFailed(f"{vm.name} is no longer in vCenter; restore it as a new VM instead.")
    current = vsphere.disk_layout(conn, vm.moref)
    differences = vsphere.layout_differences(vsphere.layout_from_config(point.config), current)
    if differences:
        raise JobFailed(f"Refused: the disks of {vm.name} changed since the point. " + " ".join(differences))
    if vsphere.list_snapshots(conn, vm.moref):
        raise JobFailed(f"Refused: {vm.name} has snapshots; remove them first, then restore over it.")
    now = {place.position: place for place in current}
    disks = []
    for place in vsphere.layout_from_config(point.config):
        if place.key not in indexes:
            continue  # excluded from the backup: left as it is
        match = _FLAT_FILE.match(now[place.position].flat_file or "")
        if match is None:
            raise JobFailed(f"{place.label} of {vm.name} is not a single flat file; it cannot be overwritten.")
        disks.append(DiskTarget(place.key, place.label, datacenter_path(vm), match["datastore"], match["path"]))
    _check_before_writing(ctx, point, source, indexes, [d.source_key for d in disks])
    ctx.log(f"Powering off {vm.name} (state: {vsphere.power_state(conn, vm.moref)}).")
    vsphere.power_off(conn, vm.moref)
    written = _write_and_check(ctx, conn, source, indexes, disks)
    ctx.log(f"{vm.name} holds the disks of {timezone.localtime(point.created):%Y-%m-%d %H:%M} again; it is off.")
    return {"vm": vm.name, "moref": vm.moref, "bytes": written, "overwritten": [d.label for d in disks]}


def _one_disk(ctx, conn, point, source, indexes, target) -> dict[str, Any]:
    """One disk of the point into a disk of an existing VM (same size or larger), which is powered off."""
    vm = VirtualMachine.objects.select_related("datacenter").get(pk=target["vm_id"])
    source_key = int(target["source_disk"])
    if source_key not in indexes:
        raise JobFailed(f"The point has no disk {source_key}.")
    places = {place.key: place for place in vsphere.disk_layout(conn, vm.moref)}
    place = places.get(int(target["disk_key"]))
    if place is None:
        raise JobFailed(f"{vm.name} no longer has that disk; nothing was changed.")
    if place.capacity_bytes < indexes[source_key].image_size:
        raise JobFailed(f"{place.label} of {vm.name} is smaller than the disk in the point; nothing was changed.")
    if vsphere.list_snapshots(conn, vm.moref):
        raise JobFailed(f"Refused: {vm.name} has snapshots; remove them first.")
    match = _FLAT_FILE.match(place.flat_file or "")
    if match is None:
        raise JobFailed(f"{place.label} of {vm.name} is not a single flat file; it cannot be overwritten.")
    _check_before_writing(ctx, point, source, indexes, [source_key])
    ctx.log(f"Powering off {vm.name} (state: {vsphere.power_state(conn, vm.moref)}).")
    vsphere.power_off(conn, vm.moref)
    disk = DiskTarget(source_key, f"{place.label} of {vm.name}", datacenter_path(vm), match["datastore"], match["path"])
    written = _write_and_check(ctx, conn, source, indexes, [disk])
    return {"vm": vm.name, "moref": vm.moref, "bytes": written, "overwritten": [disk.label]}


def _check_before_writing(
    ctx: JobContext,
    point: RecoveryPoint,
    source: engine.TieredStore,
    indexes: dict[int, engine.DiskIndex],
    disk_keys: list[int],
) -> None:
    """Read and hash every chunk about to be written; refuse (JobFailed) before anything is changed
    if one cannot be read, and record the damage on the point."""
    ctx.log(f"Reading every chunk of {len(disk_keys)} disk(s) of the point before changing anything.")
    try:
        unreadable = point_check.find_unreadable_chunks(
            source,
            indexes,
            disk_keys,
            progress=lambda done, total: _check_progress(ctx, done, total),
            should_cancel=ctx.cancel_requested,
        )
    except point_check.CheckCancelled:
        raise JobCancelled() from None
    if not unreadable:
        ctx.log("Every chunk of the point reads back intact.")
        return
    damaged = [chunk for chunk in unreadable if not chunk.archived]
    labels = dict(point.disks.values_list("key", "label"))
    first = (damaged or unreadable)[0]
    where = f"chunk {first.digest.hex()} of {labels.get(first.disk_key) or f'disk {first.disk_key}'}"
    where += f" cannot be read: {first.detail}"
    if len(unreadable) > 1:
        where += f"; {len(unreadable) - 1} more chunk(s) cannot be read either"
    if damaged:
        found = f"{where[0].upper()}{where[1:]} (found by a restore's check before writing)."
        entries = [entry for chunk in damaged for entry in _damage_entries(point, source, chunk)]
        for tier in sorted({entry["tier"] for entry in entries}):
            digests = [entry["digest"] for entry in entries if entry["tier"] == tier]
            healing.mark_damaged(point, [found], tier, digests=digests, actor=actions.DAMAGE_FOUND_BY)
        refusal = f"Refused: this recovery point is damaged ({where}); nothing was changed."
    else:
        refusal = f"Refused: this recovery point cannot be read now ({where}); nothing was changed."
    raise JobFailed(f"{refusal} {actions.intact_alternative(point)}")


def _check_progress(ctx: JobContext, done: int, total: int) -> None:
    if done == 0:
        ctx.set_total(total, "chunks")
    ctx.progress(done)


def _damage_entries(
    point: RecoveryPoint, source: engine.TieredStore, chunk: point_check.UnreadableChunk
) -> list[dict[str, str]]:
    """Which copies are bad: TieredStore reads the local copy of a local point, and turns to the
    vault's only when that copy is missing (or when there is no local store)."""
    local = source.local is not None and point.local
    vault_read = source.vault is not None and (not local or isinstance(chunk.error, engine.ChunkMissing))
    tiers = (["local"] if local else []) + (["vault"] if vault_read else [])
    return [{"digest": chunk.digest.hex(), "tier": tier} for tier in tiers or ["local"]]


def _write_and_check(ctx, conn, source, indexes, disks: list[DiskTarget]) -> int:
    total = sum(indexes[d.source_key].image_size for d in disks)
    ctx.set_total(2 * total, "bytes")  # written, then read back
    done = 0
    for disk in disks:
        index = indexes[disk.source_key]
        ctx.log(f"Writing {disk.label} ({index.image_size / 2**20:,.0f} MiB) to [{disk.datastore}] {disk.path}.")
        base = done
        with engine.DiskReader(source, index) as reader:
            try:
                vsphere.write_datastore_file(
                    conn,
                    disk.datacenter,
                    disk.datastore,
                    disk.path,
                    reader,
                    index.image_size,
                    progress=lambda n, base=base: ctx.progress(base + n),
                    should_cancel=ctx.cancel_requested,
                )
            except vsphere.Cancelled:
                raise JobCancelled() from None
        done += index.image_size
    for disk in disks:
        _check_disk(ctx, conn, disk, indexes[disk.source_key], done)
        done += indexes[disk.source_key].image_size
    ctx.progress(2 * total)
    return total


def _check_disk(ctx, conn, disk: DiskTarget, index: engine.DiskIndex, base: int) -> None:
    """Read the disk back from the datastore and compare every chunk with the point's digest."""
    buffer = vsphere.read_buffer(index.chunk_size)
    with vsphere.DatastoreFile(conn, disk.datacenter, disk.datastore, disk.path, size=index.image_size) as written:
        for i in range(len(index)):
            ctx.check_cancelled()
            offset, length = index.extent(i)
            view = buffer[:length]
            if written.readinto(offset, view) != length:
                raise JobFailed(f"{disk.label} reads back shorter than the point: the restore is incomplete.")
            expected = index.digest(i)
            ok = bytes(view) == ZERO[:length] if expected is None else hashlib.sha256(view).digest() == expected
            if not ok:
                raise JobFailed(f"{disk.label} differs from the point at byte {offset}: the restore is not exact.")
            ctx.progress(base + offset + length)
    ctx.log(f"{disk.label}: every chunk checked against the point.")
