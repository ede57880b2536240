"""Changes to protection groups and policies, each audited in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import record
from inventory.models import Folder, VirtualDisk, VirtualMachine
from jobs.models import JobRun
from protection.membership import refresh_membership
from protection.models import Policy, ProtectionGroup
from protection.scheduling import backup_members, enqueue_group_backup

POLICY_FIELDS = [
    "schedule",
    "timezone",
    "consistency",
    "fallback_to_crash",
    "local_days",
    "local_count",
    "replicate",
    "vault_daily",
    "vault_weekly",
    "vault_monthly",
    "vault_yearly",
    "parallelism",
    "window_hours",
]


class SelectionConflict(Exception):
    """The selection would put a VM in two groups; the message names the other group."""


@dataclass
class Selection:
    folder_ids: list[int] = field(default_factory=list)
    vm_ids: list[int] = field(default_factory=list)
    excluded_vm_ids: list[int] = field(default_factory=list)
    excluded_disk_ids: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, group: ProtectionGroup) -> Selection:
        return cls(
            folder_ids=list(group.folders.values_list("pk", flat=True)),
            vm_ids=list(group.vms.values_list("pk", flat=True)),
            excluded_vm_ids=list(group.excluded_vms.values_list("pk", flat=True)),
            excluded_disk_ids=list(group.excluded_disks.values_list("pk", flat=True)),
        )


@dataclass
class PreviewRow:
    vm: VirtualMachine
    reason: str
    disks: list[VirtualDisk]
    skipped_disks: list[tuple[VirtualDisk, str]]


@dataclass
class Preview:
    rows: list[PreviewRow]
    conflicts: list[str]
    excluded: list[VirtualMachine] = field(default_factory=list)

    @property
    def vm_count(self) -> int:
        return len(self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(d.capacity_bytes for row in self.rows for d in row.disks)


def _folder_q(folders: list[Folder]) -> Q:
    query = Q(pk__in=[])
    for folder in folders:
        query |= folder.subtree_filter("folder__")
    return query


def preview(selection: Selection, group: ProtectionGroup | None = None) -> Preview:
    """Exactly which VMs and disks the selection covers now, and what conflicts with other groups."""
    folders = list(Folder.objects.filter(pk__in=selection.folder_ids))
    excluded = set(selection.excluded_vm_ids)
    candidates = (
        VirtualMachine.objects.filter(removed_at__isnull=True, is_template=False)
        .filter(_folder_q(folders) | Q(pk__in=selection.vm_ids))
        .exclude(pk__in=excluded)
        .select_related("folder", "protection_group")
        .prefetch_related("disks")
        .order_by("path")
    )
    explicit = set(selection.vm_ids)
    excluded_disks = set(selection.excluded_disk_ids)
    rows = []
    for vm in candidates:
        if vm.do_not_protect:
            continue
        reason = "selected by name" if vm.pk in explicit else f"in folder {vm.folder.path if vm.folder else '?'}"
        disks, skipped = [], []
        for disk in vm.disks.all():
            if disk.pk in excluded_disks:
                skipped.append((disk, "excluded"))
            elif not disk.protectable:
                skipped.append((disk, disk.not_protectable_reason))
            else:
                disks.append(disk)
        rows.append(PreviewRow(vm=vm, reason=reason, disks=disks, skipped_disks=skipped))
    return Preview(
        rows=rows,
        conflicts=_conflicts(selection, folders, [row.vm for row in rows], group),
        excluded=list(VirtualMachine.objects.filter(pk__in=excluded).order_by("path")),
    )


def _conflicts(
    selection: Selection, folders: list[Folder], vms: list[VirtualMachine], group: ProtectionGroup | None
) -> list[str]:
    others = ProtectionGroup.objects.prefetch_related("folders", "vms", "excluded_vms")
    if group is not None and group.pk:
        others = others.exclude(pk=group.pk)
    problems = []
    for other in others:
        for mine in folders:
            for theirs in other.folders.all():
                overlap = mine.vcenter_id == theirs.vcenter_id and (
                    mine.path == theirs.path
                    or mine.path.startswith(theirs.path + "/")
                    or theirs.path.startswith(mine.path + "/")
                )
                if overlap:
                    problems.append(
                        f"Folder {mine.path} overlaps folder {theirs.path} of group “{other.name}”: "
                        "a VM belongs to at most one group."
                    )
        their_vms = {vm.pk for vm in other.vms.all()}
        their_excluded = {vm.pk for vm in other.excluded_vms.all()}
        their_folders = list(other.folders.all())
        for vm in vms:
            in_their_folder = any(
                vm.folder and f.vcenter_id == vm.vcenter_id and (vm.folder.path + "/").startswith(f.path + "/")
                for f in their_folders
            )
            if vm.pk in their_vms or (in_their_folder and vm.pk not in their_excluded):
                problems.append(f"VM {vm.name} is already protected by group “{other.name}”.")
    return problems


def _apply_selection(group: ProtectionGroup, selection: Selection) -> None:
    group.folders.set(selection.folder_ids)
    group.vms.set(selection.vm_ids)
    group.excluded_vms.set(selection.excluded_vm_ids)
    group.excluded_disks.set(selection.excluded_disk_ids)


def _policy_values(policy: Policy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def default_policy_values() -> dict[str, Any]:
    """A new group's policy as the model's defaults give it (daily 22:00 UTC, application-consistent, ...)."""
    return _policy_values(Policy())


def _selection_labels(selection: Selection) -> dict[str, list[str]]:
    return {
        "folders": sorted(Folder.objects.filter(pk__in=selection.folder_ids).values_list("path", flat=True)),
        "vms": sorted(VirtualMachine.objects.filter(pk__in=selection.vm_ids).values_list("name", flat=True)),
        "excluded_vms": sorted(
            VirtualMachine.objects.filter(pk__in=selection.excluded_vm_ids).values_list("name", flat=True)
        ),
        "excluded_disks": sorted(
            f"{vm} / {label}"
            for vm, label in VirtualDisk.objects.filter(pk__in=selection.excluded_disk_ids).values_list(
                "vm__name", "label"
            )
        ),
    }


def save_group(
    user: Any,
    *,
    group: ProtectionGroup | None,
    name: str,
    description: str,
    selection: Selection,
    policy_values: dict[str, Any],
) -> ProtectionGroup:
    """Create or update a group with its selection and policy. Refuses a selection that conflicts."""
    with transaction.atomic():
        conflicts = preview(selection, group).conflicts
        if conflicts:
            raise SelectionConflict(conflicts[0])
        creating = group is None
        before = {} if group is None else _group_values(group)
        group = group or ProtectionGroup(created_by=user if getattr(user, "is_authenticated", False) else None)
        group.name, group.description = name, description
        group.save()
        _apply_selection(group, selection)
        policy = Policy.objects.filter(group=group).first() or Policy(group=group)
        schedule_changed = creating or any(policy_values.get(k) != getattr(policy, k) for k in ("schedule", "timezone"))
        for key, value in policy_values.items():
            setattr(policy, key, value)
        if schedule_changed:
            # Start counting from now: a new or changed schedule does not fire for slots already past.
            policy.last_slot = policy.parsed_schedule().latest_slot(timezone.now())
        policy.save()
        after = {"name": name, "description": description, **_selection_labels(selection), **_policy_values(policy)}
        if creating:
            record(user, "protection.group_create", target=group, details=_jsonable(after))
        else:
            changes = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
            record(user, "protection.group_update", target=group, details=_jsonable(changes))
        refresh_membership(actor=user)
    return group


def _group_values(group: ProtectionGroup) -> dict[str, Any]:
    """What a group's audit row compares: its name, description, selection and policy."""
    return {
        "name": group.name,
        "description": group.description,
        **_selection_labels(Selection.of(group)),
        **_policy_values(group.policy),
    }


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, (str, int, float, bool, list, type(None))) else v) for k, v in data.items()}


