"""Recovery point objective: is each protected VM's newest good point as recent as its policy promises?

A VM is in breach when its group's schedule had a slot, at least `grace` ago (time for the backup to
run: the policy's backup window, or 4 hours), and the VM has no good (undamaged) point taken at or
after that slot. A VM that joined its group after that slot, and VMs of paused groups, are not in
breach (the overview shows paused groups on their own). Used by the overview, alerts and reports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from django.db.models import Max, Q
from django.utils import timezone

from inventory.models import VirtualMachine
from protection.models import Policy, ProtectionGroup

DEFAULT_GRACE = dt.timedelta(hours=4)


@dataclass(frozen=True)
class RpoState:
    vm_id: int
    newest_good: dt.datetime | None
    due_slot: dt.datetime | None  # the slot whose point should exist by now
    breached: bool
    paused: bool

    @property
    def label(self) -> str:
        if self.paused:
            return "paused"
        if self.breached:
            return "breached"
        return "ok" if self.newest_good else "waiting for the first backup"


def grace(policy: Policy) -> dt.timedelta:
    return dt.timedelta(hours=policy.window_hours) if policy.window_hours else DEFAULT_GRACE


def due_slot(policy: Policy, now: dt.datetime) -> dt.datetime | None:
    """The newest schedule slot that should have produced a point by `now`."""
    try:
        schedule = policy.parsed_schedule()
    except ValueError:
        return None
    return schedule.latest_slot(now - grace(policy)) if schedule else None


def rpo_states(now: dt.datetime | None = None) -> dict[int, RpoState]:
    """The RPO state of every protected VM that vCenter still has, by VM id (a few queries)."""
    now = now or timezone.now()
    vms = (
        VirtualMachine.objects.filter(protection_group__isnull=False, removed_at__isnull=True)
        .select_related("protection_group__policy")
        .annotate(newest_good=Max("recovery_points__created", filter=Q(recovery_points__damaged=False)))
    )
    joined = _joined_at()
    states = {}
    for vm in vms:
        group = cast(ProtectionGroup, vm.protection_group)  # the query keeps only VMs in a group
        policy = getattr(group, "policy", None)
        slot = due_slot(policy, now) if policy else None
        since = joined.get(vm.pk) or group.created
        breached = (
            not group.paused
            and slot is not None
            and since <= slot
            and (vm.newest_good is None or vm.newest_good < slot)
        )
        states[vm.pk] = RpoState(vm.pk, vm.newest_good, slot, breached, group.paused)
    return states


def _joined_at() -> dict[int, dt.datetime]:
    """When each VM last joined a group (from the audit trail), so a new VM is not a breach."""
    from audit.models import AuditEntry

    rows = (
        AuditEntry.objects.filter(action="protection.vm_joined", target_type="inventory.virtualmachine")
        .values("target_id")
        .annotate(last=Max("created"))
    )
    return {int(r["target_id"]): r["last"] for r in rows if r["target_id"].isdigit()}
