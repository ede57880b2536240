"""Recovery for tests: points whose disks are real NTFS/ext4 images in the local store (with their
rows), whole-VM restores run as the page runs them, and the digest of a simulated VM's disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from inventory import vcenter as vsphere
from inventory.models import VirtualMachine
from jobs.models import JobRun
from protection.models import ProtectionGroup
from recovery import actions
from tests.fixtures.vcsim import connect_to
from tools.simulator import Simulator
from vault import engine
from vault.models import RecoveryPoint, RecoveryPointDisk
from vault.storage import local_store

BIG = bytes(range(256)) * (5 * 4096)  # 5 MiB, not all zero
# Trees for diskimages.build_ntfs_disk / build_ext4_disk: non-ASCII names, nested folders, an empty file.
WINDOWS = {
    "Users": {
        "alice": {
            "Documents": {
                "Überweisung Zoë.txt": "Betrag: 42 €\r\n",
                "議事録.txt": "会議\r\n",
                "big.bin": BIG,
                "empty.txt": b"",
                "Reports": {"q1.csv": "a,b\r\n1,2\r\n", "Deep": {"q2.csv": "c\r\n"}},
            },
            "Desktop": {"todo.txt": "restore tests\r\n"},
        }
    },
}
LINUX = {"etc": {"hostname": "web01\n"}, "home": {"bob": {"notes.txt": "TODO\n", "gone.txt": "old\n"}}}


def point_with_disks(
    vm: VirtualMachine, group: ProtectionGroup | None, images: dict[int, Path], created: dt.datetime
) -> RecoveryPoint:
    """A crash-consistent point of `vm` whose disks (by vCenter disk key: 2000 is the first) are these
    images, written to the local store, with its row and disk rows."""
    point_id = uuid.uuid4()
    with local_store().begin_point(str(point_id)) as pending:
        for key, image in images.items():
            with engine.FileSource(image) as source:
                engine.backup_disk(pending, str(key), source)
        pending.commit({"vm": vm.name})
    point = RecoveryPoint.objects.create(
        id=point_id, vm=vm, group=group, created=created, completed=created, consistency="crash"
    )
    for key, image in images.items():
        RecoveryPointDisk.objects.create(
            point=point,
            key=key,
            label=f"Hard disk {key - 1999}",
            capacity_bytes=image.stat().st_size,
            file_name="x.vmdk",
            read_path="full",
            read_reason="",
        )
    return point


def run_restore(
    point: RecoveryPoint,
    target: dict[str, Any],
    run_worker: Callable[[], None],
    capture: Callable[..., Any],
    user: User | None = None,
) -> JobRun:
    """Start a whole-VM restore of `point` to `target`, as the page does, and run its job;
    `capture` is django_capture_on_commit_callbacks, so the job is queued."""
    with capture(execute=True):
        run = actions.start_vm_restore(user, point, target)
    run_worker()
    run.refresh_from_db()
    return run


def disk_sha256(sim: Simulator, moref_or_name: str, disk_index: int, capacity: int) -> str:
    """The digest of the first `capacity` bytes of a simulated VM's disk (by position), read through
    the datastore API as a restore check would."""
    with connect_to(sim) as conn:
        config = vsphere.vm_config(conn, moref_or_name)
    disk = sorted(config["disks"], key=lambda d: d["key"])[disk_index]
    datastore, path = disk["file_name"][1:].split("] ", 1)
    path = path.replace(".vmdk", "-flat.vmdk") if not path.endswith("-flat.vmdk") else path
    digest = hashlib.sha256()
    with connect_to(sim) as conn, vsphere.DatastoreFile(conn, "DC", datastore, path, size=capacity) as f:
        buffer = vsphere.read_buffer()
        offset = 0
        while offset < capacity:
            n = f.readinto(offset, buffer[: min(len(buffer), capacity - offset)])
            digest.update(buffer[:n])
            offset += n
    return digest.hexdigest()
