"""Receivers of other apps' signals: what protection must undo when a job ends without its handler."""

from __future__ import annotations

from typing import Any

from inventory.models import VirtualMachine
from protection.models import BackupSlot


def free_what_finalised_runs_held(sender: Any, run_ids: list[Any], **kwargs: Any) -> None:
    """A run made final by the reaper or a cancel never reached its `finally`: give back its backup
    slot and its VM claim (a backup's or a restore's), so neither outlives the job."""
    BackupSlot.objects.filter(job__in=run_ids).update(job=None)
    VirtualMachine.objects.filter(backup_job__in=run_ids).update(backup_job=None)
