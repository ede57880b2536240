"""trash/ is shared by the GC's sweep, deletions and recover(): recover() must never empty it under
one of them, and a GC that died mid-sweep loses no chunk. Quarantined chunks (bad/) are evidence the
GC keeps for its grace period. The interleavings are driven deterministically from hooks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.vault import CS, MIXED_LAYOUT, assert_chunks_trustworthy, backup, build_image, index_of
from tests.vault.engine_helpers import digest_of
from vault.engine import Store, collect_local, verify_point
from vault.engine import fsutil as engine_fsutil

LONG_AGO = (1_000_000, 1_000_000)  # an mtime far older than any grace period


def unused_old_chunks(store: Store, tmp_path: Path) -> list[bytes]:
    """Chunks of a deleted point, last used long ago: what a GC sweeps."""
    path = tmp_path / "old.img"
    build_image(path, [("random", 3 * CS)], seed=11)
    backup(store, "p0", path)
    digests = sorted(index_of(store, "p0").referenced())
    store.delete_point("p0")
    for digest in digests:
        os.utime(store.chunk_path(digest), LONG_AGO)
    return digests


def on_first_sweep(
    store: Store, monkeypatch: pytest.MonkeyPatch, before: Callable[[Path], None], after: Callable[[], None]
) -> list[Path]:
    """Wrap os.rename so that the GC's first move of a chunk into trash/ runs `before(chunk)` just
    before it and `after()` just after it; returns the chunks so intercepted."""
    real_rename = os.rename
    seen: list[Path] = []

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        src_path, dst_path = Path(src), Path(dst)
        first = not seen and src_path.is_relative_to(store.chunks_dir) and dst_path.is_relative_to(store.trash_dir)
        if first:
            seen.append(src_path)
            before(src_path)
        real_rename(src, dst, *args, **kwargs)
        if first:
            after()

    monkeypatch.setattr(os, "rename", rename)
    return seen


def test_recover_during_a_gc_sweep_never_loses_a_chunk_the_gc_puts_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = unused_old_chunks(store, tmp_path)
    # A backup touches the chunk after the GC looked at it but before the rename (so the GC must put
    # it back), and another worker's begin_point runs recover() while the chunk sits in trash/.
    touched = on_first_sweep(store, monkeypatch, before=lambda chunk: os.utime(chunk), after=store.recover)

    report = collect_local(store, grace_seconds=0)

    [chunk] = touched
    assert chunk.exists(), "the chunk a backup touched at the last moment was lost"
    assert (report.chunks_swept, report.chunks_kept_young) == (len(digests) - 1, 1)
    assert store.recover() == 0 and list(store.trash_dir.iterdir()) == []  # emptied once the GC is done
    assert_chunks_trustworthy(store)


def test_a_chunk_left_in_trash_by_a_crashed_gc_goes_back_into_chunks(store: Store, mixed: tuple[Path, bytes]) -> None:
    backup(store, "p1", mixed[0])
    digest = digest_of(store, "p1", 2)
    # What a GC killed between its rename into trash/ and its second look leaves behind.
    os.rename(store.chunk_path(digest), store.trash_dir / f"gc-{digest.hex()}.dead")

    store.recover()

    assert store.has_chunk(digest)
    assert list(store.trash_dir.iterdir()) == []
    assert verify_point(store, "p1").ok


def test_delete_point_while_recover_runs_does_not_fail(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "disk.img"
    build_image(path, MIXED_LAYOUT)
    backup(store, "p1", path)
    backup(store, "p2", path)
    real_fsync_dir = engine_fsutil.fsync_dir
    recovered: list[int] = []

    def fsync_dir(directory: Path) -> None:
        real_fsync_dir(directory)
        if directory == store.points_dir and not recovered:
            # delete_point has renamed p1 into trash/ and will now sum and remove it: another
            # worker's recover() comes in exactly here.
            recovered.append(store.recover())

    monkeypatch.setattr(engine_fsutil, "fsync_dir", fsync_dir)

    store.delete_point("p1")

    assert recovered == [0]
    assert store.list_points() == ["p2"]
    monkeypatch.undo()
    store.recover()
    assert list(store.trash_dir.iterdir()) == []
    assert verify_point(store, "p2").ok


def test_gc_keeps_quarantined_chunks_as_evidence_for_the_grace_period(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    build_image(path, MIXED_LAYOUT)
    backup(store, "p1", path)
    index = index_of(store, "p1")
    needed, unneeded = index.digest(2), index.digest(5)
    assert needed is not None and unneeded is not None
    for digest in (needed, unneeded):
        assert store.quarantine_chunk(digest, "found corrupt by the test")
    # Old quarantine records, as if found corrupt long ago; nothing references `unneeded` once p1 is
    # replaced by a point without it.
    for name in os.listdir(store.bad_dir):
        os.utime(store.bad_dir / name, LONG_AGO)

    young = collect_local(store, grace_seconds=time.time())  # everything is younger than this grace
    assert young.bad_swept == 0 and young.chunks_seen == 2  # bad/ is not counted as chunks
    assert store.bad_chunks() == {needed, unneeded}

    other = tmp_path / "other.img"
    build_image(other, [("random", CS)], seed=2)
    backup(store, "p2", other)
    store.delete_point("p1")
    store.quarantine_chunk(index_of(store, "p2").digest(0), "found corrupt just now")  # young evidence
    report = collect_local(store, grace_seconds=3600)

    assert report.bad_swept == 2  # `needed` and `unneeded`: old, and no point references them now
    assert sorted(os.listdir(store.bad_dir)) == sorted(
        f"{index_of(store, 'p2').digest(0).hex()}{suffix}" for suffix in ("", ".why")
    )


def test_gc_keeps_an_old_quarantine_record_a_point_still_needs(store: Store, mixed: tuple[Path, bytes]) -> None:
    backup(store, "p1", mixed[0])
    digest = digest_of(store, "p1", 2)
    store.quarantine_chunk(digest, "found corrupt by the test")
    for name in os.listdir(store.bad_dir):
        os.utime(store.bad_dir / name, LONG_AGO)

    report = collect_local(store, grace_seconds=3600)

    # It is what keeps the next backup from trusting p1's index for that digest.
    assert report.bad_swept == 0 and store.bad_chunks() == {digest}


def test_a_store_clock_behind_the_workers_does_not_sweep_a_chunk_touched_after_the_gc_started(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # File times come from the file system's clock: a tick behind time.time() locally, and the
    # server's clock on NFS. Here the workers' clock runs 5 s ahead of the store's.
    digests = unused_old_chunks(store, tmp_path)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 5)
    touched = on_first_sweep(store, monkeypatch, before=lambda chunk: os.utime(chunk), after=lambda: None)

    report = collect_local(store, grace_seconds=0)

    [chunk] = touched
    assert chunk.exists()
    assert (report.chunks_swept, report.chunks_kept_young) == (len(digests) - 1, 1)
