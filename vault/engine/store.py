"""The store on disk: chunk files, recovery points, and the life cycle of a backup.

Crash safety rests on one rule: a name under `chunks/` or `points/` appears only by a rename done
after the data behind it is durable. Everything in progress lives under `staging/<point>.<token>/`,
which `recover()` sweeps once no live process holds its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import fsutil
from .errors import ChunkMissing, CorruptPoint, PointExists, PointInUse, PointNotFound, StoreError, StoreFull
from .format import CHUNK_SIZE, DiskIndex, decode_chunk

if TYPE_CHECKING:
    from .pending import PendingPoint

STORE_FORMAT = 1
MANIFEST = "manifest.json"
BASE = "base"  # in a staging directory: the point a running backup builds on
# Point ids and disk keys become file names: no separators, no leading dot (dot names are ours).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_', ':' or '-', not first '.'")
    return value


def _lock(path: Path, operation: int) -> int:
    """Open (creating) `path` and flock it; the lock lives as long as the descriptor, and the kernel
    drops it when the process dies, which is how recover() tells a crashed backup from a running one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, operation)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Store:
    """A directory holding chunks and recovery points. Safe to use from several processes at once."""

    def __init__(self, root: str | os.PathLike[str], *, quota_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.chunks_dir = self.root / "chunks"
        self.points_dir = self.root / "points"
        self.staging_dir = self.root / "staging"
        self.trash_dir = self.root / "trash"
        self._used: int | None = None  # bytes on disk, counted lazily and only when a quota is set
        self._used_lock = threading.Lock()
        self._init_layout()

    def _init_layout(self) -> None:
        for d in (self.root, self.chunks_dir, self.points_dir, self.staging_dir, self.trash_dir):
            d.mkdir(parents=True, exist_ok=True)
        marker = self.root / "store.json"
        if marker.exists():
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError) as err:
                raise StoreError(f"{marker} is unreadable: {err}") from err
            if info.get("format") != STORE_FORMAT or info.get("chunk_size") != CHUNK_SIZE:
                raise StoreError(f"{self.root} holds a store of another format: {info} (expected {STORE_FORMAT})")
            return
        tmp = self.root / f".store.json.{secrets.token_hex(4)}"
        fsutil.write_durable(tmp, json.dumps({"format": STORE_FORMAT, "chunk_size": CHUNK_SIZE}).encode())
        os.replace(tmp, marker)
        fsutil.fsync_dir(self.root)

    # Chunks ---------------------------------------------------------------------------------------

    def chunk_path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.chunks_dir / name[:4] / name

    def has_chunk(self, digest: bytes) -> bool:
        """A chunk file under chunks/ is always complete and durable (it got there by rename after a sync)."""
        return os.path.exists(self.chunk_path(digest))

    def touch_chunk(self, digest: bytes) -> bool:
        """Whether the chunk exists, marking it as just used (its mtime) if so. A backup that reuses
        a chunk it found this way is safe from a concurrent GC, which sweeps only chunks unused
        since before it started (see gc.py)."""
        try:
            os.utime(self.chunk_path(digest))
        except FileNotFoundError:
            return False
        return True

    def read_chunk(self, digest: bytes, length: int, *, verify: bool = True) -> memoryview:
        path = self.chunk_path(digest)
        try:
            with open(path, "rb", buffering=0) as f:
                payload = f.read()
        except FileNotFoundError as err:
            raise ChunkMissing(f"chunk {digest.hex()} is missing from {self.chunks_dir}", digest) from err
        return decode_chunk(payload, digest, length, verify=verify)

    # Points ---------------------------------------------------------------------------------------

    def begin_point(self, point_id: str, *, base: str | None = None) -> PendingPoint:
        """Start a recovery point; nothing of it is visible until `commit()`. Use as a context manager
        so an exception aborts it.

        `base` names the earlier point whose indexes this backup will reuse (`previous=` in
        add_disk): it cannot be deleted while this backup runs, because the backup trusts that
        point's chunks to stay without checking each one (a GC would otherwise sweep them)."""
        check_name("point id", point_id)
        if base is not None:
            check_name("point id", base)
        if (self.points_dir / point_id).exists():
            raise PointExists(f"recovery point {point_id} exists already in {self.root}")
        self.recover()
        # Shared by every backup; a garbage collection will take it exclusively, so it never deletes
        # a chunk that a running backup has decided to reuse.
        store_lock = _lock(self.root / "lock", fcntl.LOCK_SH)
        try:
            with self._staging_mutex():
                staging = self.staging_dir / f"{point_id}.{secrets.token_hex(6)}"
                staging.mkdir()
                staging_lock = _lock(staging / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
                try:
                    (staging / "chunks").mkdir()
                    (staging / "point").mkdir()
                    if base is not None:
                        # Under the mutex, like delete_point's check: the base exists now, and from
                        # now on delete_point sees this claim.
                        if not (self.points_dir / base).is_dir():
                            raise PointNotFound(f"base point {base} of {point_id} is not in {self.root}")
                        (staging / BASE).write_text(base)
                except BaseException:
                    os.close(staging_lock)
                    raise
        except BaseException:
            os.close(store_lock)
            raise
        from .pending import PendingPoint  # pending.py builds on this module

        return PendingPoint(self, point_id, staging, (staging_lock, store_lock))

    def list_points(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.points_dir) if e.is_dir() and not e.name.startswith("."))

    def open_point(self, point_id: str) -> Point:
        check_name("point id", point_id)
        path = self.points_dir / point_id
        try:
            text = (path / MANIFEST).read_bytes()
        except FileNotFoundError as err:
            if path.is_dir():
                raise CorruptPoint(f"recovery point {point_id} has no {MANIFEST}") from err
            raise PointNotFound(f"no recovery point {point_id} in {self.root}") from err
        try:
            manifest = json.loads(text)
            if not isinstance(manifest, dict) or not isinstance(manifest.get("disks"), dict):
                raise ValueError("not a manifest object")
        except ValueError as err:
            raise CorruptPoint(f"{path / MANIFEST} is unreadable: {err}") from err
        return Point(point_id, path, manifest)

    def delete_point(self, point_id: str) -> None:
        """Remove a point (one atomic rename, so it is never half-visible). Its chunks stay until a
        garbage collection, which finds the live ones by reading every index under points/.
        PointInUse while a running backup builds on it (see begin_point's `base`)."""
        check_name("point id", point_id)
        path = self.points_dir / point_id
        doomed = self.trash_dir / f"point-{point_id}.{secrets.token_hex(6)}"
        with self._staging_mutex():
            if point_id in self.live_backups().values():
                raise PointInUse(f"recovery point {point_id} is the base of a running backup; delete it later")
            try:
                os.rename(path, doomed)
            except FileNotFoundError as err:
                raise PointNotFound(f"no recovery point {point_id} in {self.root}") from err
        fsutil.fsync_dir(self.points_dir)
        freed = sum(f.stat().st_size for f in doomed.iterdir())
        shutil.rmtree(doomed, ignore_errors=True)
        self._release(freed)

    def iter_indexes(self) -> Iterator[tuple[str, str, DiskIndex]]:
        """(point id, disk key, index) for every committed disk: the roots of a mark-and-sweep GC."""
        for point_id in self.list_points():
            point = self.open_point(point_id)
            for key in point.disk_keys:
                yield point_id, key, point.index(key)

    def recover(self) -> int:
        """Sweep what crashed backups and deletions left behind; returns how many leftovers went.

        Runs at every begin_point() and may run at startup. A staging directory whose lock a live
        process holds is left alone, so concurrent backups (other workers) are never disturbed.
        """
        removed = 0
        with self._staging_mutex():
            for entry in os.scandir(self.staging_dir):
                if self._staging_is_live(Path(entry.path)):
                    continue
                os.rename(entry.path, self.trash_dir / f"staging-{entry.name}.{secrets.token_hex(4)}")
                removed += 1
        # Trash entries (swept staging, points being deleted) are dead by construction; two sweepers
        # racing on one is harmless.
        for entry in os.scandir(self.trash_dir):
            _remove(Path(entry.path))
        if removed:
            self._used = None  # recount on next use
        return removed

    def live_backups(self) -> dict[Path, str | None]:
        """Staging directories of running backups, with the base point each builds on (or None)."""
        live: dict[Path, str | None] = {}
        for entry in os.scandir(self.staging_dir):
            path = Path(entry.path)
            if self._staging_is_live(path):
                try:
                    live[path] = (path / BASE).read_text()
                except FileNotFoundError:
                    live[path] = None
        return live

    @staticmethod
    def _staging_is_live(path: Path) -> bool:
        try:
            fd = os.open(path / "lock", os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            return False  # created under the mutex together with its lock: missing means dead
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _staging_mutex(self) -> _Mutex:
        # Serialises "create a staging dir and lock it" against recover()'s "is it locked?", so a
        # directory is never seen between its creation and its lock.
        return _Mutex(self.root / "staging.lock")

    # Quota ----------------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of all files in the store (apparent size). Counted once per Store object, then kept
        up to date by this object; other processes' writes are seen at the next recount."""
        with self._used_lock:
            if self._used is None:
                total = 0
                for dirpath, _dirs, files in os.walk(self.root):
                    for name in files:
                        with contextlib.suppress(FileNotFoundError):  # a concurrent rename or sweep
                            total += os.stat(os.path.join(dirpath, name)).st_size
                self._used = total
            return self._used

    def _reserve(self, nbytes: int) -> None:
        if self.quota_bytes is None:
            return
        used = self.used_bytes()
        with self._used_lock:
            used = self._used if self._used is not None else used
            if used + nbytes > self.quota_bytes:
                raise StoreFull(
                    f"backup store {self.root} is full: writing {nbytes} more bytes would bring it to "
                    f"{used + nbytes} bytes, over its quota of {self.quota_bytes} bytes"
                )
            self._used = used + nbytes

    def _release(self, nbytes: int) -> None:
        with self._used_lock:
            if self._used is not None:
                self._used = max(0, self._used - nbytes)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _Mutex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _Mutex:
        self.fd = _lock(self.path, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class ManifestView:
    """What a point's manifest says, for a local `Point` and a vault `RemotePoint` alike."""

    manifest: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        """The dict the caller passed to commit()."""
        return self.manifest.get("meta", {})

    @property
    def disk_keys(self) -> list[str]:
        return sorted(self.manifest["disks"])


@dataclass(frozen=True)
class Point(ManifestView):
    """A committed recovery point: every disk in it is a full image (no chains to replay)."""

    id: str
    path: Path
    manifest: dict[str, Any]

    def index(self, disk_key: str) -> DiskIndex:
        try:
            entry = self.manifest["disks"][disk_key]
        except KeyError:
            raise KeyError(f"recovery point {self.id} has no disk {disk_key!r}") from None
        return DiskIndex.load(self.path / check_name("index file", entry["index"]))
