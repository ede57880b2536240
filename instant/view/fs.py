"""The FUSE file system that presents a recovery point as the folder a datastore holds for a VM.

Binding: mfusepy (pinned in requirements.txt), pure-ctypes bindings for libfuse 3, the maintained
fork of fusepy. Chosen over pyfuse3 because it needs no compiler, no libfuse3-dev and no trio: pip
installs one Python file, and Debian's fuse3 package gives the library and fusermount3.

What the mount shows, one folder:
  NAME-flat.vmdk  per disk, virtual: the point's disk (chunks read on demand through a cache shared
                  by all disks) under its overlay (instant.view.overlay); writes go to the overlay only
  everything else a plain file in the overlay directory's files/, seeded at the first mount with
                  the descriptors (NAME.vmdk) and the VM's .vmx: ESXi rewrites both (CIDs, its own
                  settings) and creates its own files (.nvram, vmware.log, swap), which all persist
                  across unmount and remount there.
FUSE runs multi-threaded; a DiskReader is not thread-safe, so each thread gets its own per disk.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy

from instant.view.layout import DiskFiles
from instant.view.overlay import Overlay
from instant.view.source import ChunkCache
from vault import engine

log = logging.getLogger(__name__)

# Flat-extent handles are numbered from here: below it, a handle is the file descriptor of a plain file.
_VIRTUAL_HANDLES = 1 << 40


@dataclass
class VirtualDisk:
    """One disk's flat extent: base reads from the store (a reader per thread), writes to `overlay`."""

    files: DiskFiles
    index: engine.DiskIndex
    cache: ChunkCache
    overlay: Overlay = field(init=False)
    read_errors: int = 0
    last_error: str = ""
    write_errors: int = 0
    write_failing: bool = False  # the last write to the overlay failed (its file system is full, say)
    last_write_error: str = ""
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def attach(self, directory: Path) -> None:
        self.overlay = Overlay(directory, self.files.name, self.files.size, self.read_base)

    def read_base(self, offset: int, length: int) -> bytes:
        reader: engine.DiskReader | None = getattr(self._local, "reader", None)
        if reader is None:
            # The shared cache keeps decoded chunks; the reader's own cache only needs the last one.
            reader = self._local.reader = engine.DiskReader(self.cache, self.index, cache_chunks=1)
        reader.seek(offset)
        try:
            data = reader.read(length) or b""
        except (engine.StoreError, engine.BackendError) as exc:
            # The guest gets EIO, as from a failing disk (mfusepy would answer EINVAL to anything
            # but an OSError); the status file carries the reason for the product to alert on.
            self.read_errors += 1
            self.last_error = f"{self.files.flat_name} at byte {offset}: {exc}"
            log.error("%s", self.last_error)
            raise OSError(errno.EIO, self.last_error) from exc
        return data + bytes(length - len(data))

    def write(self, offset: int, data: bytes) -> int:
        """The guest's write, to the overlay; a failure (ENOSPC when the overlay's file system is full)
        reaches the guest as from a failing disk and is counted for the status file."""
        try:
            written = self.overlay.write(offset, data)
        except OSError as exc:
            self.write_errors += 1
            self.write_failing = True
            self.last_write_error = f"{self.files.flat_name} at byte {offset}: {exc.strerror or exc}"
            log.error("write failed: %s", self.last_write_error)
            raise
        self.write_failing = False
        return written


