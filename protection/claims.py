"""A VM's claim: the one job (a backup, or a restore that writes over the VM's disks) allowed to work on
a VM at a time, recorded in the VM's `BackupClaim` row.

Taken with one conditional UPDATE, so two workers can never both hold it. A claim whose holder is no
longer RUNNING (its worker died and the reaper marked the row, or it ended without releasing) is
stale and is taken over, so a claim never outlives its job.
"""

from __future__ import annotations

from typing import Any

from jobs.models import JobRun
from protection.models import BackupClaim


def claim_vm(vm_id: int, run_id: Any) -> bool:
    """Take the VM for the job `run_id`; False while another running job holds it."""
    # The VM's row is made free the first time it is claimed; from then on only UPDATEs decide.
    BackupClaim.objects.bulk_create([BackupClaim(vm_id=vm_id)], ignore_conflicts=True)
    if BackupClaim.objects.filter(vm_id=vm_id, run_id__isnull=True).update(run_id=run_id):
        return True
    holder = claim_holder_id(vm_id)
    if holder and not JobRun.objects.filter(pk=holder, status=JobRun.Status.RUNNING).exists():
        # Conditional on the stale holder, so of two jobs taking it over at once only one wins.
        return bool(BackupClaim.objects.filter(vm_id=vm_id, run_id=holder).update(run_id=run_id))
    return False


def release_vm(vm_id: int, run_id: Any) -> None:
    """Give the VM back, only if `run_id` still holds it (a stale claim may have been taken over)."""
    BackupClaim.objects.filter(vm_id=vm_id, run_id=run_id).update(run_id=None)


def release_claims_of(run_ids: list[Any]) -> None:
    """Give back every VM these runs hold (runs made final without reaching their own release)."""
    BackupClaim.objects.filter(run_id__in=run_ids).update(run_id=None)


def claim_holder_id(vm_id: int) -> Any:
    """The id of the JobRun holding the VM, or None."""
    return BackupClaim.objects.filter(vm_id=vm_id).values_list("run_id", flat=True).first()


def claim_holder(vm_id: int) -> JobRun | None:
    """The job holding the VM (to say whether a backup or a restore is in the way), or None."""
    holder = claim_holder_id(vm_id)
    return JobRun.objects.filter(pk=holder).first() if holder else None
