"""Real recovery points for the vault app's page, command and job tests: app-01 in a protection group,
points written into the local store from small real images with their rows, and a directory vault."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from inventory.models import VirtualMachine
from protection.models import ProtectionGroup
from tests.factories.protection import POLICY, protect_vms
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.vault import CS, DISK, build_image
from vault import engine
from vault.models import RecoveryPoint, VaultSettings
from vault.storage import local_store, remote_vault


def protected_vm(*, local_count: int) -> tuple[VirtualMachine, ProtectionGroup]:
    """app-01 in folder Prod, in a group that keeps its newest `local_count` points on this server."""
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "app-01")
    return vm, protect_vms("Prod", [vm], {**POLICY, "local_days": None, "local_count": local_count})


def back_up_point(
    vm: VirtualMachine, group: ProtectionGroup, image: Path, created: dt.datetime, seed: int = 0, **fields: Any
) -> tuple[RecoveryPoint, bytes]:
    """A point of `vm` whose one disk (written to `image` from `seed`) is in the local store, and its row;
    returns the row and the disk's bytes."""
    data = build_image(image, [("random", 2 * CS), ("text", CS)], seed=seed)
    point_id = uuid.uuid4()
    with local_store().begin_point(str(point_id)) as pending, engine.FileSource(image) as source:
        engine.backup_disk(pending, DISK, source)
        pending.commit({"vm": vm.name})
    row = RecoveryPoint.objects.create(
        id=point_id, vm=vm, group=group, created=created, completed=created, consistency="crash",
        logical_bytes=len(data), **fields,
    )  # fmt: skip
    return row, data


def use_directory_vault(root: Path) -> Path:
    """Make a new directory `root` the configured vault."""
    root.mkdir()
    VaultSettings.objects.update_or_create(pk=1, defaults={"kind": "directory", "directory": str(root)})
    return root


def replicate(point: RecoveryPoint) -> None:
    """Copy the point to the configured vault and record it there, as a replication job would."""
    engine.replicate_point(local_store(), remote_vault(), str(point.pk))
    RecoveryPoint.objects.filter(pk=point.pk).update(vault_status=RecoveryPoint.VaultStatus.REPLICATED)
