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

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import Datastore, Folder, Host, Network, ResourcePool, VirtualMachine
from inventory.paths import datacenter_path
from jobs.registry import job_kind
from jobs.runner import JobCancelled, JobContext, JobFailed
from protection import claims
from recovery import actions, point_check
from recovery.disk_copy import DiskTarget, NotExact, write_and_check
from recovery.models import Restore
from vault import archive, engine, healing
from vault.models import RecoveryPoint
from vault.storage import tiered_store

_FLAT_FILE = re.compile(r"^\[(?P<datastore>[^\]]+)\] (?P<path>.+)$")


@dataclass(frozen=True)
class RestoreResult:
    """What a whole-VM restore did, as its job run's result shows it."""

    vm: str
    moref: str
    bytes: int
    warnings: tuple[str, ...] | None = None  # a new VM: what could not be recreated as captured
    overwritten: tuple[str, ...] | None = None  # over existing disks: which disks were written

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"vm": self.vm, "moref": self.moref, "bytes": self.bytes}
        if self.warnings is not None:
            result["warnings"] = list(self.warnings)
        if self.overwritten is not None:
            result["overwritten"] = list(self.overwritten)
        return result


@job_kind(actions.RESTORE_VM_KIND, title="Restore a VM", queue="restore")
def restore_vm(ctx: JobContext, point_id: str, target: dict[str, Any]) -> dict[str, Any]:
    point = RecoveryPoint.objects.select_related("vm__vcenter", "vm__datacenter").get(pk=point_id)
    restore = Restore.objects.filter(job_id=ctx.run.pk).first()
    overwritten = None
    try:
        source = tiered_store()
        if source.vault is not None and not point.local:
            # Before any VM is created, claimed or powered off: archived chunks refuse the restore
            # (rehydrating is billed and takes hours, so only ever someone's confirmed request).
            archive.refuse_if_archived(source.vault, [point], nothing="nothing was restored or changed")
        overwritten = _vm_overwritten(point, target)
        if overwritten is not None:
            _claim_or_refuse(ctx, overwritten)
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
    _finish(restore, result.bytes, "")
    return result.as_dict()


def restore_within(ctx: JobContext, point: RecoveryPoint, target: dict[str, Any]) -> RestoreResult:
    """A restore to a new VM run inside another job (a restore test's): no Restore row, no audit of
    its own (the caller's job is audited); the VM is removed again if writing fails."""
    return _restore(ctx, point, target, tiered_store())


def _restore(
    ctx: JobContext, point: RecoveryPoint, target: dict[str, Any], source: engine.TieredStore
) -> RestoreResult:
    indexes = {int(key): index for key, index in _indexes(source, str(point.pk)).items()}
    with open_connection(point.vm.vcenter) as conn:
        restorer = _Restorer(ctx, conn, point, source, indexes)
        if target["mode"] == "overwrite":
            return restorer.overwrite()
        if target["mode"] == "disk":
            return restorer.one_disk(
                vm_id=target["vm_id"], source_key=int(target["source_disk"]), disk_key=int(target["disk_key"])
            )
        return restorer.to_new_vm(target)


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


