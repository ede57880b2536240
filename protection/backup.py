"""Backing up one VM: snapshot, read the disks through the datastore HTTP API, publish a recovery point.

Order matters for "nothing lost": the store publishes the point only once every chunk and index is
durable, the database row is written after that (and the store point deleted again if the row cannot
be written), and the snapshot is removed in every case — success, failure or cancel. A worker killed
outright leaves a tagged snapshot that `remove_orphan_snapshots` deletes on the next sync.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from django.db import transaction
from django.utils import timezone

from inventory import vcenter as vsphere
from inventory.connection import open_connection
from inventory.models import VirtualDisk, VirtualMachine
from inventory.paths import datacenter_path
from jobs.models import JobRun
from jobs.runner import JobCancelled, JobContext, JobFailed
from protection.models import Policy, ProtectionGroup
from vault import actions as vault_actions
from vault import engine, healing, signals
from vault.models import RecoveryPoint, RecoveryPointDisk
from vault.storage import local_store

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "vmbackup"
# Our snapshots carry this tag and the job id, so leftovers are recognised and never confused with
# the administrators' own snapshots.
SNAPSHOT_TAG = "Taken by VM Backup for a backup; removed automatically."


def store() -> engine.Store:
    return local_store()


@dataclass
class Snapshot:
    moref: str
    consistency: str
    note: str


def _is_ours(snapshot: vsphere.SnapshotInfo) -> bool:
    return snapshot.name == SNAPSHOT_NAME and (snapshot.description or "").startswith(SNAPSHOT_TAG)


def _job_of(snapshot: vsphere.SnapshotInfo) -> str:
    return (snapshot.description or "").rpartition("job=")[2].strip()


def remove_orphan_snapshots(conn: vsphere.Connection, vm_moref: str, log: Any = logger.info) -> int:
    """Remove our snapshots whose job is no longer running (a killed worker, a lost connection)."""
    removed = 0
    for snapshot in vsphere.list_snapshots(conn, vm_moref):
        if not _is_ours(snapshot):
            continue
        job = _job_of(snapshot)
        if job and JobRun.objects.filter(pk=job, status=JobRun.Status.RUNNING).exists():
            continue
        vsphere.remove_snapshot(conn, snapshot.moref)
        log(f"Removed a leftover backup snapshot from {snapshot.created:%Y-%m-%d %H:%M}.")
        removed += 1
    return removed


def _take_snapshot(conn: vsphere.Connection, vm: VirtualMachine, policy: Policy, ctx: JobContext) -> Snapshot:
    description = f"{SNAPSHOT_TAG} job={ctx.run.pk}"
    if policy.consistency == Policy.Consistency.CRASH:
        return Snapshot(vsphere.create_snapshot(conn, vm.moref, SNAPSHOT_NAME, description, quiesce=False), "crash", "")
    try:
        moref = vsphere.create_snapshot(conn, vm.moref, SNAPSHOT_NAME, description, quiesce=True)
        return Snapshot(moref, "application", "")
    except vsphere.QuiesceFailed as exc:
        if not policy.fallback_to_crash:
            raise JobFailed(f"Quiescing {vm.name} failed and the policy does not allow a fallback: {exc}") from None
        note = f"Quiescing failed ({exc}); fell back to a crash-consistent snapshot as the policy allows."
        ctx.log(note, level="warning")
        moref = vsphere.create_snapshot(conn, vm.moref, SNAPSHOT_NAME, description, quiesce=False)
        return Snapshot(moref, "crash", note)


def _remove_snapshot(conn: vsphere.Connection, snapshot: Snapshot, ctx: JobContext) -> None:
    for attempt in range(3):
        try:
            vsphere.remove_snapshot(conn, snapshot.moref)
            ctx.log("Snapshot removed.")
            return
        except vsphere.VCenterError as exc:
            if attempt == 2:
                ctx.log(
                    f"The snapshot could not be removed now ({exc}); the next inventory sync removes it.",
                    level="warning",
                )
                return
            time.sleep(2)


def _disks_to_back_up(vm: VirtualMachine, ctx: JobContext) -> list[VirtualDisk]:
    group = vm.protection_group
    excluded = set(group.excluded_disks.values_list("pk", flat=True)) if group else set()
    chosen = []
    for disk in vm.disks.all():
        if disk.pk in excluded:
            ctx.log(f"{disk.label} skipped: excluded in the protection group.")
        elif not disk.protectable:
            ctx.log(f"{disk.label} skipped: {disk.not_protectable_reason}", level="warning")
        else:
            chosen.append(disk)
    return chosen


def _previous(vm: VirtualMachine, st: engine.Store) -> tuple[RecoveryPoint | None, engine.Point | None]:
    point = RecoveryPoint.objects.filter(vm=vm, local=True, damaged=False).order_by("-created").first()
    if point is None:
        return None, None
    try:
        return point, st.open_point(str(point.pk))
    except engine.StoreError:
        return None, None


def _read_plan(
    conn: vsphere.Connection,
    vm: VirtualMachine,
    snapshot: Snapshot,
    disk: VirtualDisk,
    change_id: str,
    previous: RecoveryPoint | None,
    previous_index: engine.DiskIndex | None,
) -> tuple[list[tuple[int, int]] | None, engine.DiskIndex | None, str]:
    """What to read, as backup_disk's changed_areas (None: everything) and previous, and why (recorded
    on the point): the areas changed since the last point, or on a first backup the areas in use."""
    if not change_id:
        return (
            None,
            previous_index,
            "Changed block tracking is off for this VM: read in full, deduplication skips known chunks.",
        )
    old = previous.disks.filter(key=disk.key).first() if previous else None
    if previous_index is None or old is None or not old.change_id:
        return _areas_in_use(conn, vm, snapshot, disk, previous_index)
    if previous_index.image_size != disk.capacity_bytes:
        return None, previous_index, "The disk was resized since the last point: read in full."
    try:
        areas = vsphere.query_changed_areas(
            conn, vm.moref, snapshot.moref, disk.key, old.change_id, disk.capacity_bytes
        )
    except vsphere.ChangeTrackingUnavailable as exc:
        return None, previous_index, f"vCenter could not say what changed ({exc}): read in full."
    changed = sum(length for _, length in areas)
    return areas, previous_index, f"Changed block tracking: {changed / 1024**2:.1f} MiB changed since the last point."


def _areas_in_use(
    conn: vsphere.Connection,
    vm: VirtualMachine,
    snapshot: Snapshot,
    disk: VirtualDisk,
    previous_index: engine.DiskIndex | None,
) -> tuple[list[tuple[int, int]] | None, engine.DiskIndex | None, str]:
    """No earlier point with a change id: changed block tracking's areas in use (change id "*"), so a
    thin disk's never written areas are not read; they are zeros. The areas are not changes since
    any point, so no previous index goes with them."""
    try:
        areas = vsphere.query_changed_areas(conn, vm.moref, snapshot.moref, disk.key, "*", disk.capacity_bytes)
    except vsphere.ChangeTrackingUnavailable as exc:
        return (
            None,
            previous_index,
            f"No earlier point with a change id, and vCenter could not say what is in use ({exc}): read in full.",
        )
    in_use = sum(length for _, length in areas)
    return (
        areas,
        None,
        (
            f"No earlier point with a change id: read the {in_use / 1024**2:,.1f} MiB in use "
            f"(changed block tracking), the rest of the {disk.capacity_bytes / 1024**2:,.0f} MiB is zeros."
        ),
    )


def backup_vm(ctx: JobContext, vm: VirtualMachine) -> dict[str, Any]:
    # protection.jobs.backup checked that the VM is in the group it was queued for.
    policy = cast(ProtectionGroup, vm.protection_group).policy
    disks = _disks_to_back_up(vm, ctx)
    st = store()
    previous, previous_point = _previous(vm, st)
    started = timezone.now()
    with open_connection(vm.vcenter) as conn:
        found = {info.moref: info for info in vsphere.fetch_vms(conn, [vm.moref])}
        if vm.moref not in found or found[vm.moref].instance_uuid != vm.instance_uuid:
            raise JobFailed(f"{vm.name} is no longer in vCenter under {vm.moref}; nothing was backed up.")
        remove_orphan_snapshots(conn, vm.moref, ctx.log)
        snapshot = _take_snapshot(conn, vm, policy, ctx)
        ctx.log(f"Snapshot taken ({snapshot.consistency}-consistent).")
        try:
            config = vsphere.vm_config(conn, vm.moref)
            snap_disks = {d.key: d for d in vsphere.snapshot_disks(conn, snapshot.moref)}
            change_ids = vsphere.snapshot_change_ids(conn, snapshot.moref) if found[vm.moref].cbt_enabled else {}
            ctx.set_total(sum(d.capacity_bytes for d in disks), "bytes")
            point_id = uuid.uuid4()
            results: list[DiskResult] = []
            try:
                # The previous point is pinned as the base, so a prune cannot delete it meanwhile.
                pending = st.begin_point(str(point_id), base=previous_point.id if previous_point else None)
            except engine.PointNotFound:  # pruned just now: a full read instead (dedup still applies)
                previous = previous_point = None
                pending = st.begin_point(str(point_id))
            with pending:
                source = _SnapshotDisks(ctx, conn, vm, snapshot, snap_disks, change_ids, previous, previous_point)
                done = 0
                for disk in disks:
                    results.append(source.back_up(disk, pending, done_before=done))
                    done += disk.capacity_bytes
                facts = _point_facts(vm, started, snapshot, config, results, ctx)
                pending.commit(facts.manifest_meta())
        except engine.Cancelled:
            raise JobCancelled() from None
        except engine.StoreFull as exc:
            raise JobFailed(f"The backup store is full: {exc}. Earlier recovery points are intact.") from None
        except (engine.SourceError, vsphere.VCenterError) as exc:
            raise JobFailed(f"Reading {vm.name} from vCenter failed: {exc}. No recovery point was written.") from None
        finally:
            _remove_snapshot(conn, snapshot, ctx)
    try:
        point = _record(point_id, facts)
    except BaseException:
        st.delete_point(str(point_id))  # no store point without its row
        raise
    _recheck_repaired(pending, ctx)
    ctx.log(
        f"Recovery point {point.pk} written: {point.logical_bytes / 1024**2:.0f} MiB of disks, "
        f"{point.new_bytes / 1024**2:.1f} MiB new in the store."
    )
    if policy.replicate and vault_actions.enqueue_replication(point, user=ctx.run.created_by):
        ctx.log("Replication to the vault queued.")
    return {"point": str(point.pk), "logical_bytes": point.logical_bytes, "new_bytes": point.new_bytes}


@dataclass(frozen=True)
class DiskResult:
    """One disk of a backup: what was read, why that way, and what the store made of it."""

    disk: VirtualDisk
    file_name: str  # the disk's file as the snapshot names it
    change_id: str  # CBT change id at the snapshot ("" without CBT)
    reason: str  # why it was read in full or only where CBT said it changed
    backup: engine.DiskBackup

    def as_row(self) -> dict[str, Any]:
        """The disk as its RecoveryPointDisk row and the point's manifest record it."""
        stats = self.backup.stats
        return {
            "key": self.disk.key,
            "label": self.disk.label,
            "capacity_bytes": stats.logical_bytes,
            "file_name": self.file_name,
            "read_path": stats.path,
            "read_reason": self.reason,
            "change_id": self.change_id,
            "bytes_read": stats.bytes_read,
            "new_bytes": stats.bytes_stored_new,
            "chunks": stats.chunks_total,
            "new_chunks": stats.chunks_new,
            "zero_chunks": stats.chunks_zero,
        }


