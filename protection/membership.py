"""Which protection group covers which VM, kept in VirtualMachine.protection_group.

Recomputed after every inventory change and every group change: a VM is covered by the group
that selects it by name, else by the group selecting the deepest folder above it; exclusions and
the VM's own "do not protect" mark win over both. Joins and departures are audited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from audit.actions import entry, record_many
from inventory.models import VirtualMachine
from protection.models import ProtectionGroup

AUTO_DETECT = "auto-detect"


@dataclass(frozen=True)
class _Selection:
    group_id: int
    group_name: str
    folder_paths: tuple[tuple[int, str], ...]  # (vcenter id, folder path)
    vm_ids: frozenset[int]
    excluded_ids: frozenset[int]


def _selections() -> list[_Selection]:
    groups = ProtectionGroup.objects.prefetch_related("folders", "vms", "excluded_vms")
    return [
        _Selection(
            group_id=group.pk,
            group_name=group.name,
            folder_paths=tuple((folder.vcenter_id, folder.path) for folder in group.folders.all()),
            vm_ids=frozenset(vm.pk for vm in group.vms.all()),
            excluded_ids=frozenset(vm.pk for vm in group.excluded_vms.all()),
        )
        for group in groups
    ]


def _covering_group(vm: Mapping[str, Any], selections: list[_Selection]) -> tuple[_Selection | None, str]:
    """The group covering one VM and why, from plain values (no queries)."""
    if vm["do_not_protect"]:
        return None, "marked do not protect"
    for selection in selections:
        if vm["pk"] in selection.vm_ids and vm["pk"] not in selection.excluded_ids:
            return selection, "selected by name"
    best: tuple[int, _Selection, str] | None = None
    folder_path = vm["folder__path"] or ""
    for selection in selections:
        if vm["pk"] in selection.excluded_ids:
            continue
        for vcenter_id, path in selection.folder_paths:
            inside = vcenter_id == vm["vcenter_id"] and (folder_path == path or folder_path.startswith(path + "/"))
            if inside and (best is None or len(path) > best[0]):
                best = (len(path), selection, f"in folder {path}")
    return (best[1], best[2]) if best else (None, "not in a protected folder")


def refresh_membership(*, vm_ids: Iterable[int] | None = None, actor: object = AUTO_DETECT) -> dict[str, int]:
    """Bring `protection_group` in line with the groups' selections; returns joined/left counts."""
    selections = _selections()
    vms = VirtualMachine.objects.filter(removed_at__isnull=True)
    if vm_ids is not None:
        vms = vms.filter(pk__in=list(vm_ids))
    rows = vms.values("pk", "name", "vcenter_id", "folder__path", "do_not_protect", "protection_group_id")
    by_group: dict[int | None, list[int]] = {}
    changes: list[tuple[Mapping[str, Any], _Selection | None, str]] = []
    for vm in rows.iterator(chunk_size=2000):
        selection, reason = _covering_group(vm, selections)
        wanted = selection.group_id if selection else None
        if wanted != vm["protection_group_id"]:
            by_group.setdefault(wanted, []).append(vm["pk"])
            changes.append((vm, selection, reason))
    if not changes:
        return {"joined": 0, "left": 0}
    names = {s.group_id: s.group_name for s in selections}
    with transaction.atomic():
        for group_id, pks in by_group.items():
            VirtualMachine.objects.filter(pk__in=pks).update(protection_group_id=group_id)
        record_many(_audit(actor, vm, sel, names.get(vm["protection_group_id"]), reason) for vm, sel, reason in changes)
    joined = sum(1 for _, selection, _ in changes if selection)
    return {"joined": joined, "left": len(changes) - joined}


def _audit(actor: object, vm: Mapping[str, Any], selection: _Selection | None, old_group: str | None, reason: str):
    target = VirtualMachine(pk=vm["pk"], name=vm["name"])
    if selection:
        return entry(
            actor,
            "protection.vm_joined",
            target=target,
            details={"group": selection.group_name, "reason": reason, "previous_group": old_group},
        )
    return entry(actor, "protection.vm_left", target=target, details={"group": old_group, "reason": reason})
