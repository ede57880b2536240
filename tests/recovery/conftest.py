"""Fixtures for the recovery tests: a VM of the backup lab backed up now, and a whole-VM restore run
as the page starts it (both through a real worker); the NTFS, ext4 and FAT images the file system
tests read (built once, cached in .cache/diskimages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import JobRun
from recovery.models import RestoreGrant
from tests.factories.protection import back_up, protect_vms
from tests.factories.recovery import point_with_disks, run_restore
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm
from tests.recovery.disk_images import build, fat_tree, linux_tree, open_image, windows_tree
from tools import diskimages
from vault.models import RecoveryPoint


@pytest.fixture
def backed_up(
    run_worker: Callable[[], None], django_capture_on_commit_callbacks: Any
) -> Callable[[str], RecoveryPoint]:
    """backed_up(vm_name): back the VM up now and return its new point (the backup must succeed)."""

    def back_up_now(vm_name: str) -> RecoveryPoint:
        run = back_up(vm_name, run_worker, django_capture_on_commit_callbacks)
        assert run.status == JobRun.Status.SUCCEEDED, (run.error, run.traceback)
        return RecoveryPoint.objects.filter(vm__name=vm_name).latest("created")

    return back_up_now


@pytest.fixture
def restored(run_worker: Callable[[], None], django_capture_on_commit_callbacks: Any) -> Callable[..., JobRun]:
    """restored(point, target, user=None): run a whole-VM restore of the point; its finished job run."""

    def restore(point: RecoveryPoint, target: dict[str, Any], user: Any = None) -> JobRun:
        return run_restore(point, target, run_worker, django_capture_on_commit_callbacks, user)

    return restore


@pytest.fixture(scope="module")
def ntfs_image() -> Path:
    return build(diskimages.build_ntfs_disk, windows_tree(), size_mib=40, label="Windows")


@pytest.fixture(scope="module")
def ext4_image() -> Path:
    return build(diskimages.build_ext4_disk, linux_tree(), size_mib=40, label="web01-root")


@pytest.fixture(scope="module")
def fat_image() -> Path:
    return build(diskimages.build_fat_disk, fat_tree(), size_mib=40, label="ESP")


# A real ext4 disk with a folder of 5,000 files (and three subfolders) and one of 10: paging and the
# large folders' listing index (recovery.folder_index) read it.
FILES = 5000
SUBFOLDERS = ["sub-a", "Sub-b", "sub-c"]
# Empty files: 5,000 inodes fit in 100 MiB at mke2fs's default ratio, and the image builds in seconds.
MANY = {f"file-{i:05d}.txt": b"" for i in range(FILES)} | {name: {} for name in SUBFOLDERS}
TREE = {"many": MANY, "few": {f"note-{i}.txt": f"{i}\n" for i in range(10)}}


@pytest.fixture(scope="module")
def many_files_image() -> Path:
    return build(diskimages.build_ext4_disk, TREE, size_mib=100, label="many-files")


@pytest.fixture
def many_files_point(many_files_image, settings, tmp_path, helpdesk) -> tuple[RecoveryPoint, int]:
    """A point of files-01 (granted to helpdesk) whose disk is the many-files image, and its volume."""
    settings.BACKUP_STORE_DIR = tmp_path / "store"
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    vm = create_test_vm(folders["Prod"], "files-01")
    group = protect_vms("Prod", [vm])
    point = point_with_disks(vm, group, {2000: many_files_image}, timezone.now())
    RestoreGrant.objects.create(user=helpdesk, group=group)
    return point, next(v.index for v in open_image(many_files_image).volumes if v.browsable)
