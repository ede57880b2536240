"""Failure paths: cancellation, SIGKILL at each stage of a backup, a full store, concurrent backups."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.children import START_UP_SECONDS, Child
from tests.vault import (
    CS,
    DISK,
    MIB,
    MIXED_LAYOUT,
    assert_chunks_trustworthy,
    backup,
    build_image,
    chunk_files,
    index_of,
    overwrite,
    restored,
)
from tests.waiting import wait_until
from vault.engine import Cancelled, FileSource, Monitor, Store, StoreFull, backup_disk, verify_point

CRASH_LAYOUT = [("random", CS), ("text", CS), ("random", 2 * CS + 777)]
STAGE_SECONDS = 60.0  # from "ready" to the stage: opening the store and staging two 4 MiB chunks

# The child backs up p2 and stops at a chosen stage, waiting to be killed:
#   reading: chunks 0 and 1 are staged, the source hangs on chunk 2;
#   moving:  commit has synced everything and moved two chunks into chunks/, the point is unpublished.
# It prints "ready" once its interpreter is up and the engine imported, so the parent gives the start-up
# (slow on a loaded machine) and the backup up to the stage each a deadline of their own.
CHILD = r"""
import os, sys, time
from pathlib import Path
from vault.engine import CHUNK_SIZE, FileSource, Store, backup_disk

print("ready", flush=True)
root, image, stage = Path(sys.argv[1]), sys.argv[2], sys.argv[3]


class SlowSource:
    def __init__(self, path):
        self.inner = FileSource(path)
        self.size = self.inner.size

    def readinto(self, offset, buffer):
        if stage == "reading" and offset >= 2 * CHUNK_SIZE:
            # One write per line: two reader threads printing at once would interleave "slow" and
            # print's separate newline into "slowslow".
            sys.stdout.write("slow\n")
            sys.stdout.flush()
            time.sleep(600)
        return self.inner.readinto(offset, buffer)


if stage == "moving":
    real_rename = os.rename
    moved = []

    def rename(src, dst):
        real_rename(src, dst)
        if Path(dst).parent.parent == root / "chunks":
            moved.append(dst)
            if len(moved) == 2:
                print("moved", flush=True)
                time.sleep(600)

    os.rename = rename

store = Store(root)
previous = store.open_point("p1").index("scsi0:0")
with store.begin_point("p2") as pending:
    backup_disk(pending, "scsi0:0", SlowSource(image), previous=previous, threads=2)
    pending.commit({})
