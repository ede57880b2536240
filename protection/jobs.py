"""Background jobs of the protection app: one backup per VM, and the scheduler's tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from inventory.models import VirtualMachine
from jobs.registry import job_kind
from jobs.runner import JobCancelled, JobContext, JobFailed
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

    return engine.backup_vm(ctx, vm)