def delete_group(user: Any, group: ProtectionGroup) -> None:
    with transaction.atomic():
        record(user, "protection.group_delete", target=group, details={"members": group.members.count()})
        group.delete()  # members' protection_group becomes NULL; their recovery points stay
        refresh_membership(actor=user)


def set_paused(user: Any, group: ProtectionGroup, paused: bool) -> None:
    with transaction.atomic():
        ProtectionGroup.objects.filter(pk=group.pk).update(paused=paused)
        if not paused:
            # Resuming does not replay the slots that passed while paused.
            policy = group.policy
            Policy.objects.filter(pk=policy.pk).update(last_slot=policy.parsed_schedule().latest_slot(timezone.now()))
        record(user, "protection.group_pause" if paused else "protection.group_resume", target=group)


def backup_now(user: Any, *, group: ProtectionGroup | None = None, vm: VirtualMachine | None = None) -> list[JobRun]:
    """Queue backups now, outside the schedule: a whole group, or one VM of a group."""
    with transaction.atomic():
        if vm is not None:
            if vm.protection_group is None:
                raise SelectionConflict(f"{vm.name} is not in a protection group: add it to one first.")
            group = vm.protection_group
            runs = enqueue_group_backup(group, user=user, vms=[vm])
        else:
            assert group is not None
            runs = enqueue_group_backup(group, user=user, vms=backup_members(group))
        record(user, "protection.backup_now", target=vm or group, details={"jobs": len(runs)})
    return runs


def set_do_not_protect(user: Any, vm: VirtualMachine, value: bool) -> None:
    """Mark a VM never to be protected (it leaves its group) or allow it again (auto-detect may add it)."""
    with transaction.atomic():
        VirtualMachine.objects.filter(pk=vm.pk).update(do_not_protect=value)
        record(user, "vm.do_not_protect" if value else "vm.allow_protection", target=vm)
        refresh_membership(vm_ids=[vm.pk], actor=user)
