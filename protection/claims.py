"""A VM's claim: the one job (a backup, or a restore that writes over the VM's disks) allowed to work on
a VM at a time, recorded in `VirtualMachine.backup_job`.

Taken with one conditional UPDATE, so two workers can never both hold it. A claim whose holder is no
longer RUNNING (its worker died and the reaper marked the row, or it ended without releasing) is
stale and is taken over, so a claim never outlives its job.
"""

from __future__ import annotations

from typing import Any

from inventory.models import VirtualMachine
from jobs.models import JobRun


def claim_vm(vm_id: int, run_id: Any) -> bool:
    """Take the VM for the job `run_id`; False while another running job holds it."""
    if VirtualMachine.objects.filter(pk=vm_id, backup_job__isnull=True).update(backup_job=run_id):
        return True
    holder = claim_holder_id(vm_id)
    if holder and not JobRun.objects.filter(pk=holder, status=JobRun.Status.RUNNING).exists():
        # Conditional on the stale holder, so of two jobs taking it over at once only one wins.
        return bool(VirtualMachine.objects.filter(pk=vm_id, backup_job=holder).update(backup_job=run_id))
    return False


def release_vm(vm_id: int, run_id: Any) -> None:
    """Give the VM back, only if `run_id` still holds it (a stale claim may have been taken over)."""
    VirtualMachine.objects.filter(pk=vm_id, backup_job=run_id).update(backup_job=None)


def claim_holder_id(vm_id: int) -> Any:
    """The id of the JobRun holding the VM, or None."""
    return VirtualMachine.objects.filter(pk=vm_id).values_list("backup_job", flat=True).first()


def claim_holder(vm_id: int) -> JobRun | None:
    """The job holding the VM (to say whether a backup or a restore is in the way), or None."""
    holder = claim_holder_id(vm_id)
    return JobRun.objects.filter(pk=holder).first() if holder else None