@dataclass
class _SnapshotDisks:
    """What every disk of one backup is read with: the snapshot, its disks and change ids, and the
    previous point whose indexes let unchanged chunks be reused."""

    ctx: JobContext
    conn: vsphere.Connection
    vm: VirtualMachine
    snapshot: Snapshot
    snap_disks: dict[int, Any]
    change_ids: dict[int, str]
    previous: RecoveryPoint | None
    previous_point: engine.Point | None

    def back_up(self, disk: VirtualDisk, pending: engine.PendingPoint, *, done_before: int) -> DiskResult:
        captured = self.snap_disks.get(disk.key)
        if captured is None:
            raise JobFailed(f"{disk.label} is not in the snapshot: the VM's disks changed during the backup.")
        datacenter = datacenter_path(self.vm)
        flat = self._flat_extent(disk, datacenter, captured)
        previous_index = None
        if self.previous_point is not None and str(disk.key) in self.previous_point.disk_keys:
            previous_index = self.previous_point.index(str(disk.key))
        change_id = self.change_ids.get(disk.key, "")
        areas, previous_index, reason = _read_plan(
            self.conn, self.vm, self.snapshot, disk, change_id, self.previous, previous_index
        )
        self.ctx.log(f"{disk.label}: {reason}")
        size = disk.capacity_bytes
        with vsphere.DatastoreFile(self.conn, datacenter, captured.datastore_name, flat, size=size) as source:
            result = engine.backup_disk(
                pending,
                str(disk.key),
                source,
                previous=previous_index,
                changed_areas=areas,
                monitor=engine.Monitor(
                    progress=lambda n: self.ctx.progress(done_before + n), should_cancel=self.ctx.cancel_requested
                ),
            )
        return DiskResult(disk, captured.file_name, change_id, reason, result)

    def _flat_extent(self, disk: VirtualDisk, datacenter: str, captured: Any) -> str:
        """The one flat file holding the disk's bytes (other layouts are refused with a reason)."""
        descriptor = vsphere.read_vmdk_descriptor(self.conn, datacenter, captured.datastore_name, captured.path)
        extents = descriptor.extents
        if not descriptor.is_flat or len(extents) != 1 or extents[0].offset or extents[0].path is None:
            raise JobFailed(
                f"{disk.label}: {descriptor.create_type} disks with {len(extents)} extent(s) are not supported yet; "
                "only single flat extents are."
            )
        return extents[0].path


