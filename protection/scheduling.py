"""Turning schedules into backup jobs.

`tick()` runs every minute under RQ's cron scheduler (config/cron.py). For each active group it
finds the latest slot due and claims it with one conditional UPDATE of `Policy.last_slot`: when two
schedulers tick at once only one claim succeeds, and after downtime only the latest missed slot
runs, once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory.models import VirtualMachine
from jobs import runner
from jobs.models import JobRun
from protection.models import Policy, ProtectionGroup

logger = logging.getLogger(__name__)
BACKUP_KIND = "protection.backup"
ACTIVE = (JobRun.Status.QUEUED, JobRun.Status.RUNNING)


def tick(now: datetime | None = None) -> int:
    """Start every slot that is due and not yet started; returns how many VM backups were queued."""
    now = now or timezone.now()
    queued = 0
    for policy in Policy.objects.select_related("group").filter(group__paused=False):
        slot = policy.parsed_schedule().latest_slot(now)
        if slot is None or (policy.last_slot is not None and slot <= policy.last_slot):
            continue
        with transaction.atomic():
            claimed = (
                Policy.objects.filter(pk=policy.pk, group__paused=False)
                .filter(Q(last_slot__isnull=True) | Q(last_slot__lt=slot))
                .update(last_slot=slot)
            )
            if claimed:
                runs = enqueue_group_backup(policy.group, slot=slot, now=now)
                queued += len(runs)
                logger.info("%s: slot %s started, %d VMs queued", policy.group, slot.isoformat(), len(runs))
    return queued


def backup_members(group: ProtectionGroup) -> list[VirtualMachine]:
    return list(group.members.filter(removed_at__isnull=True, is_template=False, do_not_protect=False).order_by("name"))


def enqueue_group_backup(
    group: ProtectionGroup,
    *,
    slot: datetime | None = None,
    now: datetime | None = None,
    user: Any = None,
    vms: list[VirtualMachine] | None = None,
) -> list[JobRun]:
    """Queue one backup job per VM, in `parallelism` chains so only that many run at once.

    A VM whose backup is already queued or running is skipped rather than queued twice.
    """
    now = now or timezone.now()
    policy = group.policy
    vms = backup_members(group) if vms is None else vms
    busy = set(
        JobRun.objects.filter(
            kind=BACKUP_KIND, status__in=ACTIVE, target_id__in=[str(vm.pk) for vm in vms]
        ).values_list("target_id", flat=True)
    )
    # A missed slot that runs late gets its full window from when it actually starts.
    window_end = (max(slot or now, now) + timedelta(hours=policy.window_hours)) if policy.window_hours else None
    chains: list[JobRun | None] = [None] * max(1, policy.parallelism)
    runs = []
    for index, vm in enumerate(vm for vm in vms if str(vm.pk) not in busy):
        lane = index % len(chains)
        run = runner.enqueue(
            BACKUP_KIND,
            params={
                "vm_id": vm.pk,
                "group_id": group.pk,
                "slot": slot.isoformat() if slot else None,
                "window_end": window_end.isoformat() if window_end else None,
            },
            target=vm,
            user=user,
            title=f"Backup of {vm.name}",
            after=chains[lane],
        )
        chains[lane] = run
        runs.append(run)
    return runs
