"""Restores, each recorded as a Restore row and an audit entry in the same transaction.

A file download is recorded when it starts (who, VM, point, paths, planned bytes) and completed with
the bytes actually sent, so an interrupted download is still on record.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.actions import record
from jobs.models import JobRun
from jobs.runner import enqueue
from recovery.models import Restore, RestoreGrant
from vault import archive
from vault.models import RecoveryPoint

RESTORE_VM_KIND = "recovery.restore_vm"


class RestoreRefused(Exception):
    """A restore that cannot start; the message says why and nothing was changed."""


def _point_label(point: RecoveryPoint) -> str:
    return f"{timezone.localtime(point.created):%Y-%m-%d %H:%M}"


def start_file_restore(user: Any, point: RecoveryPoint, paths: list[str], *, planned_bytes: int) -> Restore:
    with transaction.atomic():
        restore = Restore.objects.create(
            requested_by=user if getattr(user, "is_authenticated", False) else None,
            kind=Restore.Kind.FILES,
            vm=point.vm,
            point=point,
            vm_label=point.vm.name,
            point_label=_point_label(point),
            paths=paths[:1000],
        )
        record(
            user,
            "restore.files",
            target=point.vm,
            details={
                "point": str(point.pk),
                "taken": _point_label(point),
                "paths": paths[:100],
                "bytes": planned_bytes,
            },
        )
    return restore


def finish_restore(restore: Restore, *, bytes_done: int, error: str = "") -> None:
    Restore.objects.filter(pk=restore.pk).update(
        bytes_restored=bytes_done,
        finished=timezone.now(),
        status=Restore.Status.FAILED if error else Restore.Status.COMPLETED,
        error=error[:2000],
    )


def _where(target: dict[str, Any]) -> str:
    if target.get("mode") == "overwrite":
        return "over the original"
    if target.get("mode") == "disk":
        return f"disk {target.get('source_disk')} into an existing VM's disk"
    return f"as {target.get('name')}"


def start_vm_restore(user: Any, point: RecoveryPoint, target: dict[str, Any]) -> JobRun:
    """Queue a whole-VM restore; `target` is {"mode": "new", "name", "folder_id", "pool_id",
    "datastore_id", "host_id"}, {"mode": "overwrite"} (the original VM, powered off first) or
    {"mode": "disk", "source_disk", "vm_id", "disk_key"} (one disk into an existing VM's disk)."""
    if archive.notice(point) is not None:  # the cached state; the job counts again before reading
        raise RestoreRefused(archive.refusal([point], "no restore was started"))
    with transaction.atomic():
        run = enqueue(
            RESTORE_VM_KIND,
            params={"point_id": str(point.pk), "target": target},
            target=point.vm,
            user=user,
            title=f"Restore {point.vm.name} ({_point_label(point)}) {_where(target)}",
        )
        restore = Restore.objects.create(
            requested_by=user if getattr(user, "is_authenticated", False) else None,
            kind=Restore.Kind.VM,
            vm=point.vm,
            point=point,
            job=run,
            vm_label=point.vm.name,
            point_label=_point_label(point),
            target=target,
        )
        record(
            user,
            "restore.vm",
            target=point.vm,
            details={"point": str(point.pk), "taken": _point_label(point), "target": target, "restore": restore.pk},
        )
    return run


# Damage found by a restore's check ---------------------------------------------------------------

DAMAGE_FOUND_BY = "restore check"


def newest_intact_point(point: RecoveryPoint) -> RecoveryPoint | None:
    """What to offer instead of a damaged point: the VM's newest other point not known to be damaged."""
    return RecoveryPoint.objects.filter(vm=point.vm_id, damaged=False).exclude(pk=point.pk).order_by("-created").first()


def intact_alternative(point: RecoveryPoint) -> str:
    """One sentence naming the newest intact point of the point's VM, or saying there is none."""
    other = newest_intact_point(point)
    if other is None:
        return f"{point.vm.name} has no intact point."
    return f"The newest intact point of {point.vm.name} is {_point_label(other)}."


# Grants ---------------------------------------------------------------------------------------------


def add_grant(actor: Any, grantee: Any, *, group: Any = None, folder: Any = None) -> RestoreGrant:
    if (group is None) == (folder is None):
        raise RestoreRefused("A grant names one protection group or one folder.")
    if not grantee.has_perm("recovery.browse_recoverypoints"):
        raise RestoreRefused(f"{grantee} is not a restore operator: give them that role first.")
    with transaction.atomic():
        grant, created = RestoreGrant.objects.get_or_create(user=grantee, group=group, folder=folder)
        if created:
            record(actor, "grant.add", target_label=str(grant), details={"user": grantee.get_username()})
    return grant


def remove_grant(actor: Any, grant: RestoreGrant) -> None:
    with transaction.atomic():
        label = str(grant)
        grant.delete()
        record(actor, "grant.remove", target_label=label)