@dataclass
class PointFacts:
    """Everything a RecoveryPoint row and its disk rows hold, known at commit. The same facts go
    into the store point's manifest, so a point whose row was never written (a worker killed
    between the two) can be adopted from the store alone (vault/reconcile.py)."""

    vm: VirtualMachine
    job_id: str
    created: dt.datetime
    completed: dt.datetime
    consistency: str
    consistency_note: str
    config: dict[str, Any]
    disks: list[dict[str, Any]]

    def totals(self) -> dict[str, int]:
        return {
            "logical_bytes": sum(d["capacity_bytes"] for d in self.disks),
            "new_bytes": sum(d["new_bytes"] for d in self.disks),
            "read_bytes": sum(d["bytes_read"] for d in self.disks),
        }

    def manifest_meta(self) -> dict[str, Any]:
        vm = self.vm
        return {
            "vm": vm.name,
            "vm_id": vm.pk,
            "instance_uuid": vm.instance_uuid,
            "vcenter": vm.vcenter.name,
            "group_id": vm.protection_group_id,
            "created": self.created.isoformat(),
            "completed": self.completed.isoformat(),
            "job": self.job_id,
            "consistency": self.consistency,
            "consistency_note": self.consistency_note,
            "config": self.config,
            "disks": self.disks,
            **self.totals(),
        }