@dataclass(frozen=True)
class _Restorer:
    """What every kind of whole-VM restore works with: the job, the vCenter connection, and the point
    with the index of each of its disks (by disk key) in the store it is read from."""

    ctx: JobContext
    conn: vsphere.Connection
    point: RecoveryPoint
    source: engine.TieredStore
    indexes: dict[int, engine.DiskIndex]

    # ---- the three kinds ----

    def to_new_vm(self, target: dict[str, Any]) -> RestoreResult:
        """A new VM with the captured hardware, its disks written from the point (deleted again if
        anything fails or the job is cancelled)."""
        created = self._create_vm(target)
        for warning in created.warnings:
            self.ctx.log(warning, level="warning")
        disks = [
            DiskTarget(d.source_key, d.label, created.datacenter, d.datastore, d.flat_path)
            for d in created.disks
            if d.source_key in self.indexes
        ]
        try:
            written = self._write_and_check(disks)
        except BaseException:
            self.ctx.log(f"Removing the half-restored {target['name']}.", level="warning")
            vsphere.destroy_vm(self.conn, created.moref)
            raise
        self.ctx.log(f"{target['name']} is restored (powered off), instance UUID {created.instance_uuid}.")
        return RestoreResult(target["name"], created.moref, written, warnings=tuple(created.warnings))

    def overwrite(self) -> RestoreResult:
        """The point's disks over the original VM's, if it still has the disks it had then."""
        vm = self.point.vm
        disks = self._original_disks(vm)
        self._check_and_power_off(vm, [d.source_key for d in disks])
        written = self._write_and_check(disks)
        when = timezone.localtime(self.point.created)
        self.ctx.log(f"{vm.name} holds the disks of {when:%Y-%m-%d %H:%M} again; it is off.")
        return RestoreResult(vm.name, vm.moref, written, overwritten=tuple(d.label for d in disks))

    def one_disk(self, *, vm_id: int, source_key: int, disk_key: int) -> RestoreResult:
        """One disk of the point into a disk of an existing VM (same size or larger), which is powered
        off."""
        vm = VirtualMachine.objects.select_related("datacenter").get(pk=vm_id)
        if source_key not in self.indexes:
            raise JobFailed(f"The point has no disk {source_key}.")
        place = {place.key: place for place in vsphere.disk_layout(self.conn, vm.moref)}.get(disk_key)
        if place is None:
            raise JobFailed(f"{vm.name} no longer has that disk; nothing was changed.")
        if place.capacity_bytes < self.indexes[source_key].image_size:
            raise JobFailed(f"{place.label} of {vm.name} is smaller than the disk in the point; nothing was changed.")
        if vsphere.list_snapshots(self.conn, vm.moref):
            raise JobFailed(f"Refused: {vm.name} has snapshots; remove them first.")
        disk = _existing_disk(vm, place, source_key, label=f"{place.label} of {vm.name}")
        self._check_and_power_off(vm, [source_key])
        written = self._write_and_check([disk])
        return RestoreResult(vm.name, vm.moref, written, overwritten=(disk.label,))

    # ---- before writing ----

    def _create_vm(self, target: dict[str, Any]) -> vsphere.VmCreated:
        folder = Folder.objects.get(pk=target["folder_id"])
        pool = ResourcePool.objects.get(pk=target["pool_id"])
        datastore = Datastore.objects.get(pk=target["datastore_id"])
        host = Host.objects.get(pk=target["host_id"]) if target.get("host_id") else None
        where = f"{folder.inventory_path or folder.path}, pool {pool.inventory_path or pool.name}"
        self.ctx.log(f"Creating {target['name']} in {where}, on {datastore.name}, with the captured hardware.")
        return vsphere.create_vm_from_config(
            self.conn,
            self._config_with_networks(target.get("nics")),
            name=target["name"],
            folder_moref=folder.moref,
            pool_moref=pool.moref,
            datastore_name=datastore.name,
            host_moref=host.moref if host else None,
        )

    def _config_with_networks(self, chosen: dict[str, int | None] | None) -> dict[str, Any]:
        """The point's configuration with each adapter's network as chosen (None: disconnected);
        logged, with a warning when the original VM still runs beside the new one. Targets made
        before networks could be chosen (no "nics") keep the captured networks."""
        if chosen is None:
            return self.point.config
        chosen_pks = [pk for pk in chosen.values() if pk]
        rows = list(Network.objects.filter(pk__in=chosen_pks).values_list("pk", "moref", "inventory_path"))
        networks = {pk: moref for pk, moref, _ in rows}
        names = {pk: path for pk, _, path in rows}
        morefs: dict[int, str | None] = {}
        for nic in self.point.config.get("nics") or []:
            if str(nic.get("key")) not in chosen:
                continue
            pk = chosen[str(nic["key"])]
            if pk and pk not in networks:
                raise JobFailed(f"The network chosen for {nic['label']} no longer exists; nothing was created.")
            morefs[nic["key"]] = networks[pk] if pk else None
            place = f"on {names[pk]}" if pk else "disconnected"
            self.ctx.log(f"{nic['label']} (was on {nic.get('network') or 'no network'}): {place}.")
        if self.point.vm.removed_at is None and morefs:
            self.ctx.log(_beside_original_warning(self.point.vm.name, morefs), level="warning")
        return vsphere.with_nic_networks(self.point.config, morefs)

    def _original_disks(self, vm: VirtualMachine) -> list[DiskTarget]:
        """The files the point's disks are written to, refused unless the VM is the one backed up and
        has the same disks, and no snapshots, as at the point."""
        found = {info.moref: info for info in vsphere.fetch_vms(self.conn, [vm.moref])}
        if vm.moref not in found or found[vm.moref].instance_uuid != vm.instance_uuid:
            raise JobFailed(f"{vm.name} is no longer in vCenter; restore it as a new VM instead.")
        current = vsphere.disk_layout(self.conn, vm.moref)
        then = vsphere.layout_from_config(self.point.config)
        differences = vsphere.layout_differences(then, current)
        if differences:
            raise JobFailed(f"Refused: the disks of {vm.name} changed since the point. " + " ".join(differences))
        if vsphere.list_snapshots(self.conn, vm.moref):
            raise JobFailed(f"Refused: {vm.name} has snapshots; remove them first, then restore over it.")
        now = {place.position: place for place in current}
        # A disk excluded from the backup is left as it is.
        return [
            _existing_disk(vm, now[place.position], place.key, label=place.label)
            for place in then
            if place.key in self.indexes
        ]

    def _check_and_power_off(self, vm: VirtualMachine, disk_keys: list[int]) -> None:
        """Everything a restore over existing disks does before its first write, which cannot be
        undone: every chunk to be written is read first, then the VM is powered off."""
        self._check_before_writing(disk_keys)
        self.ctx.log(f"Powering off {vm.name} (state: {vsphere.power_state(self.conn, vm.moref)}).")
        vsphere.power_off(self.conn, vm.moref)

    def _check_before_writing(self, disk_keys: list[int]) -> None:
        """Read and hash every chunk about to be written; refuse (JobFailed) before anything is changed
        if one cannot be read, and record the damage on the point."""
        self.ctx.log(f"Reading every chunk of {len(disk_keys)} disk(s) of the point before changing anything.")
        try:
            unreadable = point_check.find_unreadable_chunks(
                self.source,
                self.indexes,
                disk_keys,
                progress=self._check_progress,
                should_cancel=self.ctx.cancel_requested,
            )
        except point_check.CheckCancelled:
            raise JobCancelled() from None
        if not unreadable:
            self.ctx.log("Every chunk of the point reads back intact.")
            return
        raise JobFailed(f"{self._refusal(unreadable)} {actions.intact_alternative(self.point)}")

    def _check_progress(self, done: int, total: int) -> None:
        if done == 0:
            self.ctx.set_total(total, "chunks")
        self.ctx.progress(done)

    def _refusal(self, unreadable: list[point_check.UnreadableChunk]) -> str:
        """Why the restore is refused, naming the first bad chunk; damaged chunks (not merely archived
        ones) are recorded on the point."""
        damaged = [chunk for chunk in unreadable if not chunk.archived]
        labels = dict(self.point.disks.values_list("key", "label"))
        first = (damaged or unreadable)[0]
        where = f"chunk {first.digest.hex()} of {labels.get(first.disk_key) or f'disk {first.disk_key}'}"
        where += f" cannot be read: {first.detail}"
        if len(unreadable) > 1:
            where += f"; {len(unreadable) - 1} more chunk(s) cannot be read either"
        if not damaged:
            return f"Refused: this recovery point cannot be read now ({where}); nothing was changed."
        found = f"{where[0].upper()}{where[1:]} (found by a restore's check before writing)."
        entries = [entry for chunk in damaged for entry in self._damage_entries(chunk)]
        for tier in sorted({entry["tier"] for entry in entries}):
            digests = [entry["digest"] for entry in entries if entry["tier"] == tier]
            healing.mark_damaged(self.point, [found], tier, digests=digests, actor=actions.DAMAGE_FOUND_BY)
        return f"Refused: this recovery point is damaged ({where}); nothing was changed."

    def _damage_entries(self, chunk: point_check.UnreadableChunk) -> list[dict[str, str]]:
        """Which copies are bad: TieredStore reads the local copy of a local point, and turns to the
        vault's only when that copy is missing (or when there is no local store)."""
        local = self.source.local is not None and self.point.local
        vault_read = self.source.vault is not None and (not local or isinstance(chunk.error, engine.ChunkMissing))
        tiers = (["local"] if local else []) + (["vault"] if vault_read else [])
        return [{"digest": chunk.digest.hex(), "tier": tier} for tier in tiers or ["local"]]

    # ---- writing and reading back ----

    def _write_and_check(self, disks: list[DiskTarget]) -> int:
        """Write every disk and read it back (recovery.disk_copy); returns the bytes written."""
        total = sum(self.indexes[d.source_key].image_size for d in disks)
        self.ctx.set_total(2 * total, "bytes")  # written, and read back
        done = 0
        for disk in disks:
            index = self.indexes[disk.source_key]
            self.ctx.log(
                f"Writing {disk.label} ({index.image_size / 2**20:,.0f} MiB) to [{disk.datastore}] {disk.path}, "
                "reading every chunk back as it goes."
            )
            monitor = engine.Monitor(progress=self._progress_from(done), should_cancel=self.ctx.cancel_requested)
            try:
                write_and_check(self.conn, disk, self.source, index, monitor)
            except (vsphere.Cancelled, engine.Cancelled):
                raise JobCancelled() from None
            except NotExact as exc:
                raise JobFailed(str(exc)) from None
            self.ctx.log(f"{disk.label}: every chunk checked against the point.")
            done += 2 * index.image_size
        self.ctx.progress(2 * total)
        return total

    def _progress_from(self, done_before: int) -> Callable[[int], None]:
        return lambda n: self.ctx.progress(done_before + n)


def _beside_original_warning(original: str, networks: dict[int, str | None]) -> str:
    """What a new VM beside its still existing original means for the network (both have one identity)."""
    connected = sum(1 for moref in networks.values() if moref is not None)
    if not connected:
        return (
            f"{original} still exists: the restored VM's network adapters are left disconnected, so two machines "
            "with one identity (name, addresses) are never on one network; connect them once one is changed."
        )
    return (
        f"{original} still exists and {connected} network adapter(s) of the restored VM are connected: two machines "
        "with one identity (name, addresses) may now be on one network."
    )


def _existing_disk(vm: VirtualMachine, place: vsphere.DiskPlace, source_key: int, *, label: str) -> DiskTarget:
    """Where a disk of the point is written over the existing disk `place` of `vm`: its flat file."""
    match = _FLAT_FILE.match(place.flat_file or "")
    if match is None:
        raise JobFailed(f"{place.label} of {vm.name} is not a single flat file; it cannot be overwritten.")
    return DiskTarget(source_key, label, datacenter_path(vm), match["datastore"], match["path"])
