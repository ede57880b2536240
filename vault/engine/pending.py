"""A backup in progress: its staging directory, the chunks it stages, and the commit that publishes it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import fsutil
from .errors import PointExists, StoreError
from .format import CHUNK_SIZE, DiskIndex
from .store import MANIFEST, STORE_FORMAT, Store

if TYPE_CHECKING:
    from .backup import DiskBackup
    from .source import Source


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class PendingPoint:
    """A backup in progress. Chunks and indexes go to its staging directory; `commit()` makes them
    durable with one sync, moves the chunks into place and publishes the point with one rename."""

    def __init__(self, store: Store, point_id: str, staging: Path, lock_fds: tuple[int, ...]) -> None:
        self.store = store
        self.point_id = point_id
        self.staging = staging
        self._chunk_dir = staging / "chunks"
        self._point_dir = staging / "point"
        # Closing the lock descriptors is what lets recover() sweep the staging directory; a point
        # dropped without commit() or abort() still gets them closed when it is garbage collected.
        self._release_locks = weakref.finalize(self, _close_all, lock_fds)
        self._claims: dict[bytes, int] = {}  # digest -> bytes staged (0: stored elsewhere or in flight)
        self._found_dirs: set[Path] = set()  # chunks/ subdirectories of chunks found by existence
        self._claims_lock = threading.Lock()
        self._reserved = 0
        self._disks: dict[str, DiskBackup] = {}
        self.state = "open"
        # Digests that were quarantined (bad/) and that this point's commit stored again: every
        # point referencing them is whole again. Filled by commit(), for the caller to record.
        self.repaired: set[bytes] = set()

    def __enter__(self) -> PendingPoint:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state == "open":
            self.abort()

    def add_disk(
        self,
        disk_key: str,
        source: Source,
        *,
        previous: DiskIndex | None = None,
        changed_areas: Iterable[tuple[int, int]] | None = None,
        progress: Callable[[int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        threads: int | None = None,
    ) -> DiskBackup:
        """Back up one disk into this point; see `backup.backup_disk`."""
        from .backup import backup_disk  # backup imports this module

        return backup_disk(
            self,
            disk_key,
            source,
            previous=previous,
            changed_areas=changed_areas,
            progress=progress,
            should_cancel=should_cancel,
            threads=threads,
        )

    @property
    def disks(self) -> dict[str, DiskBackup]:
        return dict(self._disks)

    # Used by backup_disk --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state != "open":
            raise StoreError(f"recovery point {self.point_id} is {self.state}")

    def _claim(self, digest: bytes) -> bool:
        """True when the caller is the first in this point to meet `digest` and must store it."""
        with self._claims_lock:
            if digest in self._claims:
                return False
            self._claims[digest] = 0
            return True

    def _found_in_store(self, digest: bytes) -> bool:
        """Whether the store has the chunk already. A chunk seen this way may have been renamed into
        place by another backup that has not yet fsynced its directory, so commit fsyncs that
        directory too before publishing a point that relies on it."""
        if not self.store.touch_chunk(digest):
            return False
        with self._claims_lock:
            self._found_dirs.add(self.store.chunk_path(digest).parent)
        return True

    def _stage_chunk(self, digest: bytes, pieces: list[bytes | memoryview]) -> int:
        """Write a chunk file into staging. No temp name + rename here: the whole staging directory is
        the temporary, nothing reads it but this backup, and a crash discards all of it."""
        size = sum(len(p) for p in pieces)
        self.store._reserve(size)
        with self._claims_lock:
            self._reserved += size
        with fsutil.translate_full(self.store.root):
            fd = os.open(self._chunk_dir / digest.hex(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fsutil.write_all(fd, pieces)
                fsutil.start_writeback(fd)
            finally:
                os.close(fd)
        with self._claims_lock:
            self._claims[digest] = size
        return size

    def _add(self, disk_key: str, backup: DiskBackup) -> None:
        self._disks[disk_key] = backup

    # Life cycle -----------------------------------------------------------------------------------

    def commit(self, manifest: dict[str, Any] | None = None) -> Path:
        """Make the point durable and visible; returns its directory. `manifest` (JSON-serialisable)
        is kept as the point's `meta`. On any error the point is aborted and stays invisible."""
        self._check_open()
        document = {
            "format": STORE_FORMAT,
            "point_id": self.point_id,
            "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "chunk_size": CHUNK_SIZE,
            "disks": {
                key: {"index": f"{key}.idx", "image_size": b.index.image_size, "stats": b.stats.as_dict()}
                for key, b in sorted(self._disks.items())
            },
            "meta": manifest or {},
        }
        encoded = json.dumps(document, indent=2, sort_keys=True).encode()  # TypeError before any I/O
        try:
            with fsutil.translate_full(self.store.root):
                final = self._publish(encoded)
        except BaseException:
            self.abort()
            raise
        self.state = "committed"
        shutil.rmtree(self.staging, ignore_errors=True)  # only the lock and an empty chunks/ are left
        self._release_locks()
        return final

    def _publish(self, manifest: bytes) -> Path:
        files: list[Path] = []
        for key, backup in self._disks.items():
            data = backup.index.to_bytes()
            self.store._reserve(len(data))
            self._reserved += len(data)
            path = self._point_dir / f"{key}.idx"
            path.write_bytes(data)
            files.append(path)
        self.store._reserve(len(manifest))
        self._reserved += len(manifest)
        (self._point_dir / MANIFEST).write_bytes(manifest)
        files.append(self._point_dir / MANIFEST)

        staged = [d for d, size in self._claims.items() if size]
        # The one sync of the backup: every staged chunk, index and the manifest, in a batch.
        self._sync_files([self._chunk_dir / d.hex() for d in staged] + files)
        fsutil.fsync_dir(self._point_dir)

        # Now the data is durable, the renames can make it visible; each rename is atomic, so a
        # chunk file under chunks/ is whole whatever moment a crash hits.
        touched: set[Path] = set()
        created = False
        for digest in staged:
            final = self.store.chunk_path(digest)
            if final.parent not in touched:
                try:
                    final.parent.mkdir()
                    created = True
                except FileExistsError:
                    pass
                touched.add(final.parent)
            os.rename(self._chunk_dir / digest.hex(), final)
        # The chunk renames must be durable before the point that references them is published.
        for directory in touched | self._found_dirs:
            fsutil.fsync_dir(directory)
        if created:
            fsutil.fsync_dir(self.store.chunks_dir)
        # Good copies of quarantined chunks are durable in chunks/ now: their bad/ records can say so.
        if staged:
            self.repaired = self.store._mark_repaired(set(staged) & self.store._bad_records())

        final_point = self.store.points_dir / self.point_id
        try:
            os.rename(self._point_dir, final_point)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise PointExists(f"recovery point {self.point_id} was committed by someone else meanwhile") from err
            raise
        fsutil.fsync_dir(self.store.points_dir)
        return final_point

    def _sync_files(self, paths: list[Path]) -> None:
        # The one sync of a backup, as a batch of fsyncs run in parallel: each mostly waits for
        # writeback that start_writeback() began long ago, and ext4 folds concurrent fsyncs into one
        # journal commit. Measured on a 1 GiB full backup (median of 4 runs, commit / total seconds):
        # parallel fsyncs 0.36 / 2.31, sequential fsyncs 0.64 / 2.62, syncfs() 0.55 / 2.53,
        # os.sync() 0.55 / 2.43. os.sync and syncfs would also flush other programs' dirty data.
        if not paths:
            return
        workers = min(len(paths), max(2, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="vault-sync") as pool:
            list(pool.map(fsutil.fsync_path, paths))

    def abort(self) -> None:
        """Throw the point away (idempotent). Chunks already moved by a failed commit are whole and
        durable; they stay for a later backup to reuse or for the GC."""
        if self.state != "open":
            return
        self.state = "aborted"
        shutil.rmtree(self.staging, ignore_errors=True)
        self.store._release(self._reserved)
        self._reserved = 0
        self._release_locks()
