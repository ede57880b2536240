"""Fixtures for the recovery tests: a VM of the backup lab backed up now, and a whole-VM restore run
as the page starts it (both through a real worker); the NTFS, ext4 and FAT images the file system
tests read (built once, cached in .cache/diskimages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs.models import JobRun
from tests.factories.protection import back_up
from tests.factories.recovery import run_restore
from tests.recovery.disk_images import build, fat_tree, linux_tree, windows_tree
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