print("finished", flush=True)
"""


def _staged_files(store: Store) -> list[Path]:
    return [p for p in store.staging_dir.rglob("*") if p.is_file() and p.parent.name == "chunks"]


def _run_until_killed(store: Store, image: Path, stage: str, marker: str) -> None:
    with Child(CHILD, str(store.root), str(image), stage) as child:
        child.wait_for("ready", timeout=START_UP_SECONDS, what="its interpreter started and imported the engine")
        child.wait_for(marker, timeout=STAGE_SECONDS, what=f"its backup reached the {stage!r} stage")
        if stage == "reading":  # the two fast chunks may still be being staged by the other thread
            wait_until(lambda: len(_staged_files(store)) >= 2, timeout=STAGE_SECONDS, what="chunks 0 and 1 are staged")
        child.kill()


@pytest.mark.parametrize("stage, marker", [("reading", "slow"), ("moving", "moved")])
def test_sigkill_leaves_no_visible_point_and_no_untrustworthy_chunk(tmp_path, store, stage, marker):
    image = tmp_path / "disk.img"
    old = build_image(image, CRASH_LAYOUT)
    backup(store, "p1", image)
    before = chunk_files(store)
    # change every chunk, so p2 has four new chunks to stage
    new = overwrite(image, old, [(i * CS + 10, 100) for i in range(4)])

    _run_until_killed(store, image, stage, marker)

    survivor = Store(store.root)
    assert survivor.list_points() == ["p1"]
    assert list(survivor.staging_dir.iterdir()), "the killed backup left its staging directory"
    assert_chunks_trustworthy(survivor)  # whatever reached chunks/ is whole and correct
    moved = chunk_files(survivor) - before
    if stage == "reading":
        assert moved == set()
        assert len(_staged_files(survivor)) >= 2
    else:
        assert len(moved) == 2

    assert survivor.recover() >= 1
    assert list(survivor.staging_dir.iterdir()) == [] and list(survivor.trash_dir.iterdir()) == []

    result = backup(survivor, "p2", image, previous=index_of(survivor, "p1"))
    assert result.stats.chunks_new == 4 - len(moved)  # chunks moved before the crash are reused
    assert restored(survivor, "p2") == new
    assert restored(survivor, "p1") == old
    assert verify_point(survivor, "p1").ok and verify_point(survivor, "p2").ok


def test_cancel_mid_disk_leaves_nothing(tmp_path, store):
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    backup(store, "p1", image)
    before = chunk_files(store)
    overwrite(image, data, [(i * CS + 1, 10) for i in range(6)])

    asked = 0

    def should_cancel() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    pending = store.begin_point("p2")  # no `with`: backup_disk must clean up by itself
    with FileSource(image) as source, pytest.raises(Cancelled, match="cancelled at byte"):
        backup_disk(
            pending,
            DISK,
            source,
            previous=index_of(store, "p1"),
            monitor=Monitor(should_cancel=should_cancel),
            threads=2,
        )
    assert pending.state == "aborted"
    assert store.list_points() == ["p1"]
    assert chunk_files(store) == before
    assert list(store.staging_dir.iterdir()) == []
    assert restored(store, "p1") == data


def test_progress_reports_bytes_done(tmp_path, store):
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    seen: list[int] = []
    backup(store, "p1", image, monitor=Monitor(progress=seen.append))
    # called as chunks complete (several may complete together), always growing, ending at the size
    assert seen == sorted(seen) and seen[-1] == len(data) and len(seen) >= 2


def test_quota_exceeded_raises_store_full_and_keeps_earlier_points(tmp_path, store):
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    backup(store, "p1", image)

    limited = Store(store.root, quota_bytes=store.used_bytes() + 2 * MIB)
    other = tmp_path / "other.img"
    build_image(other, [("random", 3 * CS)], seed=7)
    with pytest.raises(StoreFull, match=r"quota of \d+ bytes"):
        backup(limited, "p2", other)

    assert limited.list_points() == ["p1"]
    assert list(limited.staging_dir.iterdir()) == []
    assert verify_point(limited, "p1").ok
    assert restored(limited, "p1") == data
    # the reservation of the failed backup was given back: a small backup still fits
    small = tmp_path / "small.img"
    build_image(small, [("text", MIB)], seed=8)
    backup(limited, "p3", small)
    assert limited.list_points() == ["p1", "p3"]


def test_device_full_gives_the_same_clean_error(tmp_path, store, monkeypatch):
    image = tmp_path / "disk.img"
    build_image(image, MIXED_LAYOUT)

    def no_space(fd, data, *offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "writev", no_space)  # chunk files through the page cache
    monkeypatch.setattr(os, "pwrite", no_space)  # and with O_DIRECT (fsutil.create_direct)
    with pytest.raises(StoreFull, match="no space left"):
        backup(store, "p1", image)
    monkeypatch.undo()
    assert store.list_points() == [] and list(store.staging_dir.iterdir()) == []


def test_recover_leaves_a_running_backup_alone(tmp_path, store):
    image = tmp_path / "disk.img"
    data = build_image(image, MIXED_LAYOUT)
    with store.begin_point("p1") as pending, FileSource(image) as source:
        backup_disk(pending, DISK, source)
        other_worker = Store(store.root)  # e.g. a second RQ worker starting its own backup
        assert other_worker.recover() == 0
        with other_worker.begin_point("p2") as second, FileSource(image) as source2:
            backup_disk(second, DISK, source2)
            second.commit({})
        assert pending.staging.exists()
        pending.commit({})
    assert store.list_points() == ["p1", "p2"]
    assert restored(store, "p1") == restored(store, "p2") == data
    assert list(store.staging_dir.iterdir()) == []


def test_a_dropped_pending_point_is_swept(tmp_path, store):
    import gc

    image = tmp_path / "disk.img"
    build_image(image, MIXED_LAYOUT)
    pending = store.begin_point("p1")
    with FileSource(image) as source:
        backup_disk(pending, DISK, source)
    del pending  # neither committed nor aborted, e.g. a bug in the caller
    gc.collect()
    assert store.recover() == 1
    assert list(store.staging_dir.iterdir()) == [] and store.list_points() == []
