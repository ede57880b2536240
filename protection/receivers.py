"""Receivers of other apps' signals: what protection must undo when a job ends without its handler,
and the membership refresh when inventory announces changed VMs."""

from __future__ import annotations

from typing import Any

from protection.claims import release_claims_of
from protection.membership import AUTO_DETECT, refresh_membership
from protection.models import BackupSlot


def free_what_finalised_runs_held(sender: Any, run_ids: list[Any], **kwargs: Any) -> None:
    """A run made final by the reaper or a cancel never reached its `finally`: give back its backup
    slot and its VM claim (a backup's or a restore's), so neither outlives the job."""
    BackupSlot.objects.filter(job__in=run_ids).update(job=None)
    release_claims_of(run_ids)


def refresh_membership_of_changed_vms(
    sender: Any, vm_ids: list[int], actor: Any = None, **kwargs: Any
) -> dict[str, int]:
    """Inventory changed these VMs (a sync, the watcher, a do-not-protect flag): bring their group
    membership in line; a change without a user is recorded as auto-detect, as it always was."""
    return refresh_membership(vm_ids=vm_ids, actor=AUTO_DETECT if actor is None else actor)
