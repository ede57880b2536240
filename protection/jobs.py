"""Background jobs of the protection app: one backup per VM, and the scheduler's tick."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import record
from inventory.models import VCenter, VirtualMachine
from jobs.models import JobRun
from jobs.registry import job_kind
from jobs.runner import JobCancelled, JobContext, JobFailed
from protection import claims
from protection.models import BackupSlot, SnapshotCleanup
from protection.scheduling import BACKUP_KIND


@job_kind(BACKUP_KIND, title="Backup", queue="backup")
def backup(ctx: JobContext, vm_id: int, group_id: int, slot: str | None, window_end: str | None) -> dict[str, Any]:
    if window_end and timezone.now() > datetime.fromisoformat(window_end):
        ctx.log(f"The backup window closed at {window_end}; this VM was not started.", level="warning")
        raise JobCancelled()
    vm = VirtualMachine.objects.select_related("vcenter").filter(pk=vm_id).first()
    if vm is None or vm.removed_at is not None:
        raise JobFailed("The VM no longer exists in vCenter; nothing was backed up.")
    if vm.protection_group_id != group_id:
        raise JobFailed(f"{vm.name} left its protection group before the backup started.")
    from protection import backup as engine

    if not claims.claim_vm(vm_id, ctx.run.pk):
        holder = claims.claim_holder(vm_id)
        # The other holder of a VM's claim is a restore writing over its disks (recovery.jobs).
        doing = "Another backup" if holder is None or holder.kind == BACKUP_KIND else "A restore"
        raise JobFailed(f"{doing} of {vm.name} is running; this one was not started.")
    try:
        _wait_for_slot(ctx)
        return engine.backup_vm(ctx, vm)
    finally:
        BackupSlot.objects.filter(job=ctx.run.pk).update(job=None)
        claims.release_vm(vm_id, ctx.run.pk)


SLOT_POLL_SECONDS = 2.0


def _wait_for_slot(ctx: JobContext) -> None:
    """Hold one of the global backup slots; wait (cancellable) while all are taken."""
    limit = settings.MAX_CONCURRENT_BACKUPS
    BackupSlot.objects.bulk_create([BackupSlot(number=n) for n in range(1, limit + 1)], ignore_conflicts=True)
    told = False
    while True:
        for number in range(1, limit + 1):
            if BackupSlot.objects.filter(number=number, job__isnull=True).update(job=ctx.run.pk):
                return
            holder = BackupSlot.objects.filter(number=number).values_list("job", flat=True).first()
            holder_dead = holder and not JobRun.objects.filter(pk=holder, status=JobRun.Status.RUNNING).exists()
            if holder_dead and BackupSlot.objects.filter(number=number, job=holder).update(job=ctx.run.pk):
                return  # the holder died without releasing it
        if not told:
            ctx.log(f"Waiting: {limit} backups are already running (MAX_CONCURRENT_BACKUPS).")
            told = True
        ctx.check_cancelled()
        time.sleep(SLOT_POLL_SECONDS)


CLEANUP_KIND = "protection.cleanup_snapshots"
# Audited per VM where the cleanup found leftovers or failed, next to its SnapshotCleanup row.
LEFTOVERS_REMOVED = "protection.leftover_snapshots_removed"
LEFTOVERS_NOT_REMOVED = "protection.leftover_snapshots_not_removed"
CLEANUP_ACTOR = "snapshot cleanup"


@job_kind(CLEANUP_KIND, title="Remove leftover backup snapshots", queue="maintenance")
def cleanup_snapshots(ctx: JobContext, vcenter_id: int | None = None) -> dict[str, Any]:
    """Find our snapshots left by a killed worker or a lost connection, and remove them."""
    from inventory import vcenter as vsphere
    from inventory.connection import open_connection
    from protection.backup import remove_orphan_snapshots

    vcenters = VCenter.objects.filter(pk=vcenter_id) if vcenter_id else VCenter.objects.all()
    # Where leftovers can be: VMs vCenter reports snapshots on, and VMs whose recent backup did not
    # end well (the inventory may not have seen that backup's snapshot yet).
    troubled = JobRun.objects.filter(
        kind=BACKUP_KIND,
        status__in=[JobRun.Status.FAILED, JobRun.Status.ERRORED, JobRun.Status.CANCELLED],
        created__gte=timezone.now() - timedelta(days=7),
    ).values_list("params__vm_id", flat=True)
    suspects = Q(snapshot_count__gt=0) | Q(pk__in=[pk for pk in troubled if pk])
    removed, failures = 0, []
    job = str(ctx.run.pk)
    for vc in vcenters:
        vms = list(VirtualMachine.objects.filter(suspects, vcenter=vc, removed_at__isnull=True))
        if not vms:
            continue
        try:
            with open_connection(vc) as conn:
                for vm in vms:
                    try:
                        found = remove_orphan_snapshots(conn, vm.moref, lambda msg, vm=vm: ctx.log(f"{vm.name}: {msg}"))
                    except vsphere.VCenterError as exc:
                        _record_cleanup(vm, job, SnapshotCleanup.Outcome.NOT_REMOVED, error=str(exc))
                        raise
                    if found:
                        _record_cleanup(vm, job, SnapshotCleanup.Outcome.REMOVED, removed=found)
                    removed += found
        except vsphere.VCenterError as exc:
            failures.append(f"{vc.name}: {exc}")
    if failures:
        raise JobFailed("Could not check every vCenter: " + "; ".join(failures))
    return {"removed": removed}


def _record_cleanup(vm: VirtualMachine, job: str, outcome: str, *, removed: int = 0, error: str = "") -> None:
    """Keep what the cleanup did on the VM (read by the leftover-snapshots alert) and audit it, together."""
    with transaction.atomic():
        SnapshotCleanup.objects.update_or_create(
            vm=vm,
            defaults={
                "job": job,
                "checked_at": timezone.now(),
                "outcome": outcome,
                "removed": removed,
                "error": error,
            },
        )
        if outcome == SnapshotCleanup.Outcome.REMOVED:
            record(CLEANUP_ACTOR, LEFTOVERS_REMOVED, target=vm, details={"job": job, "removed": removed})
        else:
            record(CLEANUP_ACTOR, LEFTOVERS_NOT_REMOVED, target=vm, details={"job": job, "error": error})
