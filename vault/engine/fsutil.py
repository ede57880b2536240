"""File-system helpers: durable writes, early writeback, and turning ENOSPC into StoreFull."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreFull

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """glibc's sync_file_range(fd, offset, nbytes, flags), or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):  # not glibc/Linux: writeback simply starts later
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing this file's dirty pages now, without waiting.

    Not a durability point (it neither waits nor flushes metadata): it makes the disk work while the
    CPU compresses the next chunks, so the single batch of fsyncs at commit finds little left to
    write. Measured here on a 1 GiB full backup (533 MB of chunks, median of 4): commit 0.36 s and
    total 2.31 s with it, commit 1.23 s and total 3.01 s without.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # errors are ignored: the fsync reports them


def write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> int:
    """writev until everything is written (a regular file can still return short near ENOSPC)."""
    total = sum(len(p) for p in pieces)
    done = os.writev(fd, pieces)
    while done < total:
        rest: list[bytes | memoryview] = []
        skip = done
        for piece in pieces:
            if skip >= len(piece):
                skip -= len(piece)
                continue
            rest.append(memoryview(piece)[skip:])
            skip = 0
        written = os.writev(fd, rest)
        if written == 0:
            raise OSError(errno.ENOSPC, "short write")
        done += written
    return total


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (creations, renames, deletions) durable."""
    fsync_path(path)


def write_durable(path: Path, data: bytes) -> None:
    """Create `path` (which must not exist) with `data` and fsync it; used for small metadata files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, [data])
        os.fsync(fd)
    finally:
        os.close(fd)


def is_full_error(err: OSError) -> bool:
    return err.errno in _FULL_ERRNOS


@contextmanager
def translate_full(root: Path) -> Iterator[None]:
    """Re-raise "out of space" from the OS as StoreFull so callers handle one exception for both the
    quota and a really full device."""
    try:
        yield
    except OSError as err:
        if err.errno is not None and is_full_error(err):
            raise StoreFull(f"no space left for the backup store at {root}: {os.strerror(err.errno)}") from err
        raise