class PointFileSystem(mfusepy.Operations):  # type: ignore[misc,unused-ignore]  # mfusepy has no hints (--strict only)
    """The mount's operations: virtual flat extents by name, everything else passed to `files`."""

    use_ns = True  # times in nanoseconds (mfusepy warns otherwise)

    def __init__(self, disks: list[VirtualDisk], files: Path) -> None:
        self.disks = {f"/{disk.files.flat_name}": disk for disk in disks}
        self.files = files
        self._handles: dict[int, VirtualDisk] = {}
        self._numbers = itertools.count(_VIRTUAL_HANDLES)
        self._lock = threading.Lock()
        self._mtime = os.stat(files).st_mtime_ns

    def status(self) -> dict[str, Any]:
        """What the product shows of a running instant recovery: bytes read from the store (and from
        which tier), and what each disk's overlay holds."""
        caches = {id(disk.cache): disk.cache for disk in self.disks.values()}
        return {
            "bytes_read": sum(cache.bytes_read for cache in caches.values()),
            "local_reads": sum(cache.source.local_reads for cache in caches.values()),
            "vault_reads": sum(cache.source.vault_reads for cache in caches.values()),
            "shared_cache_reads": sum(cache.shared_reads for cache in caches.values()),
            "overlay_bytes": sum(disk.overlay.allocated_bytes() for disk in self.disks.values()),
            "written_blocks": {disk.files.name: disk.overlay.written_blocks() for disk in self.disks.values()},
            "read_errors": sum(disk.read_errors for disk in self.disks.values()),
            "last_error": next((d.last_error for d in self.disks.values() if d.last_error), ""),
            "write_errors": sum(disk.write_errors for disk in self.disks.values()),
            "write_failing": any(disk.write_failing for disk in self.disks.values()),
            "last_write_error": next((d.last_write_error for d in self.disks.values() if d.last_write_error), ""),
        }

    def _real(self, path: str) -> str:
        if path in self.disks:  # a plain-file operation on a virtual extent (rename, unlink, chmod...)
            raise OSError(errno.EPERM, "the disks of a recovery point cannot be renamed or removed")
        return os.path.join(self.files, path.lstrip("/"))

    # Attributes and folders ---------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        disk = self.disks.get(path)
        if disk is None:
            st = os.lstat(self._real(path))
            attrs: dict[str, Any] = {key: getattr(st, key) for key in _STAT_KEYS}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return attrs
        size = disk.files.size
        return {
            "st_mode": stat.S_IFREG | 0o600,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": -(-size // 512),
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": self._mtime,
            "st_mtime": self._mtime,
            "st_ctime": self._mtime,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        names = os.listdir(self._real(path))
        if path == "/":
            names += [name.lstrip("/") for name in self.disks]
        return [".", "..", *names]

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.files)
        return {key: getattr(st, key) for key in _STATVFS_KEYS}

    # Files ----------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        disk = self.disks.get(path)
        if disk is None:
            return os.open(self._real(path), flags)
        with self._lock:
            number = next(self._numbers)
            self._handles[number] = disk
        return number

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        return os.open(self._real(path), flags | os.O_CREAT, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        if fh >= _VIRTUAL_HANDLES:
            return self._handles[fh].overlay.read(offset, size)
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if fh >= _VIRTUAL_HANDLES:
            return self._handles[fh].write(offset, data)
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        disk = self.disks.get(path)
        if disk is not None:
            if length != disk.files.size:  # growing a disk is a later feature; shrinking one never is
                raise OSError(errno.EPERM, "the disks of a recovery point keep their size")
            return 0
        if fh is not None and fh < _VIRTUAL_HANDLES:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        if fh >= _VIRTUAL_HANDLES:
            self._handles[fh].overlay.sync()
        elif datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # durability is fsync's (and release's): a close is not a flush of the disk cache

    def release(self, path: str, fh: int) -> int:
        if fh >= _VIRTUAL_HANDLES:
            with self._lock:
                disk = self._handles.pop(fh)
            disk.overlay.sync()
        else:
            os.close(fh)
        return 0

    def destroy(self, path: str) -> None:
        for disk in self.disks.values():
            disk.overlay.close()

    # Names ----------------------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if path in self.disks:
            return 0  # the extent's times are the point's
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0


_STAT_KEYS = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_blocks")
_STATVFS_KEYS = (
    "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_namemax"
)  # fmt: skip
