"""Job rows as the runner leaves them, for pages and checks that read job history."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from inventory.models import VirtualMachine
from jobs.models import JobRun


def backup_run(vm: VirtualMachine, status: str, *, error: str = "", finished: dt.datetime | None = None) -> JobRun:
    """A finished backup job row of `vm` (now unless `finished`), as protection.jobs.backup leaves it."""
    finished = finished or timezone.now()
    return JobRun.objects.create(
        kind="protection.backup",
        title=f"Backup of {vm.name}",
        queue="backup",
        target_type="inventory.virtualmachine",
        target_id=str(vm.pk),
        target_label=vm.name,
        params={"vm_id": vm.pk, "group_id": vm.protection_group_id, "slot": None, "window_end": None},
        status=status,
        error=error,
        created=finished - dt.timedelta(minutes=5),
        started=finished - dt.timedelta(minutes=4),
        finished=finished,
    )