def _point_facts(
    vm: VirtualMachine,
    started: dt.datetime,
    snapshot: Snapshot,
    config: dict[str, Any],
    results: list[DiskResult],
    ctx: JobContext,
) -> PointFacts:
    disks = [result.as_row() for result in results]
    return PointFacts(
        vm=vm,
        job_id=str(ctx.run.pk),
        created=started,
        completed=timezone.now(),
        consistency=snapshot.consistency,
        consistency_note=snapshot.note,
        config=config,
        disks=disks,
    )


@transaction.atomic
def _record(point_id: uuid.UUID, facts: PointFacts) -> RecoveryPoint:
    point = RecoveryPoint.objects.create(
        id=point_id,
        vm=facts.vm,
        group_id=facts.vm.protection_group_id,
        job_id=facts.job_id,
        created=facts.created,
        completed=facts.completed,
        consistency=facts.consistency,
        consistency_note=facts.consistency_note,
        duration_seconds=(facts.completed - facts.created).total_seconds(),
        config=facts.config,
        **facts.totals(),
    )
    RecoveryPointDisk.objects.bulk_create(RecoveryPointDisk(point=point, **disk) for disk in facts.disks)
    signals.point_committed.send(sender=RecoveryPoint, point=point)
    return point


def _recheck_repaired(pending: engine.PendingPoint, ctx: JobContext) -> None:
    """This backup stored again chunks that had been found corrupt: the damaged points that
    referenced them are whole again (recorded with the time and an audit row)."""
    if not pending.repaired:
        return
    ctx.log(f"{len(pending.repaired)} chunk(s) found corrupt earlier were written again by this backup.")
    digests = {digest.hex() for digest in pending.repaired}
    for point in healing.recheck_damaged(digests, actor=ctx.run.created_by or ctx.run.kind, how="the next backup"):
        ctx.log(f"{healing.point_label(point)}: repaired.")
