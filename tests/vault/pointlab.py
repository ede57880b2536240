"""Recovery points for the vault's product tests: real store points (written with vault.engine from
small real images) and real rows, with the manifest meta a backup writes (protection/backup.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inventory.models import VirtualMachine
from protection.models import ProtectionGroup
from tests.vault import CS, build_image
from vault import engine
from vault.models import RecoveryPoint
from vault.storage import local_store

DISK_KEY = 2000  # as vCenter numbers a VM's first disk; the store names the disk str(key)


def small_image(directory: Path, seed: int) -> Path:
    path = directory / f"image-{seed}.raw"
    if not path.exists():
        build_image(path, [("random", CS), ("text", CS)], seed=seed)
    return path


def publish_store_point(
    image: Path, meta: Callable[[engine.DiskBackup], dict[str, Any]], point_id: str | None = None
) -> str:
    """Back up `image` as the one disk of a new point in the local store; `meta(result)` is the
    manifest meta committed with it. Returns the point id."""
    point_id = point_id or str(uuid.uuid4())
    with local_store().begin_point(point_id) as pending, engine.FileSource(image) as source:
        result = engine.backup_disk(pending, str(DISK_KEY), source)
        pending.commit(meta(result))
    return point_id


def backup_meta(
    vm: VirtualMachine,
    group: ProtectionGroup | None,
    result: engine.DiskBackup,
    *,
    created: dt.datetime,
    job: Any = None,
) -> dict[str, Any]:
    """Everything a row needs, as a backup now writes it into the manifest."""
    stats = result.stats
    return {
        "vm_id": vm.pk,
        "instance_uuid": vm.instance_uuid,
        "vcenter": vm.vcenter.name,
        "group_id": group.pk if group else None,
        "created": created.isoformat(),
        "completed": (created + dt.timedelta(minutes=3)).isoformat(),
        "job": str(job) if job else None,
        "consistency": "crash",
        "consistency_note": "",
        "config": {"name": vm.name, "memory_mb": 2048, "cpus": 2},
        "disks": [
            {
                "key": DISK_KEY,
                "label": "Hard disk 1",
                "capacity_bytes": stats.logical_bytes,
                "file_name": f"[ds1] {vm.name}/{vm.name}.vmdk",
                "read_path": stats.path,
                "read_reason": "No earlier point with a change id for this disk: read in full.",
                "change_id": "",
                "bytes_read": stats.bytes_read,
                "new_bytes": stats.bytes_stored_new,
                "chunks": stats.chunks_total,
                "new_chunks": stats.chunks_new,
                "zero_chunks": stats.chunks_zero,
            }
        ],
        "logical_bytes": stats.logical_bytes,
        "new_bytes": stats.bytes_stored_new,
        "read_bytes": stats.bytes_read,
    }


def old_style_meta(vm: VirtualMachine, created: dt.datetime, job: Any = None) -> dict[str, Any]:
    """What backups wrote before manifests described the whole backup: not enough for a row."""
    return {
        "vm": vm.name,
        "instance_uuid": vm.instance_uuid,
        "vcenter": vm.vcenter.name,
        "created": created.isoformat(),
        "job": str(job) if job else None,
    }


def point_with_row(
    image: Path, vm: VirtualMachine, group: ProtectionGroup | None, created: dt.datetime, **fields: Any
) -> RecoveryPoint:
    """A store point and its row, as a finished backup leaves them."""
    point_id = publish_store_point(image, lambda result: backup_meta(vm, group, result, created=created))
    return RecoveryPoint.objects.create(
        id=uuid.UUID(point_id),
        vm=vm,
        group=group,
        created=created,
        completed=created,
        consistency="crash",
        logical_bytes=image.stat().st_size,
        **fields,
    )
