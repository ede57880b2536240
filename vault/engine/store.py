"""The store on disk: chunk files, recovery points, and the life cycle of a backup.

Crash safety rests on one rule: a name under `chunks/` or `points/` appears only by a rename done
after the data behind it is durable. Everything in progress lives under `staging/<point>.<token>/`,
which `recover()` sweeps once no live process holds its lock.

Healing rests on a second rule: a chunk that fails its check on any read is renamed out of chunks/
into `bad/` at once (`quarantine_chunk`), so nothing can find it and reuse it; the next copy that
arrives through a backup's commit or `put_chunk_file` is verified, goes into chunks/, and marks the
bad/ record repaired.

trash/ is shared by deletions, swept staging and the GC's sweep, so `trash.lock` says who is still
working in it: they hold it shared, and `recover()` empties trash/ only when it gets it exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import fsutil
from .errors import (
    ChunkCorrupt,
    ChunkMissing,
    ChunkQuarantined,
    CorruptPoint,
    PointExists,
    PointInUse,
    PointNotFound,
    StoreError,
    StoreFull,
)
from .format import (
    CHUNK_SIZE,
    MANIFEST,
    STORE_FORMAT,
    DiskIndex,
    Manifest,
    ManifestView,
    check_name,
    decode_chunk,
    decode_chunk_file,
)
from .pending import PendingPoint

BASE = "base"  # in a staging directory: the point a running backup builds on
# In bad/: `<hex>` a quarantined chunk file, `<hex>.why` why, `<hex>.repaired` one whose good copy is back.
REASON_SUFFIX = ".why"
REPAIRED_SUFFIX = ".repaired"
TRASH_LOCK = "trash.lock"
GC_TRASH_PREFIX = "gc-"  # trash/gc-<hex>.<token>: a chunk the GC is sweeping (gc.py)


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
        self.bad_dir = self.root / "bad"
        self._used: int | None = None  # bytes on disk, counted lazily and only when a quota is set
        self._used_lock = threading.Lock()
        # New chunk files are written with O_DIRECT (fsutil.create_direct: far less CPU than through
        # the page cache); False once the file system refuses it, or where a reader expects them cached.
        self.direct_writes = True
        self._init_layout()

    def _init_layout(self) -> None:
        for d in (self.root, self.chunks_dir, self.points_dir, self.staging_dir, self.trash_dir, self.bad_dir):
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
        """The plaintext of a chunk. ChunkMissing if absent; ChunkCorrupt if its bytes are wrong,
        after moving it to bad/ (every reader — verify, restore, browse, replication — goes through
        here, so damage found anywhere is taken out of circulation); ChunkQuarantined (a
        ChunkCorrupt) if it was quarantined before and no good copy has come back."""
        payload, inode = self._read_chunk_file(digest)
        try:
            return decode_chunk(payload, digest, length, verify=verify)
        except ChunkCorrupt as err:
            raise self._quarantined_error(digest, err, inode) from err

    def read_chunk_file(self, digest: bytes) -> bytes:
        """The chunk file as stored (header byte + payload), checked against `digest` first; errors
        as read_chunk. What replication uploads and what repairs the vault's copy."""
        payload, inode = self._read_chunk_file(digest)
        try:
            decode_chunk_file(payload, digest)
        except ChunkCorrupt as err:
            raise self._quarantined_error(digest, err, inode) from err
        return payload

    def _read_chunk_file(self, digest: bytes) -> tuple[bytes, int]:
        """The raw file and its inode (so quarantine moves that file, not a good copy that replaced it)."""
        try:
            with open(self.chunk_path(digest), "rb", buffering=0) as f:
                return f.read(), os.fstat(f.fileno()).st_ino
        except FileNotFoundError as err:
            if os.path.exists(self.bad_dir / digest.hex()):
                raise ChunkQuarantined(
                    f"chunk {digest.hex()} was found corrupt and moved to {self.bad_dir}; no good copy has "
                    "come back yet (a repair from the vault, or the next backup that reads these bytes)",
                    digest,
                ) from err
            raise ChunkMissing(f"chunk {digest.hex()} is missing from {self.chunks_dir}", digest) from err

    def _quarantined_error(self, digest: bytes, err: ChunkCorrupt, inode: int) -> ChunkCorrupt:
        try:
            self._quarantine(digest, str(err), inode)
        except OSError as move_err:  # the damage is the news; a failed move must not hide it
            return ChunkCorrupt(f"{err} (could not move it to {self.bad_dir}: {move_err})", digest)
        return ChunkCorrupt(f"{err}; moved to {self.bad_dir} so that no backup reuses it", digest)

    # Quarantine and repair ------------------------------------------------------------------------

    def quarantine_chunk(self, digest: bytes, reason: str) -> bool:
        """Move chunks/<xx>/<hex> to bad/<hex> (bytes kept for forensics, `bad/<hex>.why` says why),
        durably; True if a file was moved. From then on the chunk is absent, so backups store it
        again instead of reusing it (see `bad_chunks`). A second quarantine of the same digest
        replaces the earlier evidence. read_chunk calls this on every failed check."""
        return self._quarantine(digest, reason, None)

    def _quarantine(self, digest: bytes, reason: str, inode: int | None) -> bool:
        path = self.chunk_path(digest)
        target = self.bad_dir / digest.hex()
        try:
            if inode is not None and os.stat(path).st_ino != inode:
                return False  # a good copy replaced the bad one since it was read
            os.replace(path, target)
        except FileNotFoundError:
            return False  # another reader moved it first
        # The chunk's mtime was its last use; from now on it is the time of quarantine, which the
        # GC's grace period counts from (bad/ entries are evidence for a while).
        os.utime(target)
        self._write_reason(digest, reason)
        fsutil.fsync_dir(self.bad_dir)
        fsutil.fsync_dir(path.parent)
        return True

    def _write_reason(self, digest: bytes, reason: str) -> None:
        # Best effort: the move is what protects backups; a full disk must not turn it into an error.
        # A temp name starting with "." is never taken for a record; the GC removes strays.
        temp = self.bad_dir / f".{digest.hex()}.{secrets.token_hex(4)}"
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {reason}\n"
        with contextlib.suppress(OSError):
            fsutil.write_durable(temp, line.encode())
            os.replace(temp, self.bad_dir / (digest.hex() + REASON_SUFFIX))

    def bad_chunks(self) -> set[bytes]:
        """Digests quarantined in bad/ whose good copy is not back in chunks/: what a backup must not
        take on trust from a previous index (one listdir, plus a stat per entry found)."""
        return {digest for digest in self._bad_records() if not self.has_chunk(digest)}

    def _bad_records(self) -> set[bytes]:
        found = set()
        for name in os.listdir(self.bad_dir):
            if len(name) == 64:
                with contextlib.suppress(ValueError):
                    found.add(bytes.fromhex(name))
        return found

    def bad_reason(self, digest: bytes) -> str | None:
        """What quarantine_chunk recorded for `digest` ("<UTC time> <reason>"), or None."""
        try:
            return (self.bad_dir / (digest.hex() + REASON_SUFFIX)).read_text().strip()
        except FileNotFoundError:
            return None

    def mark_repaired(self, digests: Iterable[bytes]) -> set[bytes]:
        """Called once good copies of `digests` are durable in chunks/: renames the bad/ records of
        those quarantined to <hex>.repaired (kept as evidence until the GC's grace runs out);
        returns those it marked."""
        marked = set()
        for digest in set(digests) & self._bad_records():
            name = digest.hex()
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.bad_dir / name, self.bad_dir / (name + REPAIRED_SUFFIX))
                marked.add(digest)
        if marked:
            fsutil.fsync_dir(self.bad_dir)
        return marked

    def put_chunk_file(self, digest: bytes, chunk_file: bytes | memoryview) -> bool:
        """Store a whole chunk file (header byte + payload, as stored), e.g. the vault's copy of a
        quarantined chunk. ChunkCorrupt if it does not decode to `digest` (nothing is written).
        Written like a backup's commit: a temp file in a locked staging directory, fsync, rename
        into chunks/, fsync of the directory; then its bad/ record is marked repaired. Returns False
        if a valid chunk was there already (a corrupt one found there is quarantined and replaced)."""
        decode_chunk_file(chunk_file, digest)
        path = self.chunk_path(digest)
        try:
            self.read_chunk_file(digest)
        except (ChunkMissing, ChunkCorrupt):
            pass
        else:
            self.mark_repaired({digest})
            return False
        size = len(chunk_file)
        self.reserve(size)
        try:
            with fsutil.translate_full(self.root), self._private_staging(f"repair-{digest.hex()[:16]}") as staging:
                temp = staging / digest.hex()
                fsutil.write_durable(temp, bytes(chunk_file))
                created = not path.parent.exists()
                path.parent.mkdir(exist_ok=True)
                os.rename(temp, path)
                fsutil.fsync_dir(path.parent)
                if created:
                    fsutil.fsync_dir(self.chunks_dir)
        except BaseException:
            self.release(size)
            raise
        self.mark_repaired({digest})
        return True

    @contextlib.contextmanager
    def _private_staging(self, name: str) -> Iterator[Path]:
        """A staging directory locked like a backup's, so recover() leaves it alone while in use."""
        with self._staging_mutex():
            staging = self.staging_dir / f"{name}.{secrets.token_hex(6)}"
            staging.mkdir()
            fd = _lock(staging / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(fd)

    # Points ---------------------------------------------------------------------------------------

    def begin_point(self, point_id: str, *, base: str | None = None) -> PendingPoint:
        """Start a recovery point; nothing of it is visible until `commit()`. Use as a context manager
        so an exception aborts it.

        `base` names the earlier point whose indexes this backup will reuse (`previous=` in
        backup_disk): it cannot be deleted while this backup runs, because the backup trusts that
        point's chunks to stay without checking each one (a GC would otherwise sweep them)."""
        check_name("point id", point_id)
        if base is not None:
            check_name("point id", base)
        if (self.points_dir / point_id).exists():
            raise PointExists(f"recovery point {point_id} exists already in {self.root}")
        self.recover()
        # A GC never sweeps what this backup reuses: it keeps every chunk used since the oldest live
        # staging directory's lock was made (see gc.py), and the base point cannot be deleted.
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
        return PendingPoint(self, point_id, staging, (staging_lock,))

    def list_points(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.points_dir) if e.is_dir() and not e.name.startswith("."))

    def open_point(self, point_id: str) -> Point:
        check_name("point id", point_id)
        path = self.points_dir / point_id
        try:
            data = (path / MANIFEST).read_bytes()
        except FileNotFoundError as err:
            if path.is_dir():
                raise CorruptPoint(f"recovery point {point_id} has no {MANIFEST}") from err
            raise PointNotFound(f"no recovery point {point_id} in {self.root}") from err
        return Point(point_id, path, Manifest.from_json(data, name=str(path / MANIFEST)))

    def delete_point(self, point_id: str) -> None:
        """Remove a point (one atomic rename, so it is never half-visible). Its chunks stay until a
        garbage collection, which finds the live ones by reading every index under points/.
        PointInUse while a running backup builds on it (see begin_point's `base`)."""
        check_name("point id", point_id)
        path = self.points_dir / point_id
        doomed = self.trash_dir / f"point-{point_id}.{secrets.token_hex(6)}"
        # Shared trash lock from the rename to the end: recover() must not empty trash/ while this
        # still sums and removes its entry.
        with self.trash_in_use():
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
        self.release(freed)

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
        self._empty_trash()
        if removed:
            self._used = None  # recount on next use
        return removed

    @contextlib.contextmanager
    def trash_in_use(self) -> Iterator[None]:
        """Hold trash.lock shared: a GC sweep or a deletion is working in trash/, so recover() leaves
        it alone. Any number may hold it together."""
        fd = _lock(self.root / TRASH_LOCK, fcntl.LOCK_SH)
        try:
            yield
        finally:
            os.close(fd)

    def _empty_trash(self) -> None:
        """Empty trash/ if nobody works in it (trash.lock taken exclusively without waiting; when busy,
        the next recover() does it). With no GC running, a `gc-*` entry is a whole chunk that a
        crashed GC was sweeping, maybe one a backup touched at the last moment: it goes back into
        chunks/ (the next GC decides again). Swept staging and deleted points are dead."""
        try:
            fd = _lock(self.root / TRASH_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            for entry in os.scandir(self.trash_dir):
                if entry.name.startswith(GC_TRASH_PREFIX):
                    self._restore_swept_chunk(Path(entry.path))
                else:
                    _remove(Path(entry.path))
        finally:
            os.close(fd)

    def _restore_swept_chunk(self, doomed: Path) -> None:
        name = doomed.name[len(GC_TRASH_PREFIX) :].split(".", 1)[0]
        try:
            digest = bytes.fromhex(name)
        except ValueError:
            _remove(doomed)
            return
        final = self.chunk_path(digest)
        if final.exists():
            _remove(doomed)
            return
        final.parent.mkdir(exist_ok=True)
        os.rename(doomed, final)
        fsutil.fsync_dir(final.parent)

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

    def reserve(self, nbytes: int) -> None:
        """Count `nbytes` about to be written against the quota; StoreFull if they would not fit."""
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

    def release(self, nbytes: int) -> None:
        """Give back `nbytes` counted by reserve() or freed by a deletion or a GC."""
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


@dataclass(frozen=True)
class Point(ManifestView):
    """A committed recovery point: every disk in it is a full image (no chains to replay)."""

    id: str
    path: Path
    manifest: Manifest

    def index(self, disk_key: str) -> DiskIndex:
        try:
            entry = self.manifest.disks[disk_key]
        except KeyError:
            raise KeyError(f"recovery point {self.id} has no disk {disk_key!r}") from None
        return DiskIndex.load(self.path / check_name("index file", entry.index))
